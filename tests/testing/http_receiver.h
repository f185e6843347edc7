// HttpReceiver: a real HTTP/1.1 server on 127.0.0.1 for tests of push delivery. It records every
// request and answers each with the next scripted response (or the default), keeping connections
// alive, so tests can check what a pusher sent, how it classified the answer, and whether it
// connected at all.
//
//   HttpReceiver receiver;                       // listens on 127.0.0.1:<free port>
//   receiver.Script({.status = 503, .headers = {{"Retry-After", "7"}}});
//   ... push to receiver.Url("/hook") ...
//   receiver.AwaitRequests(1);
//   EXPECT_EQ(receiver.requests()[0].body, "payload");
//
// Threads: one accept thread plus one thread per connection. Thread-safe.
#ifndef HOURGLASS_TESTS_TESTING_HTTP_RECEIVER_H_
#define HOURGLASS_TESTS_TESTING_HTTP_RECEIVER_H_

#include <atomic>
#include <deque>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace hourglass::testing {

class HttpReceiver {
 public:
  struct Request {
    std::string method;
    std::string target;  // the request target, e.g. "/hook?x=1"
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    // The value of the first header named `name` (case-insensitive); "" when absent.
    std::string Header(const std::string& name) const;
  };
  struct Response {
    int status = 200;
    std::vector<std::pair<std::string, std::string>> headers = {};
    std::string body = "ok";
    // Answer only after this long (or never, with absl::InfiniteDuration(): until Stop()).
    absl::Duration delay = absl::ZeroDuration();
  };

  HttpReceiver();
  ~HttpReceiver();  // Stop()

  int port() const { return port_; }
  std::string Url(const std::string& path) const;
  // Responses for the next requests, in order; afterwards the default (200 "ok").
  void Script(Response response) ABSL_LOCKS_EXCLUDED(mu_);

  // Waits until `n` requests arrived; false after `timeout`.
  bool AwaitRequests(size_t n, absl::Duration timeout = absl::Seconds(30)) ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<Request> requests() const ABSL_LOCKS_EXCLUDED(mu_);
  int connections() const { return connections_.load(); }
  void Stop();

 private:
  void Accept();
  void Serve(int fd);

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<int> connections_{0};
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;

  mutable absl::Mutex mu_;
  std::deque<Response> script_ ABSL_GUARDED_BY(mu_);
  std::vector<Request> requests_ ABSL_GUARDED_BY(mu_);
  std::vector<int> open_fds_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> servers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hourglass::testing

#endif  // HOURGLASS_TESTS_TESTING_HTTP_RECEIVER_H_
