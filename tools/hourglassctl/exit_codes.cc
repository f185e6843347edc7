#include "tools/hourglassctl/exit_codes.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace hourglass::ctl {

ExitCode ExitCodeFor(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return kExitOk;
    case grpc::StatusCode::NOT_FOUND:
      return kExitNotFound;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return kExitInvalidArgument;
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::ABORTED:
      return kExitConflict;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return kExitUnavailable;
    case grpc::StatusCode::UNIMPLEMENTED:
      return kExitUnimplemented;
    case grpc::StatusCode::UNAUTHENTICATED:
      return kExitUnauthenticated;
    case grpc::StatusCode::PERMISSION_DENIED:
      return kExitPermissionDenied;
    default:
      return kExitRpcFailed;
  }
}

std::string StatusCodeName(grpc::StatusCode code) {
  // gRPC's codes are absl's, number for number.
  std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  return name.empty() ? absl::StrCat("CODE_", static_cast<int>(code)) : name;
}

std::string ExitCodesHelp() {
  return "  0  success\n"
         "  1  the RPC failed with another gRPC code (INTERNAL, UNKNOWN, RESOURCE_EXHAUSTED, ...)\n"
         "  2  usage error: bad command line, unreadable --payload_file or --tls_* file; nothing\n"
         "     was sent\n"
         "  3  NOT_FOUND: no such task (or it is no longer retained)\n"
         "  4  INVALID_ARGUMENT or OUT_OF_RANGE: the server refused the request's content\n"
         "  5  ALREADY_EXISTS, FAILED_PRECONDITION or ABORTED: the task's state does not allow\n"
         "     the command (leased, finished, not DEAD, stale lease token, id in use)\n"
         "  6  UNAVAILABLE or DEADLINE_EXCEEDED: no server answered in time, or the TLS handshake\n"
         "     failed; retrying may help; health: not SERVING\n"
         "  7  UNIMPLEMENTED: the server does not know the command yet\n"
         "  8  UNAUTHENTICATED: no token, or one the server does not accept (--token,\n"
         "     $HOURGLASS_TOKEN)\n"
         "  9  PERMISSION_DENIED: the token may not do this in this queue\n"
         "Failures print \"hourglassctl: <CODE>: <message>\" on stderr (\"hourglassctl: "
         "<message>\"\n"
         "for usage errors).\n";
}

}  // namespace hourglass::ctl
