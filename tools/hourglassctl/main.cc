// hourglassctl: the command-line client of hourglass for operators and scripts.
// `hourglassctl --help` explains the commands, flags and exit codes; docs/hourglassctl.md too.
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
  return Run(*invocation, MakeChannel(invocation->options.address), std::cin, std::cout, std::cerr,
             [] { return absl::Now(); });
}
