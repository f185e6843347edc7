// The exit codes of hourglassctl: the contract scripts rely on (documented in --help and in
// docs/hourglassctl.md; tests/tools checks both).
//
//   0  success
//   1  the RPC failed with a code not named below (INTERNAL, UNKNOWN, RESOURCE_EXHAUSTED, ...)
//   2  usage: a bad command line or an unreadable --payload_file; no RPC was made
//   3  NOT_FOUND: no such task (or it is no longer retained)
//   4  INVALID_ARGUMENT, OUT_OF_RANGE: the server refused the request's content
//   5  ALREADY_EXISTS, FAILED_PRECONDITION, ABORTED: the task is not in a state that allows
//      the command (already leased, finished, not DEAD, a stale lease token, an id in use)
//   6  UNAVAILABLE, DEADLINE_EXCEEDED: no server answered in time; retrying may help
//   7  UNIMPLEMENTED: the server is too old for the command
//   8  UNAUTHENTICATED: no token, or one the server does not know (--token, $HOURGLASS_TOKEN)
//   9  PERMISSION_DENIED: the token may not do this in this queue
#ifndef HOURGLASS_TOOLS_HOURGLASSCTL_EXIT_CODES_H_
#define HOURGLASS_TOOLS_HOURGLASSCTL_EXIT_CODES_H_

#include <grpcpp/support/status.h>

#include <string>

namespace hourglass::ctl {

enum ExitCode : int {
  kExitOk = 0,
  kExitRpcFailed = 1,
  kExitUsage = 2,
  kExitNotFound = 3,
  kExitInvalidArgument = 4,
  kExitConflict = 5,
  kExitUnavailable = 6,
  kExitUnimplemented = 7,
  kExitUnauthenticated = 8,
  kExitPermissionDenied = 9,
};

// The exit code for an RPC that ended with `code` (kExitOk for OK).
ExitCode ExitCodeFor(grpc::StatusCode code);

// The canonical name of a gRPC code: "NOT_FOUND", "FAILED_PRECONDITION", ...
std::string StatusCodeName(grpc::StatusCode code);

// The exit-code table as --help prints it, one code a line.
std::string ExitCodesHelp();

}  // namespace hourglass::ctl

#endif  // HOURGLASS_TOOLS_HOURGLASSCTL_EXIT_CODES_H_
