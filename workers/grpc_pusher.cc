#include "workers/grpc_pusher.h"

#include <netdb.h>
#include <sys/socket.h>

#include <optional>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "grpcpp/generic/generic_stub.h"

namespace hourglass {

namespace {

// The canonical name of a gRPC code ("UNAVAILABLE"): gRPC's codes are absl's, number for number.
std::string CodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

PushResult::Outcome Classify(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return PushResult::Outcome::kSucceeded;
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNAVAILABLE:
      return PushResult::Outcome::kRetry;
    default:
      return PushResult::Outcome::kPermanent;
  }
}

// A key of lowercase letters, digits, '-', '_', '.'; a value of printable ASCII unless the key
// ends in "-bin".
bool ValidMetadata(absl::string_view key, absl::string_view value) {
  if (key.empty()) return false;
  for (char c : key) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  if (key.size() > 4 && key.substr(key.size() - 4) == "-bin") return true;
  for (char c : value) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

std::string TimeText(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

}  // namespace

GrpcPusher::GrpcPusher(const AddressPolicy& policy) : policy_(policy) {}

GrpcPusher::~GrpcPusher() = default;

absl::Status GrpcPusher::SplitAddress(absl::string_view address, absl::string_view field,
                                      std::string* host, std::string* port) {
  const auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " must be host:port (or [ipv6]:port), got \"", address.substr(0, 200), "\""));
  };
  if (address.empty() || address.size() > 300) return bad();
  size_t colon;
  if (address.front() == '[') {
    const size_t close = address.find(']');
    if (close == absl::string_view::npos || close + 1 >= address.size() ||
        address[close + 1] != ':') {
      return bad();
    }
    *host = std::string(address.substr(1, close - 1));
    colon = close + 1;
  } else {
    colon = address.rfind(':');
    if (colon == absl::string_view::npos || colon == 0) return bad();
    *host = std::string(address.substr(0, colon));
    if (host->find(':') != std::string::npos) return bad();  // an IPv6 literal needs brackets
  }
  *port = std::string(address.substr(colon + 1));
  int port_number = 0;
  if (!absl::SimpleAtoi(*port, &port_number) || port_number < 1 || port_number > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " needs a port between 1 and 65535, got \"", address.substr(0, 200), "\""));
  }
  for (char c : *host) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != ':' &&
        c != '_') {
      return bad();
    }
  }
  return absl::OkStatus();
}

absl::Status GrpcPusher::CheckMethod(absl::string_view method, absl::string_view field) {
  const size_t slash = method.rfind('/');
  bool ok = method.size() >= 4 && method.size() <= 512 && method.front() == '/' && slash > 1 &&
            slash + 1 < method.size();
  for (char c : method) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '/') {
      ok = false;
    }
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " must be a full method name such as /billing.v1.Invoices/Close, got \"",
        method.substr(0, 200), "\""));
  }
  return absl::OkStatus();
}

void GrpcPusher::Abort() {
  absl::MutexLock lock(&mu_);
  aborted_ = true;
  for (grpc::ClientContext* call : calls_) call->TryCancel();
}

std::shared_ptr<grpc::Channel> GrpcPusher::ChannelFor(const std::string& target,
                                                      const std::string& authority,
                                                      const std::string& host, bool tls) {
  const std::string key = absl::StrCat(target, "|", authority, "|", tls ? "tls" : "plain");
  absl::MutexLock lock(&mu_);
  auto it = channels_.find(key);
  if (it != channels_.end()) return it->second;
  if (channels_.size() >= kMaxChannels) channels_.clear();  // calls in progress keep theirs
  grpc::ChannelArguments args;
  args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, authority);
  args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (tls) {
    credentials = grpc::SslCredentials(grpc::SslCredentialsOptions());
    args.SetSslTargetNameOverride(host);
  }
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(target, credentials, args);
  channels_.emplace(key, channel);
  return channel;
}

