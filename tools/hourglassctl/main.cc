// hourglassctl: the command-line client of hourglass for operators and scripts.
// `hourglassctl --help` explains the commands, flags and exit codes; docs/hourglassctl.md too.
#include <grpc/support/log.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "tools/hourglassctl/client.h"
#include "tools/hourglassctl/command_line.h"
#include "tools/hourglassctl/exit_codes.h"

int main(int argc, char** argv) {
  using namespace hourglass::ctl;  // NOLINT(build/namespaces): main only.
  // gRPC's own log lines (a failed TLS handshake, say) would come before hourglassctl's one-line
  // error, which carries the same reason; GRPC_VERBOSITY=debug (or info, error) brings them back.
  if (std::getenv("GRPC_VERBOSITY") == nullptr) gpr_set_log_function([](gpr_log_func_args*) {});
  const std::vector<std::string> args(argv + 1, argv + argc);
  const char* address_from_env = std::getenv("HOURGLASS_ADDRESS");
  const char* token_from_env = std::getenv("HOURGLASS_TOKEN");
  absl::StatusOr<Invocation> invocation =
      ParseCommandLine(args, address_from_env == nullptr ? "" : address_from_env,
                       token_from_env == nullptr ? "" : token_from_env);
  if (!invocation.ok()) {
    std::cerr << "hourglassctl: " << invocation.status().message() << "\n"
              << "Run \"hourglassctl --help\" or \"hourglassctl <command> --help\" for usage.\n";
    return kExitUsage;
  }
  if (invocation->help) {
    std::cout << (invocation->command.has_value() ? CommandHelp(*invocation->command)
                                                  : OverviewHelp());
    return kExitOk;
  }
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(invocation->options);
  if (!channel.ok()) {
    std::cerr << "hourglassctl: " << channel.status().message() << "\n";
    return kExitUsage;
  }
  return Run(*invocation, *channel, std::cin, std::cout, std::cerr, [] { return absl::Now(); });
}
