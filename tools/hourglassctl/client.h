// What hourglassctl does with a parsed command line: build the request, call the server,
// print the answer, and return the exit code (exit_codes.h).
//
//   absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(invocation.options);
//   return Run(invocation, *channel, std::cin, std::cout, std::cerr, [] { return absl::Now(); });
//
// Each Run makes one RPC (list --all one per page), with a deadline of --timeout (lease: plus
// its --wait). Run is thread-compatible: it only touches its arguments.
#ifndef HOURGLASS_TOOLS_HOURGLASSCTL_CLIENT_H_
#define HOURGLASS_TOOLS_HOURGLASSCTL_CLIENT_H_

#include <grpcpp/channel.h>

#include <functional>
#include <istream>
#include <memory>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "hourglass/v1/consumer_service.pb.h"
#include "hourglass/v1/scheduler_service.pb.h"
#include "tools/hourglassctl/command_line.h"

namespace hourglass::ctl {

// The requests of the commands with flags. Errors (exit code 2) are about input the command
// line points at: an unreadable --payload_file. `stdin_stream` is read for --payload_file -.
absl::StatusOr<hourglass::v1::ScheduleRequest> BuildScheduleRequest(const Invocation& invocation,
                                                                    std::istream& stdin_stream);
hourglass::v1::RescheduleRequest BuildRescheduleRequest(const Invocation& invocation);
hourglass::v1::LeaseRequest BuildLeaseRequest(const Invocation& invocation);
hourglass::v1::NackRequest BuildNackRequest(const Invocation& invocation);
hourglass::v1::ExtendLeaseRequest BuildExtendLeaseRequest(const Invocation& invocation);
hourglass::v1::ListTasksRequest BuildListTasksRequest(const Invocation& invocation);

// A plaintext channel to `address` that accepts responses of any size (a lease of many tasks
// with large payloads exceeds gRPC's default limit of 4 MiB).
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address);
// The channel the options ask for: plaintext, or TLS (--tls*) verifying the server against
// --tls_ca (else gRPC's default roots) and the name --tls_server_name (else the host of
// --address), with the client certificate --tls_cert/--tls_key if given. Errors (exit code 2)
// name the flag and the file that cannot be read.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const Options& options);

// Runs the command; the result goes to `out`, errors ("hourglassctl: NOT_FOUND: ...") and
// hints to `err`. `now` is read for the "in 1m30s" of text output. Returns the exit code.
int Run(const Invocation& invocation, const std::shared_ptr<grpc::Channel>& channel,
        std::istream& in, std::ostream& out, std::ostream& err,
        const std::function<absl::Time()>& now);

}  // namespace hourglass::ctl

#endif  // HOURGLASS_TOOLS_HOURGLASSCTL_CLIENT_H_
