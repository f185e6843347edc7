#include "workers/http_pusher.h"

#include <curl/curl.h>

#include <algorithm>
#include <memory>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace hourglass {

namespace {

constexpr size_t kMaxUrlBytes = 2048;
constexpr size_t kErrorBodyBytes = 200;
constexpr absl::Duration kMaxConnectTime = absl::Seconds(10);

// curl_global_init is not thread-safe and must run once before any other curl call.
void InitCurlOnce() {
  static const bool initialized = [] {
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  }();
  (void)initialized;
}

// What one transfer collects through curl's callbacks.
struct Transfer {
  const AddressPolicy* policy = nullptr;
  const std::atomic<bool>* aborted = nullptr;
  std::optional<std::string> refusal;  // set when a socket was refused
  std::string body_start;              // the first bytes of the response body
  std::optional<absl::Duration> retry_after;
  long status = 0;
};

curl_socket_t OpenSocket(void* user, curlsocktype purpose, curl_sockaddr* address) {
  auto* transfer = static_cast<Transfer*>(user);
  if (purpose == CURLSOCKTYPE_IPCXN) {
    std::optional<IpAddress> ip = IpAddress::FromSockaddr(&address->addr);
    std::optional<std::string> refusal =
        ip.has_value() ? transfer->policy->Refusal(*ip)
                       : std::optional<std::string>("not an IP socket address");
    if (refusal.has_value()) {
      transfer->refusal = std::move(refusal);
      return CURL_SOCKET_BAD;
    }
  }
  return ::socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  const size_t bytes = size * n;
  if (transfer->body_start.size() < kErrorBodyBytes) {
    transfer->body_start.append(data,
                                std::min(bytes, kErrorBodyBytes - transfer->body_start.size()));
  }
  return bytes;
}

// Parses Retry-After: delay-seconds or an HTTP-date.
size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  const size_t bytes = size * n;
  absl::string_view line(data, bytes);
  if (absl::StartsWithIgnoreCase(line, "HTTP/")) transfer->retry_after.reset();  // a new response
  if (absl::StartsWithIgnoreCase(line, "retry-after:")) {
    absl::string_view value = absl::StripAsciiWhitespace(line.substr(12));
    int64_t seconds = 0;
    if (absl::SimpleAtoi(value, &seconds) && seconds >= 0) {
      transfer->retry_after = absl::Seconds(seconds);
    } else {
      const time_t when = curl_getdate(std::string(value).c_str(), nullptr);
      if (when > 0) {
        transfer->retry_after = std::max(absl::ZeroDuration(), absl::FromTimeT(when) - absl::Now());
      }
    }
  }
  return bytes;
}

int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<Transfer*>(user)->aborted->load(std::memory_order_relaxed) ? 1 : 0;
}

bool IsHeaderValueSafe(absl::string_view value) {
  return std::none_of(value.begin(), value.end(),
                      [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

std::string Printable(absl::string_view bytes) {
  std::string out;
  for (char c : bytes) out.push_back(absl::ascii_isprint(static_cast<unsigned char>(c)) ? c : ' ');
  return std::string(absl::StripAsciiWhitespace(out));
}

PushResult::Outcome ClassifyStatus(long status) {
  if (status >= 200 && status < 300) return PushResult::Outcome::kSucceeded;
  if (status == 408 || status == 429 || status >= 500) return PushResult::Outcome::kRetry;
  return PushResult::Outcome::kPermanent;
}

PushResult::Outcome ClassifyCurlError(CURLcode code) {
  switch (code) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_TOO_MANY_REDIRECTS:
      return PushResult::Outcome::kPermanent;
    default:
      // DNS failures, refused connections, timeouts, TLS errors (certificates get fixed), resets.
      return PushResult::Outcome::kRetry;
  }
}

}  // namespace

HttpPusher::HttpPusher(const AddressPolicy& policy) : policy_(policy) { InitCurlOnce(); }

HttpPusher::~HttpPusher() {
  absl::MutexLock lock(&mu_);
  for (void* handle : idle_handles_) curl_easy_cleanup(static_cast<CURL*>(handle));
}

void HttpPusher::Abort() { aborted_.store(true); }

void* HttpPusher::TakeHandle() {
  {
    absl::MutexLock lock(&mu_);
    if (!idle_handles_.empty()) {
      void* handle = idle_handles_.back();
      idle_handles_.pop_back();
      return handle;
    }
  }
  return curl_easy_init();
}

void HttpPusher::ReturnHandle(void* handle) {
  absl::MutexLock lock(&mu_);
  idle_handles_.push_back(handle);
}

absl::Status HttpPusher::CheckUrl(absl::string_view url, absl::string_view field,
                                  std::string* host) {
  InitCurlOnce();
  if (url.empty()) return absl::InvalidArgumentError(absl::StrCat(field, " is required"));
  if (url.size() > kMaxUrlBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be at most ", kMaxUrlBytes, " bytes, got ", url.size()));
  }
  // libcurl takes a C string: a NUL would cut the URL it checks (and later calls) short of the one
  // stored. Spaces and control bytes have no place in a URL either.
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, " must not contain spaces or control characters (found byte 0x",
          absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2), "); percent-encode them"));
    }
  }
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> parsed(curl_url(), &curl_url_cleanup);
  const std::string text(url);
  if (parsed == nullptr ||
      curl_url_set(parsed.get(), CURLUPART_URL, text.c_str(), 0) != CURLUE_OK) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " \"", Printable(url.substr(0, 100)),
                     "\" is not an absolute URL; write it as https://host[:port]/path"));
  }
  char* scheme = nullptr;
  char* host_part = nullptr;
  curl_url_get(parsed.get(), CURLUPART_SCHEME, &scheme, 0);
  curl_url_get(parsed.get(), CURLUPART_HOST, &host_part, 0);
  const std::string scheme_text = scheme != nullptr ? absl::AsciiStrToLower(scheme) : "";
  std::string host_text = host_part != nullptr ? host_part : "";
  curl_free(scheme);
  curl_free(host_part);
  if (scheme_text != "http" && scheme_text != "https") {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " must be an http:// or https:// URL, got scheme \"", Printable(scheme_text), "\""));
  }
  if (host_text.empty()) return absl::InvalidArgumentError(absl::StrCat(field, " has no host"));
  if (host_text.size() > 2 && host_text.front() == '[' && host_text.back() == ']') {
    host_text = host_text.substr(1, host_text.size() - 2);
  }
  *host = std::move(host_text);
  return absl::OkStatus();
}