PushResult GrpcPusher::Push(const PushRequest& request) {
  const absl::Time start = absl::Now();
  PushResult result;
  const auto finish = [&](PushResult::Outcome outcome, std::string error) {
    result.outcome = outcome;
    result.error = std::move(error);
    result.elapsed = absl::Now() - start;
    return result;
  };
  std::string host;
  std::string port;
  if (absl::Status s = SplitAddress(request.address, "grpc_target.address", &host, &port);
      !s.ok()) {
    return finish(PushResult::Outcome::kPermanent, std::string(s.message()));
  }

  // Resolve, and connect only to an address the policy allows.
  std::optional<IpAddress> chosen;
  std::string refusal;
  if (std::optional<IpAddress> literal = IpAddress::Parse(host); literal.has_value()) {
    if (std::optional<std::string> why = policy_.Refusal(*literal); why.has_value()) {
      refusal = *why;
    } else {
      chosen = literal;
    }
  } else {
    addrinfo hints = {};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
    if (rc != 0) {
      return finish(PushResult::Outcome::kRetry,
                    absl::StrCat("cannot resolve ", host, ": ", ::gai_strerror(rc)));
    }
    for (addrinfo* a = found; a != nullptr && !chosen.has_value(); a = a->ai_next) {
      std::optional<IpAddress> ip = IpAddress::FromSockaddr(a->ai_addr);
      if (!ip.has_value()) continue;
      if (std::optional<std::string> why = policy_.Refusal(*ip); why.has_value()) {
        if (refusal.empty()) refusal = absl::StrCat(host, " resolved to ", *why);
      } else {
        chosen = ip;
      }
    }
    ::freeaddrinfo(found);
  }
  if (!chosen.has_value()) {
    return finish(PushResult::Outcome::kRefused, absl::StrCat("refused to connect: ", refusal));
  }
  const std::string target = chosen->is_v4()
                                 ? absl::StrCat("ipv4:", chosen->ToString(), ":", port)
                                 : absl::StrCat("ipv6:[", chosen->ToString(), "]:", port);
  std::shared_ptr<grpc::Channel> channel = ChannelFor(target, request.address, host, request.tls);

  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(start + request.deadline));
  for (const auto& [key, value] : request.headers) {
    // gRPC aborts the process on invalid metadata: check again what validation checked.
    if (!ValidMetadata(key, value)) {
      return finish(PushResult::Outcome::kPermanent,
                    absl::StrCat("header \"", key, "\" is not valid gRPC metadata"));
    }
    context.AddMetadata(key, value);
  }
  context.AddMetadata("hourglass-task-id", request.task_id);
  context.AddMetadata("hourglass-queue", request.queue);
  context.AddMetadata("hourglass-attempt", absl::StrCat(request.attempt));
  context.AddMetadata("hourglass-due-time", TimeText(request.due_time));
  {
    absl::MutexLock lock(&mu_);
    if (aborted_) return finish(PushResult::Outcome::kAborted, "the server is shutting down");
    calls_.insert(&context);
  }
  grpc::Slice slice(request.body);
  grpc::ByteBuffer request_buffer(&slice, 1);
  grpc::ByteBuffer response_buffer;
  grpc::GenericStub stub(channel);
  absl::Notification done;
  grpc::Status status;
  stub.UnaryCall(&context, request.method, grpc::StubOptions(), &request_buffer, &response_buffer,
                 [&](grpc::Status s) {
                   status = std::move(s);
                   done.Notify();
                 });
  // gRPC ends the call by its deadline (or Abort's cancel); the wait is bounded by them.
  done.WaitForNotification();
  bool aborted;
  {
    absl::MutexLock lock(&mu_);
    calls_.erase(&context);
    aborted = aborted_;
  }
  if (status.ok()) return finish(PushResult::Outcome::kSucceeded, "");
  if (aborted && status.error_code() == grpc::StatusCode::CANCELLED) {
    return finish(PushResult::Outcome::kAborted, "the server is shutting down");
  }
  std::string error = absl::StrCat("gRPC ", CodeName(status.error_code()), ": ",
                                   status.error_message().substr(0, 200));
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    absl::StrAppend(&error, " (dispatch deadline ", absl::FormatDuration(request.deadline), ")");
  }
  return finish(Classify(status.error_code()), std::move(error));
}

}  // namespace hourglass
