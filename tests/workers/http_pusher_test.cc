// Tests of HttpPusher against a real HTTP receiver on loopback: what is sent, how every kind of
// answer is classified, Retry-After, the dispatch deadline, Abort, connection reuse, and the SSRF
// guard refusing before any connection is made. The receiver's address is loopback, so these tests
// allow 127.0.0.0/8 unless they test the refusal.
#include "workers/http_pusher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "tests/testing/http_receiver.h"

namespace hourglass {
namespace {

using ::hourglass::testing::HttpReceiver;

AddressPolicy LoopbackAllowed() { return *AddressPolicy::Create("127.0.0.0/8"); }

PushRequest RequestTo(const std::string& url) {
  PushRequest request;
  request.kind = PushRequest::Kind::kHttp;
  request.url = url;
  request.headers = {{"Content-Type", "application/json"}, {"X-Trace", "abc"}};
  request.body = "{\"order\":42}";
  request.deadline = absl::Seconds(10);
  request.task_id = "task-1";
  request.queue = "orders";
  request.attempt = 3;
  request.due_time = absl::FromUnixMillis(1795870000123);
  return request;
}

// A 2xx is success; the POST carries the payload, the headers and the hourglass-* headers.
TEST(HttpPusherTest, PostsThePayloadWithItsHeaders) {
  HttpReceiver receiver;
  receiver.Script({.status = 204, .body = ""});
  const AddressPolicy policy = LoopbackAllowed();
  HttpPusher pusher(policy);
  PushResult result = pusher.Push(RequestTo(receiver.Url("/hooks/orders?x=1")));
  EXPECT_EQ(result.outcome, PushResult::Outcome::kSucceeded) << result.error;
  ASSERT_EQ(receiver.requests().size(), 1u);
  const HttpReceiver::Request request = receiver.requests()[0];
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.target, "/hooks/orders?x=1");
  EXPECT_EQ(request.body, "{\"order\":42}");
  EXPECT_EQ(request.Header("Content-Type"), "application/json");
  EXPECT_EQ(request.Header("X-Trace"), "abc");
  EXPECT_EQ(request.Header("Hourglass-Task-Id"), "task-1");
  EXPECT_EQ(request.Header("Hourglass-Queue"), "orders");
  EXPECT_EQ(request.Header("Hourglass-Attempt"), "3");
  EXPECT_EQ(request.Header("Hourglass-Due-Time"), "2026-11-28T12:46:40.123Z");
  EXPECT_EQ(request.Header("Expect"), "");
  EXPECT_GT(result.elapsed, absl::ZeroDuration());

