// Push delivery: one attempt to hand a due task to its HTTP or gRPC endpoint.
//
//   HttpPusher http(policy);                     // or GrpcPusher
//   PushResult result = http.Push(request);      // blocks for at most request.deadline
//   switch (result.outcome) { ... }              // the caller records it in the store
//
// A Pusher classifies what happened (the table is in docs/api.md, "Push delivery"):
//   kSucceeded  2xx / gRPC OK
//   kRetry      timeouts, connection errors, HTTP 408, 429, 5xx, gRPC UNAVAILABLE and the other
//               transient codes: retried with the task's backoff (at least retry_after)
//   kPermanent  any other status (4xx, 3xx as redirects are not followed, INVALID_ARGUMENT,
//               NOT_FOUND, PERMISSION_DENIED, UNIMPLEMENTED, ...): the task is DEAD at once
//   kRefused    the target's address is refused by the AddressPolicy: DEAD, nothing was sent
//   kAborted    Abort() was called (shutdown): the attempt does not count
#ifndef HOURGLASS_WORKERS_PUSH_H_
#define HOURGLASS_WORKERS_PUSH_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"

namespace hourglass {

struct PushRequest {
  enum class Kind { kHttp, kGrpc };
  Kind kind = Kind::kHttp;
  std::string url;      // kHttp
  std::string address;  // kGrpc: host:port
  std::string method;   // kGrpc: /package.Service/Method
  bool tls = false;     // kGrpc
  // Sent as HTTP headers / gRPC metadata, in order, before the hourglass-* ones.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // the task's payload
  absl::Duration deadline = absl::Seconds(30);
  // Identify the attempt to the receiver (Hourglass-Task-Id, -Queue, -Attempt, -Due-Time).
  std::string task_id;
  std::string queue;
  int32_t attempt = 1;
  absl::Time due_time;
};

struct PushResult {
  enum class Outcome { kSucceeded, kRetry, kPermanent, kRefused, kAborted };
  Outcome outcome = Outcome::kSucceeded;
  // What went wrong, for last_error: "HTTP 503 Service Unavailable: <first bytes of the body>",
  // "gRPC UNAVAILABLE: connection refused", "timed out after 30s".
  std::string error;
  absl::Duration retry_after;  // kRetry: the receiver's Retry-After; 0 when none
  absl::Duration elapsed;      // how long the attempt took
};

// Thread-safe: Push is called from many worker threads at once.
class Pusher {
 public:
  virtual ~Pusher() = default;
  virtual PushResult Push(const PushRequest& request) = 0;
  // Ends every Push in progress (kAborted) and makes later ones return kAborted at once.
  virtual void Abort() = 0;
};

}  // namespace hourglass

#endif  // HOURGLASS_WORKERS_PUSH_H_