PushResult HttpPusher::Push(const PushRequest& request) {
  const absl::Time start = absl::Now();
  PushResult result;
  if (aborted_.load()) {
    result.outcome = PushResult::Outcome::kAborted;
    result.error = "the server is shutting down";
    return result;
  }
  CURL* curl = static_cast<CURL*>(TakeHandle());
  if (curl == nullptr) {
    result.outcome = PushResult::Outcome::kRetry;
    result.error = "libcurl could not create a handle";
    return result;
  }
  curl_easy_reset(curl);  // keeps the connection cache, clears every option

  Transfer transfer;
  transfer.policy = &policy_;
  transfer.aborted = &aborted_;
  curl_slist* headers = nullptr;
  bool has_content_type = false;
  for (const auto& [key, value] : request.headers) {
    if (!IsHeaderValueSafe(key) || !IsHeaderValueSafe(value)) continue;  // validated already
    if (absl::EqualsIgnoreCase(key, "content-type")) has_content_type = true;
    // curl reads "Name:" as "remove this header"; "Name;" sends it with an empty value.
    headers = curl_slist_append(
        headers, (value.empty() ? absl::StrCat(key, ";") : absl::StrCat(key, ": ", value)).c_str());
  }
  if (!has_content_type) {
    headers = curl_slist_append(headers, "Content-Type: application/octet-stream");
  }
  headers =
      curl_slist_append(headers, absl::StrCat("Hourglass-Task-Id: ", request.task_id).c_str());
  headers = curl_slist_append(headers, absl::StrCat("Hourglass-Queue: ", request.queue).c_str());
  headers =
      curl_slist_append(headers, absl::StrCat("Hourglass-Attempt: ", request.attempt).c_str());
  headers = curl_slist_append(
      headers,
      absl::StrCat("Hourglass-Due-Time: ",
                   absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", request.due_time, absl::UTCTimeZone()))
          .c_str());
  headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip

  const long deadline_ms =
      static_cast<long>(std::max<int64_t>(1, absl::ToInt64Milliseconds(request.deadline)));
  curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(curl, CURLOPT_PROXY, "");  // never a proxy from the environment
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_POST, 1L);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.body.data());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "hourglass/1");
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, deadline_ms);
  curl_easy_setopt(
      curl, CURLOPT_CONNECTTIMEOUT_MS,
      std::min(deadline_ms, static_cast<long>(absl::ToInt64Milliseconds(kMaxConnectTime))));
  curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, &OpenSocket);
  curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, &transfer);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &OnBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &OnHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &transfer);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, &OnProgress);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &transfer);
  char curl_error[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_error);

  const CURLcode code = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &transfer.status);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, nullptr);
  curl_slist_free_all(headers);
  ReturnHandle(curl);
  result.elapsed = absl::Now() - start;

  // A refused address counts only when no other address was connected to instead: curl tries
  // every address of a name, and the policy refuses some of them.
  if (code == CURLE_COULDNT_CONNECT && transfer.refusal.has_value()) {
    result.outcome = PushResult::Outcome::kRefused;
    result.error = absl::StrCat("refused to connect: ", *transfer.refusal);
    return result;
  }
  if (code == CURLE_ABORTED_BY_CALLBACK) {
    result.outcome = PushResult::Outcome::kAborted;
    result.error = "the server is shutting down";
    return result;
  }
  if (code != CURLE_OK) {
    result.outcome = ClassifyCurlError(code);
    result.error =
        code == CURLE_OPERATION_TIMEDOUT
            ? absl::StrCat("no answer within the dispatch deadline of ",
                           absl::FormatDuration(request.deadline), " (",
                           curl_error[0] != '\0' ? curl_error : curl_easy_strerror(code), ")")
            : absl::StrCat(curl_easy_strerror(code),
                           curl_error[0] != '\0' ? absl::StrCat(": ", curl_error) : "");
    return result;
  }
  result.outcome = ClassifyStatus(transfer.status);
  if (result.outcome != PushResult::Outcome::kSucceeded) {
    result.error = absl::StrCat("HTTP ", transfer.status);
    const std::string body = Printable(transfer.body_start);
    if (!body.empty()) absl::StrAppend(&result.error, ": ", body);
    if (transfer.status >= 300 && transfer.status < 400) {
      absl::StrAppend(&result.error, " (redirects are not followed)");
    }
    if (result.outcome == PushResult::Outcome::kRetry) {
      result.retry_after = transfer.retry_after.value_or(absl::ZeroDuration());
    }
  }
  return result;
}

}  // namespace hourglass