  // Without a Content-Type of the caller's, the payload is application/octet-stream.
  PushRequest plain = RequestTo(receiver.Url("/plain"));
  plain.headers.clear();
  EXPECT_EQ(pusher.Push(plain).outcome, PushResult::Outcome::kSucceeded);
  EXPECT_EQ(receiver.requests()[1].Header("Content-Type"), "application/octet-stream");
  // Both requests went over one connection: handles (and their connections) are reused.
  EXPECT_EQ(receiver.connections(), 1);
}

// The outcome table: 408, 429 and 5xx retry (with Retry-After), other 4xx and 3xx are permanent
// (and a redirect is not followed); the error carries the status and the start of the body.
TEST(HttpPusherTest, ClassifiesEveryKindOfAnswer) {
  HttpReceiver receiver;
  const AddressPolicy policy = LoopbackAllowed();
  HttpPusher pusher(policy);
  struct Case {
    int status;
    std::vector<std::pair<std::string, std::string>> headers;
    PushResult::Outcome outcome;
    absl::Duration retry_after;
    const char* error;
  };
  const Case cases[] = {
      {503,
       {{"Retry-After", "7"}},
       PushResult::Outcome::kRetry,
       absl::Seconds(7),
       "HTTP 503: body of 503"},
      {429, {}, PushResult::Outcome::kRetry, absl::ZeroDuration(), "HTTP 429: body of 429"},
      {408, {}, PushResult::Outcome::kRetry, absl::ZeroDuration(), "HTTP 408"},
      {500, {}, PushResult::Outcome::kRetry, absl::ZeroDuration(), "HTTP 500"},
      {404,
       {{"Retry-After", "7"}},
       PushResult::Outcome::kPermanent,
       absl::ZeroDuration(),
       "HTTP 404: body of 404"},
      {400, {}, PushResult::Outcome::kPermanent, absl::ZeroDuration(), "HTTP 400"},
      {302,
       {{"Location", "http://169.254.169.254/"}},
       PushResult::Outcome::kPermanent,
       absl::ZeroDuration(),
       "(redirects are not followed)"},
  };
  size_t sent = 0;
  for (const Case& c : cases) {
    receiver.Script(
        {.status = c.status, .headers = c.headers, .body = absl::StrCat("body of ", c.status)});
    PushResult result = pusher.Push(RequestTo(receiver.Url("/x")));
    ++sent;
    EXPECT_EQ(result.outcome, c.outcome) << c.status;
    EXPECT_EQ(result.retry_after, c.retry_after) << c.status;
    EXPECT_TRUE(absl::StrContains(result.error, c.error)) << c.status << ": " << result.error;
    EXPECT_EQ(receiver.requests().size(), sent) << "a redirect was followed";
  }
  // Retry-After as an HTTP date in the future.
  receiver.Script({.status = 503,
                   .headers = {{"Retry-After", absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT",
                                                                absl::Now() + absl::Seconds(120),
                                                                absl::UTCTimeZone())}}});
  PushResult dated = pusher.Push(RequestTo(receiver.Url("/x")));
  EXPECT_EQ(dated.outcome, PushResult::Outcome::kRetry);
  EXPECT_GT(dated.retry_after, absl::Seconds(100));
  EXPECT_LE(dated.retry_after, absl::Seconds(120));
}

// An answer that does not come within the dispatch deadline is a retryable failure, and the call
// returns at the deadline.
TEST(HttpPusherTest, DeadlineEndsAHangingCall) {
  HttpReceiver receiver;
  receiver.Script({.delay = absl::InfiniteDuration()});
  const AddressPolicy policy = LoopbackAllowed();
  HttpPusher pusher(policy);
  PushRequest request = RequestTo(receiver.Url("/slow"));
  request.deadline = absl::Milliseconds(300);
  const absl::Time start = absl::Now();
  PushResult result = pusher.Push(request);
  EXPECT_EQ(result.outcome, PushResult::Outcome::kRetry);
  EXPECT_TRUE(absl::StrContains(result.error, "no answer within the dispatch deadline of 300ms"))
      << result.error;
  // curl measures on its own clock; allow for the difference of the two clocks.
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(290));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

// Abort ends a call in progress at once (kAborted) and refuses later ones without sending.
TEST(HttpPusherTest, AbortEndsCallsInProgress) {
  HttpReceiver receiver;
  receiver.Script({.delay = absl::InfiniteDuration()});
  const AddressPolicy policy = LoopbackAllowed();
  HttpPusher pusher(policy);
  PushResult result;
  std::thread call([&] { result = pusher.Push(RequestTo(receiver.Url("/slow"))); });
  ASSERT_TRUE(receiver.AwaitRequests(1));
  pusher.Abort();
  call.join();
  EXPECT_EQ(result.outcome, PushResult::Outcome::kAborted);
  EXPECT_EQ(pusher.Push(RequestTo(receiver.Url("/x"))).outcome, PushResult::Outcome::kAborted);
  EXPECT_EQ(receiver.requests().size(), 1u);
}

