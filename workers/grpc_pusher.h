// GrpcPusher: push delivery over gRPC. Calls the task's method with its payload as the serialized
// request message through grpc::GenericStub, so any service with generated stubs can receive.
//
// The target's host is resolved here and every address is checked against the AddressPolicy; the
// channel then connects to the checked address itself ("ipv4:10.1.2.3:443", with the original
// host:port as :authority and TLS name), so a DNS answer cannot change between the check and the
// connection. Channels are cached by (address, authority, tls) and shared by all callers; the
// cache is bounded. HTTP proxies from the environment are not used.
//
// Thread-safe.
#ifndef HOURGLASS_WORKERS_GRPC_PUSHER_H_
#define HOURGLASS_WORKERS_GRPC_PUSHER_H_

#include <atomic>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "workers/address_policy.h"
#include "workers/push.h"

namespace hourglass {

class GrpcPusher final : public Pusher {
 public:
  // `policy` must outlive the pusher.
  explicit GrpcPusher(const AddressPolicy& policy);
  ~GrpcPusher() override;

  PushResult Push(const PushRequest& request) override ABSL_LOCKS_EXCLUDED(mu_);
  void Abort() override ABSL_LOCKS_EXCLUDED(mu_);

  // Splits "host:port" ("[v6]:port") into its parts; InvalidArgument naming `field` otherwise.
  static absl::Status SplitAddress(absl::string_view address, absl::string_view field,
                                   std::string* host, std::string* port);
  // A full method name "/package.Service/Method"; InvalidArgument naming `field` otherwise.
  static absl::Status CheckMethod(absl::string_view method, absl::string_view field);

  static constexpr size_t kMaxChannels = 1024;

 private:
  std::shared_ptr<grpc::Channel> ChannelFor(const std::string& target, const std::string& authority,
                                            const std::string& host, bool tls)
      ABSL_LOCKS_EXCLUDED(mu_);

  const AddressPolicy& policy_;
  absl::Mutex mu_;
  bool aborted_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<std::string, std::shared_ptr<grpc::Channel>> channels_ ABSL_GUARDED_BY(mu_);
  // Calls in progress, cancelled by Abort().
  absl::flat_hash_set<grpc::ClientContext*> calls_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hourglass

#endif  // HOURGLASS_WORKERS_GRPC_PUSHER_H_
