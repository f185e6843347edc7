// HttpPusher: push delivery over HTTP(S) with libcurl. POSTs the payload to the task's URL.
//
// Each call borrows an easy handle from a pool and gives it back, so connections are reused
// across calls (the pool grows to the number of concurrent callers). Only http and https are
// spoken; redirects are never followed; proxies from the environment are ignored; every socket
// curl opens is checked against the AddressPolicy first (so the check applies to the address
// actually connected to, whatever DNS answered), and a refused one is never connected.
//
// Thread-safe.
#ifndef HOURGLASS_WORKERS_HTTP_PUSHER_H_
#define HOURGLASS_WORKERS_HTTP_PUSHER_H_

#include <atomic>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "workers/address_policy.h"
#include "workers/push.h"

namespace hourglass {

class HttpPusher final : public Pusher {
 public:
  // `policy` must outlive the pusher.
  explicit HttpPusher(const AddressPolicy& policy);
  ~HttpPusher() override;
  HttpPusher(const HttpPusher&) = delete;
  HttpPusher& operator=(const HttpPusher&) = delete;

  PushResult Push(const PushRequest& request) override ABSL_LOCKS_EXCLUDED(mu_);
  void Abort() override;

  // Checks a target URL when a task is scheduled: an absolute http:// or https:// URL with a
  // host, at most 2048 bytes; InvalidArgument naming `field` otherwise. Sets `*host` to its host
  // (brackets removed from an IPv6 literal).
  static absl::Status CheckUrl(absl::string_view url, absl::string_view field, std::string* host);

 private:
  void* TakeHandle() ABSL_LOCKS_EXCLUDED(mu_);
  void ReturnHandle(void* handle) ABSL_LOCKS_EXCLUDED(mu_);

  const AddressPolicy& policy_;
  std::atomic<bool> aborted_{false};
  absl::Mutex mu_;
  std::vector<void*> idle_handles_ ABSL_GUARDED_BY(mu_);  // CURL*
};

}  // namespace hourglass

#endif  // HOURGLASS_WORKERS_HTTP_PUSHER_H_