// The SSRF guard: a loopback address (reached by name, so only the connect-time check can see
// it) is refused without a connection; a closed port is a retryable connection error.
TEST(HttpPusherTest, RefusedAddressesAreNeverConnected) {
  HttpReceiver receiver;
  const AddressPolicy policy = *AddressPolicy::Create("");
  HttpPusher pusher(policy);
  PushResult result =
      pusher.Push(RequestTo(absl::StrCat("http://localhost:", receiver.port(), "/internal")));
  EXPECT_EQ(result.outcome, PushResult::Outcome::kRefused);
  EXPECT_TRUE(absl::StartsWith(result.error, "refused to connect: ") &&
              absl::StrContains(result.error, "is a loopback address"))
      << result.error;
  EXPECT_EQ(receiver.connections(), 0);
  EXPECT_EQ(pusher.Push(RequestTo("http://169.254.169.254/latest/meta-data")).outcome,
            PushResult::Outcome::kRefused);

  const AddressPolicy loopback = LoopbackAllowed();
  HttpPusher allowed(loopback);
  receiver.Stop();  // nothing listens on its port any more
  PushResult closed = allowed.Push(RequestTo(receiver.Url("/gone")));
  EXPECT_EQ(closed.outcome, PushResult::Outcome::kRetry) << closed.error;
}

// A header with an empty value is sent with an empty value (curl drops "Name:" lines).
TEST(HttpPusherTest, EmptyHeaderValuesAreSent) {
  HttpReceiver receiver;
  const AddressPolicy policy = LoopbackAllowed();
  HttpPusher pusher(policy);
  PushRequest request = RequestTo(receiver.Url("/x"));
  request.headers.emplace_back("X-Empty", "");
  ASSERT_EQ(pusher.Push(request).outcome, PushResult::Outcome::kSucceeded);
  const auto headers = receiver.requests()[0].headers;
  EXPECT_NE(
      std::find(headers.begin(), headers.end(), std::pair<std::string, std::string>("X-Empty", "")),
      headers.end());
}

// A name with a refused and an admitted address (localhost: ::1 and 127.0.0.1, only the latter
// admitted) is delivered to the admitted one and reported as delivered, not as refused.
TEST(HttpPusherTest, RefusedAddressOfANameIsSkippedForAnAdmittedOne) {
  HttpReceiver receiver;
  const AddressPolicy policy = *AddressPolicy::Create("127.0.0.1/32");
  HttpPusher pusher(policy);
  PushResult result =
      pusher.Push(RequestTo(absl::StrCat("http://localhost:", receiver.port(), "/x")));
  EXPECT_EQ(result.outcome, PushResult::Outcome::kSucceeded) << result.error;
  EXPECT_EQ(receiver.requests().size(), 1u);
}

// URLs are checked at Schedule: scheme, host, length.
TEST(HttpPusherTest, CheckUrl) {
  std::string host;
  EXPECT_TRUE(HttpPusher::CheckUrl("https://Example.com:8443/a?b=c", "url", &host).ok());
  EXPECT_EQ(host, "Example.com");
  EXPECT_TRUE(HttpPusher::CheckUrl("http://[::1]:80/", "url", &host).ok());
  EXPECT_EQ(host, "::1");
  EXPECT_FALSE(HttpPusher::CheckUrl("file:///etc/passwd", "url", &host).ok());
  EXPECT_FALSE(HttpPusher::CheckUrl("gopher://example.com/", "url", &host).ok());
  EXPECT_FALSE(HttpPusher::CheckUrl("/relative", "url", &host).ok());
  EXPECT_FALSE(HttpPusher::CheckUrl("", "url", &host).ok());
  // A NUL would cut the URL curl sees short of the one stored (found by request_fuzzer).
  EXPECT_FALSE(
      HttpPusher::CheckUrl(std::string("https://example.com/\0@169.254.169.254/", 39), "url", &host)
          .ok());
  EXPECT_FALSE(HttpPusher::CheckUrl("https://example.com/a b", "url", &host).ok());
  EXPECT_FALSE(HttpPusher::CheckUrl("https://example.com/\r\nX: y", "url", &host).ok());
}

}  // namespace
}  // namespace hourglass
