#include "workers/push_dispatcher.h"

#include <pthread.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace hourglass {

PushDispatcher::PushDispatcher(PushSource& source, Pusher& http, Pusher& grpc, Options options)
    : source_(source), http_(http), grpc_(grpc), options_(options) {
  if (options_.threads < 1 || options_.queue_concurrency < 1) {
    std::fprintf(stderr, "hourglass::PushDispatcher: threads and queue_concurrency must be >= 1\n");
    std::abort();
  }
  absl::MutexLock lock(&join_mu_);
  for (int i = 0; i < options_.threads; ++i) {
    threads_.emplace_back([this, i] {
      pthread_setname_np(pthread_self(), absl::StrCat("hg-push-", i).substr(0, 15).c_str());
      Run();
    });
  }
}

PushDispatcher::~PushDispatcher() { Shutdown(); }

void PushDispatcher::ListLocked(const std::string& queue, QueueState& state) {
  if (state.listed || state.running >= options_.queue_concurrency) return;
  state.listed = true;
  run_list_.push_back(queue);
  work_.Signal();
}

void PushDispatcher::ForgetIfIdleLocked(const std::string& queue) {
  auto it = queues_.find(queue);
  if (it != queues_.end() && it->second.running == 0 && !it->second.listed &&
      !it->second.notified) {
    queues_.erase(it);
  }
}

void PushDispatcher::Notify(const std::string& queue) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return;
  QueueState& state = queues_[queue];
  state.notified = true;
  ListLocked(queue, state);
}

void PushDispatcher::Run() {
  while (true) {
    std::string queue;
    {
      absl::MutexLock lock(&mu_);
      while (!stopping_ && run_list_.empty()) work_.Wait(&mu_);
      if (stopping_) return;
      queue = std::move(run_list_.front());
      run_list_.pop_front();
      QueueState& state = queues_[queue];
      state.listed = false;
      state.notified = false;
      ++state.running;
      // Other workers may serve the queue too, up to its cap, if it has more work.
      ListLocked(queue, state);
    }
    std::optional<PushJob> job = source_.Claim(queue);
    if (job.has_value()) {
      Pusher& pusher = job->request.kind == PushRequest::Kind::kHttp ? http_ : grpc_;
      const PushResult result = pusher.Push(job->request);
      source_.Finish(*job, result);
    }
    absl::MutexLock lock(&mu_);
    QueueState& state = queues_[queue];
    --state.running;
    // After a delivery the queue may hold more; after an empty claim, only a Notify since then
    // can have added one. Either way, list it again (a listed empty queue costs one claim).
    if (!stopping_ && (job.has_value() || state.notified)) ListLocked(queue, state);
    ForgetIfIdleLocked(queue);
  }
}

void PushDispatcher::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    run_list_.clear();
    work_.SignalAll();
  }
  http_.Abort();
  grpc_.Abort();
  absl::MutexLock lock(&join_mu_);
  for (std::thread& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
  threads_.clear();
}

std::vector<std::pair<std::string, int>> PushDispatcher::InFlight() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::pair<std::string, int>> in_flight;
  for (const auto& [queue, state] : queues_) {
    if (state.running > 0) in_flight.emplace_back(queue, state.running);
  }
  std::sort(in_flight.begin(), in_flight.end());
  return in_flight;
}

}  // namespace hourglass
