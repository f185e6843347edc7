// hourglass_load: a load generator that drives a running hourglass server over gRPC.
//
// Modes (--mode), each printing one key=value line per run so a script can parse it:
//   schedule  unary Schedule, --inflight calls kept in flight by the callback API; calls/s, p50/p99
//   batch     ScheduleBatch of --batch_size tasks, --inflight calls in flight; tasks/s, p50/p99
//   cycle     --producers threads Schedule (due now), --consumers threads Lease (long poll) and
//             AckBatch what they leased (--ack_inflight calls in the background); completed
//             (acknowledged) cycles/s
//   lateness  schedule --rate tasks/s, each due 1-2 s ahead with its due time in the payload;
//             --consumers long-poll Lease (--lease_max, wait 1 s) and AckBatch as in cycle;
//             lateness = receive time - due time: p50, p99, p99.9, max, count and how many
//             arrived early (must be 0)
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "hourglass/v1/consumer_service.grpc.pb.h"
#include "hourglass/v1/scheduler_service.grpc.pb.h"
#include "latency_stats.h"

ABSL_FLAG(std::string, address, "127.0.0.1:7070",
          "host:port of the running hourglass server's gRPC endpoint.");
ABSL_FLAG(
    std::string, mode, "schedule",
    "Workload: schedule (unary Schedule, --inflight calls in flight), batch (ScheduleBatch of "
    "--batch_size tasks, --inflight calls in flight), cycle (schedule -> lease -> AckBatch with "
    "--producers and --consumers threads), lateness (--rate tasks/s due 1-2 s ahead, "
    "--consumers long-polling consumers measure receive time - due time).");
ABSL_FLAG(double, seconds, 5.0, "How long each run generates load, in seconds.");
ABSL_FLAG(std::vector<std::string>, inflight, std::vector<std::string>{"8"},
          "schedule/batch: calls kept in flight by one client thread; a comma list (e.g. 1,8,64) "
          "runs once per value and prints one line each.");
ABSL_FLAG(int, batch_size, 100, "batch: tasks per ScheduleBatch call (1 to 1000).");
ABSL_FLAG(int, payload_bytes, 100, "schedule/batch/cycle: payload size of each task in bytes.");
ABSL_FLAG(double, delay_seconds, 3600,
          "schedule/batch: delay of each scheduled task, so tasks stay pending and never fire "
          "during the run.");
ABSL_FLAG(int, producers, 4,
          "cycle: producer threads, each with one call in flight (unary Schedule, or ScheduleBatch "
          "when --producer_batch > 1).");
ABSL_FLAG(int, producer_batch, 1,
          "cycle: tasks per producer call; 1 means unary Schedule, more means ScheduleBatch.");
ABSL_FLAG(
    int, consumers, 4,
    "cycle/lateness: consumer threads, each long-polling Lease then AckBatch of what it got.");
ABSL_FLAG(int, lease_max, 100, "cycle/lateness: max_tasks of each Lease call.");
ABSL_FLAG(double, lease_wait_seconds, 1.0, "cycle/lateness: wait (long poll) of each Lease call.");
ABSL_FLAG(int, ack_inflight, 4,
          "cycle/lateness: AckBatch calls a consumer keeps in flight while it leases on (0: it "
          "waits for each batch's AckBatch before the next Lease).");
ABSL_FLAG(int, rate, 20000, "lateness: tasks scheduled per second (sent as a batch every 1 ms).");
ABSL_FLAG(std::string, queue, "",
          "Queue to use; empty means a fresh queue per run (load-<mode>-<random>), so runs do not "
          "see each other's tasks.");

namespace {

namespace hv1 = hourglass::v1;

int64_t ToMicros(absl::Duration d) { return absl::ToInt64Microseconds(d); }

using ::hourglass::bench::Merge;
using ::hourglass::bench::PctMs;

std::string QueueName(const std::string& mode) {
  std::string q = absl::GetFlag(FLAGS_queue);
  if (!q.empty()) return q;
  std::random_device rd;
  return absl::StrCat("load-", mode, "-", absl::Hex(rd(), absl::kZeroPad8));
}

std::shared_ptr<grpc::Channel> NewChannel() {
  grpc::ChannelArguments args;
  // A channel of its own per caller: a separate connection rather than a shared subchannel.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(absl::GetFlag(FLAGS_address), grpc::InsecureChannelCredentials(),
                                   args);
}

bool WaitReady(const std::shared_ptr<grpc::Channel>& ch) {
  if (ch->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Seconds(5)))) return true;
  std::fprintf(stderr, "hourglass_load: cannot connect to %s\n",
               absl::GetFlag(FLAGS_address).c_str());
  return false;
}

// ---- closed loop: N calls in flight from the callback API
// ----------------------------------------

struct ClosedLoop {
  // Issues one call; `done` must be run with the call's status and the number of items it
  // completed successfully.
  std::function<void(std::function<void(grpc::Status, int64_t)>)> issue;
  absl::Time deadline;
  std::atomic<int64_t> calls{0}, items{0}, errors{0};
  std::vector<std::vector<int64_t>> latency_us;  // per slot: a slot has one call at a time
  absl::Mutex mu;
  int outstanding = 0;
  std::string first_error;

  void Start(int slot) {
    absl::Time start = absl::Now();
    issue([this, slot, start](grpc::Status s, int64_t ok_items) {
      absl::Time now = absl::Now();
      if (now <= deadline) {
        if (s.ok()) {
          calls.fetch_add(1, std::memory_order_relaxed);
          items.fetch_add(ok_items, std::memory_order_relaxed);
          latency_us[slot].push_back(ToMicros(now - start));
        } else {
          errors.fetch_add(1, std::memory_order_relaxed);
        }
      }
      if (!s.ok()) {
        absl::MutexLock l(&mu);
        if (first_error.empty()) first_error = s.error_message();
      }
      if (now < deadline && s.error_code() != grpc::StatusCode::UNAVAILABLE) {
        Start(slot);
      } else {
        absl::MutexLock l(&mu);
        --outstanding;
      }
    });
  }

  void Run(int n, double seconds) {
    latency_us.assign(n, {});
    for (auto& v : latency_us) v.reserve(1 << 16);
    outstanding = n;
    deadline = absl::Now() + absl::Seconds(seconds);
    for (int i = 0; i < n; ++i) Start(i);
    absl::MutexLock l(&mu);
    mu.Await(absl::Condition(
        +[](int* o) { return *o == 0; }, &outstanding));
  }
};

void ReportError(const ClosedLoop& loop) {
  if (!loop.first_error.empty()) {
    std::fprintf(stderr, "hourglass_load: first error: %s\n", loop.first_error.c_str());
  }
}

int RunSchedule(bool batch) {
  auto channel = NewChannel();
  if (!WaitReady(channel)) return 1;
  auto stub = hv1::SchedulerService::NewStub(channel);
  const std::string queue = QueueName(batch ? "batch" : "schedule");
  const double seconds = absl::GetFlag(FLAGS_seconds);
  const int batch_size = absl::GetFlag(FLAGS_batch_size);

  hv1::ScheduleRequest one;
  one.set_queue(queue);
  one.set_payload(std::string(static_cast<size_t>(absl::GetFlag(FLAGS_payload_bytes)), 'x'));
  absl::Duration delay = absl::Seconds(absl::GetFlag(FLAGS_delay_seconds));
  one.mutable_delay()->set_seconds(absl::ToInt64Seconds(delay));
  hv1::ScheduleBatchRequest many;
  for (int i = 0; i < batch_size; ++i) *many.add_requests() = one;

  for (const std::string& s : absl::GetFlag(FLAGS_inflight)) {
    int n = 0;
    if (!absl::SimpleAtoi(s, &n) || n < 1) {
      std::fprintf(stderr, "hourglass_load: --inflight wants positive integers, got \"%s\"\n",
                   s.c_str());
      return 2;
    }
    ClosedLoop loop;
    // The request templates are shared read-only by every call: the server names each task.
    if (batch) {
      loop.issue = [&](std::function<void(grpc::Status, int64_t)> done) {
        auto ctx = std::make_shared<grpc::ClientContext>();
        auto resp = std::make_shared<hv1::ScheduleBatchResponse>();
        stub->async()->ScheduleBatch(ctx.get(), &many, resp.get(),
                                     [ctx, resp, done = std::move(done)](grpc::Status st) {
                                       int64_t ok = 0;
                                       for (const auto& r : resp->results()) ok += r.code() == 0;
                                       done(st, ok);
                                     });
      };
    } else {
      loop.issue = [&](std::function<void(grpc::Status, int64_t)> done) {
        auto ctx = std::make_shared<grpc::ClientContext>();
        auto resp = std::make_shared<hv1::ScheduleResponse>();
        stub->async()->Schedule(
            ctx.get(), &one, resp.get(),
            [ctx, resp, done = std::move(done)](grpc::Status st) { done(st, st.ok() ? 1 : 0); });
      };
    }
    loop.Run(n, seconds);
    std::vector<int64_t> lat = Merge(loop.latency_us);
    if (batch) {
      std::printf(
          "mode=batch inflight=%d batch_size=%d calls_per_s=%.0f tasks_per_s=%.0f p50_ms=%.3f "
          "p99_ms=%.3f errors=%lld\n",
          n, batch_size, static_cast<double>(loop.calls.load()) / seconds,
          static_cast<double>(loop.items.load()) / seconds, PctMs(lat, 0.5), PctMs(lat, 0.99),
          static_cast<long long>(loop.errors.load() +
                                 (loop.calls.load() * batch_size - loop.items.load())));
    } else {
      std::printf(
          "mode=schedule inflight=%d calls_per_s=%.0f p50_ms=%.3f p99_ms=%.3f errors=%lld\n", n,
          static_cast<double>(loop.calls.load()) / seconds, PctMs(lat, 0.5), PctMs(lat, 0.99),
          static_cast<long long>(loop.errors.load()));
    }
    std::fflush(stdout);
    ReportError(loop);
  }
  return 0;
}

// ---- consumers shared by cycle and lateness
// -------------------------------------------------------

// Acknowledges leased batches with AckBatch in the background: up to --ack_inflight calls in
// flight, so that the consumer leases the next batch while the server syncs the acks of the last
// one (a synced Ack takes one fdatasync). Counts what was acknowledged before `count_until`.
class AckPipeline {
 public:
  AckPipeline(hv1::ConsumerService::Stub& stub, int max_inflight, absl::Time count_until,
              std::atomic<int64_t>& acked, std::atomic<int64_t>& errors)
      : stub_(stub),
        max_inflight_(std::max(1, max_inflight)),
        count_until_(count_until),
        acked_(acked),
        errors_(errors) {}
  ~AckPipeline() { Drain(); }

  void Ack(const hv1::LeaseResponse& leased) {
    auto call = std::make_shared<Call>();
    for (const auto& t : leased.tasks()) {
      auto* a = call->request.add_acks();
      a->set_task_id(t.task_id());
      a->set_lease_token(t.lease_token());
    }
    call->context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &AckPipeline::HasRoom));
      ++inflight_;
    }
    stub_.async()->AckBatch(&call->context, &call->request, &call->response,
                            [this, call](grpc::Status st) { Done(*call, st); });
  }

  // Waits for every AckBatch in flight.
  void Drain() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](int* inflight) { return *inflight == 0; }, &inflight_));
  }

 private:
  bool HasRoom() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return inflight_ < max_inflight_; }

  struct Call {
    grpc::ClientContext context;
    hv1::AckBatchRequest request;
    hv1::AckBatchResponse response;
  };

  void Done(const Call& call, const grpc::Status& st) {
    if (!st.ok()) {
      errors_.fetch_add(1, std::memory_order_relaxed);
    } else {
      int64_t ok = 0;
      for (const auto& r : call.response.results()) ok += r.code() == 0;
      errors_.fetch_add(call.response.results_size() - ok, std::memory_order_relaxed);
      if (absl::Now() <= count_until_) acked_.fetch_add(ok, std::memory_order_relaxed);
    }
    absl::MutexLock lock(&mu_);
    --inflight_;
  }

  hv1::ConsumerService::Stub& stub_;
  const int max_inflight_;
  const absl::Time count_until_;
  std::atomic<int64_t>& acked_;
  std::atomic<int64_t>& errors_;
  absl::Mutex mu_;
  int inflight_ ABSL_GUARDED_BY(mu_) = 0;
};

// Leases from `queue` until `stop`, acknowledges each batch with one AckBatch (in the
// background, see AckPipeline), and calls on_leased(receive time, tasks) for each non-empty
// lease. Counts acknowledged tasks in `acked`.
template <typename OnLeased>
void ConsumeLoop(const std::string& queue, const std::atomic<bool>& stop, absl::Time count_until,
                 std::atomic<int64_t>& acked, std::atomic<int64_t>& errors, OnLeased on_leased) {
  auto channel = NewChannel();
  auto stub = hv1::ConsumerService::NewStub(channel);
  AckPipeline acks(*stub, absl::GetFlag(FLAGS_ack_inflight), count_until, acked, errors);
  const absl::Duration wait = absl::Seconds(absl::GetFlag(FLAGS_lease_wait_seconds));
  hv1::LeaseRequest lease;
  lease.set_queue(queue);
  lease.set_max_tasks(absl::GetFlag(FLAGS_lease_max));
  lease.mutable_lease_duration()->set_seconds(60);
  lease.mutable_wait()->set_seconds(absl::ToInt64Seconds(wait));
  lease.mutable_wait()->set_nanos(static_cast<int32_t>(
      absl::ToInt64Nanoseconds(wait - absl::Seconds(absl::ToInt64Seconds(wait)))));
  while (!stop.load(std::memory_order_relaxed)) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + wait + absl::Seconds(10)));
    hv1::LeaseResponse resp;
    grpc::Status st = stub->Lease(&ctx, lease, &resp);
    absl::Time received = absl::Now();
    if (!st.ok()) {
      errors.fetch_add(1, std::memory_order_relaxed);
      if (st.error_code() == grpc::StatusCode::UNAVAILABLE) absl::SleepFor(absl::Milliseconds(10));
      continue;
    }
    if (resp.tasks_size() == 0) continue;
    on_leased(received, resp);
    acks.Ack(resp);
    if (absl::GetFlag(FLAGS_ack_inflight) == 0) acks.Drain();
  }
  acks.Drain();
}

int RunCycle() {
  if (!WaitReady(NewChannel())) return 1;
  const std::string queue = QueueName("cycle");
  const double seconds = absl::GetFlag(FLAGS_seconds);
  const int producers = absl::GetFlag(FLAGS_producers);
  const int consumers = absl::GetFlag(FLAGS_consumers);
  const absl::Time deadline = absl::Now() + absl::Seconds(seconds);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> scheduled{0}, acked{0}, errors{0};
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&] {
      auto stub = hv1::SchedulerService::NewStub(NewChannel());
      hv1::ScheduleRequest req;
      req.set_queue(queue);
      req.set_payload(std::string(static_cast<size_t>(absl::GetFlag(FLAGS_payload_bytes)), 'x'));
      req.mutable_delay();  // due now
      const int per_call = std::clamp(absl::GetFlag(FLAGS_producer_batch), 1, 1000);
      hv1::ScheduleBatchRequest batch;
      for (int i = 0; i < per_call; ++i) *batch.add_requests() = req;
      while (absl::Now() < deadline) {
        grpc::ClientContext ctx;
        ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
        grpc::Status st;
        int64_t ok = 0;
        if (per_call == 1) {
          hv1::ScheduleResponse resp;
          st = stub->Schedule(&ctx, req, &resp);
          ok = st.ok() ? 1 : 0;
        } else {
          hv1::ScheduleBatchResponse resp;
          st = stub->ScheduleBatch(&ctx, batch, &resp);
          for (const auto& r : resp.results()) ok += r.code() == 0;
        }
        scheduled.fetch_add(ok, std::memory_order_relaxed);
        if (!st.ok() || ok < per_call) errors.fetch_add(st.ok() ? per_call - ok : 1);
      }
    });
  }
  for (int c = 0; c < consumers; ++c) {
    threads.emplace_back([&] {
      ConsumeLoop(queue, stop, deadline, acked, errors,
                  [](absl::Time, const hv1::LeaseResponse&) {});
    });
  }
  absl::SleepFor(deadline - absl::Now());
  stop.store(true);
  for (auto& t : threads) t.join();
  std::printf(
      "mode=cycle producers=%d producer_batch=%d consumers=%d cycles_per_s=%.0f "
      "scheduled_per_s=%.0f errors=%lld\n",
      producers, absl::GetFlag(FLAGS_producer_batch), consumers,
      static_cast<double>(acked.load()) / seconds, static_cast<double>(scheduled.load()) / seconds,
      static_cast<long long>(errors.load()));
  return 0;
}

int RunLateness() {
  auto channel = NewChannel();
  if (!WaitReady(channel)) return 1;
  auto stub = hv1::SchedulerService::NewStub(channel);
  const std::string queue = QueueName("lateness");
  const double seconds = absl::GetFlag(FLAGS_seconds);
  const int rate = absl::GetFlag(FLAGS_rate);
  const int consumers = absl::GetFlag(FLAGS_consumers);

  std::atomic<bool> stop{false};
  std::atomic<int64_t> acked{0}, errors{0}, received{0}, early{0}, scheduled{0}, bad_payload{0};
  std::vector<std::vector<int64_t>> lateness(consumers);
  std::vector<std::thread> threads;
  for (int c = 0; c < consumers; ++c) {
    threads.emplace_back([&, c] {
      lateness[c].reserve(static_cast<size_t>(rate * (seconds + 1)) / consumers + 1024);
      ConsumeLoop(queue, stop, absl::InfiniteFuture(), acked, errors,
                  [&, c](absl::Time now, const hv1::LeaseResponse& resp) {
                    const int64_t now_ns = absl::ToUnixNanos(now);
                    for (const auto& t : resp.tasks()) {
                      int64_t due_ns = 0;
                      if (!absl::SimpleAtoi(t.payload(), &due_ns)) {
                        bad_payload.fetch_add(1, std::memory_order_relaxed);
                        continue;
                      }
                      int64_t late_ns = now_ns - due_ns;
                      if (late_ns < 0) early.fetch_add(1, std::memory_order_relaxed);
                      lateness[c].push_back(late_ns / 1000);
                      received.fetch_add(1, std::memory_order_relaxed);
                    }
                  });
    });
  }

  // Producer: every millisecond, one ScheduleBatch with the tasks owed by then, each due at a
  // uniformly random instant 1-2 s ahead; its due time (Unix ns) is the payload.
  std::mt19937_64 rng(std::random_device{}());
  std::uniform_int_distribution<int64_t> jitter(0, 1'000'000'000);
  std::atomic<int> inflight{0};
  absl::Mutex mu;
  int64_t sent = 0;
  int64_t max_inflight_seen = 0;
  const absl::Time start = absl::Now();
  const absl::Time end = start + absl::Seconds(seconds);
  absl::Time last_due = start;
  for (absl::Time now = start; now < end; now = absl::Now()) {
    int64_t owed = static_cast<int64_t>(absl::ToDoubleSeconds(now - start) * rate) - sent;
    while (owed > 0) {
      int n = static_cast<int>(std::min<int64_t>(owed, 1000));
      auto req = std::make_shared<hv1::ScheduleBatchRequest>();
      for (int i = 0; i < n; ++i) {
        absl::Time due = now + absl::Seconds(1) + absl::Nanoseconds(jitter(rng));
        last_due = std::max(last_due, due);
        auto* r = req->add_requests();
        r->set_queue(queue);
        r->set_payload(absl::StrCat(absl::ToUnixNanos(due)));
        r->mutable_at()->set_seconds(absl::ToUnixSeconds(due));
        r->mutable_at()->set_nanos(static_cast<int32_t>(absl::ToUnixNanos(due) % 1'000'000'000));
      }
      owed -= n;
      sent += n;
      max_inflight_seen = std::max<int64_t>(max_inflight_seen, inflight.fetch_add(1) + 1);
      auto ctx = std::make_shared<grpc::ClientContext>();
      auto resp = std::make_shared<hv1::ScheduleBatchResponse>();
      stub->async()->ScheduleBatch(
          ctx.get(), req.get(), resp.get(), [&, ctx, req, resp](grpc::Status st) {
            if (!st.ok()) {
              errors.fetch_add(1, std::memory_order_relaxed);
            } else {
              int64_t ok = 0;
              for (const auto& r : resp->results()) ok += r.code() == 0;
              scheduled.fetch_add(ok, std::memory_order_relaxed);
              errors.fetch_add(resp->results_size() - ok, std::memory_order_relaxed);
            }
            absl::MutexLock l(&mu);
            inflight.fetch_sub(1);
          });
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
  {
    absl::MutexLock l(&mu);
    mu.Await(absl::Condition(
        +[](std::atomic<int>* n) { return n->load() == 0; }, &inflight));
  }
  // Drain: until every scheduled task arrived, or 3 s past the last due time.
  const absl::Time give_up = last_due + absl::Seconds(3);
  while (received.load() < scheduled.load() && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  stop.store(true);
  for (auto& t : threads) t.join();
  std::vector<int64_t> all = Merge(lateness);
  std::printf(
      "mode=lateness rate=%d consumers=%d scheduled=%lld count=%lld early=%lld p50_ms=%.3f "
      "p99_ms=%.3f p999_ms=%.3f max_ms=%.3f errors=%lld\n",
      rate, consumers, static_cast<long long>(scheduled.load()),
      static_cast<long long>(received.load()), static_cast<long long>(early.load()),
      PctMs(all, 0.5), PctMs(all, 0.99), PctMs(all, 0.999),
      all.empty() ? 0.0 : static_cast<double>(all.back()) / 1000.0,
      static_cast<long long>(errors.load() + bad_payload.load()));
  if (max_inflight_seen > 64) {
    std::fprintf(stderr, "hourglass_load: note: up to %lld ScheduleBatch calls were in flight\n",
                 static_cast<long long>(max_inflight_seen));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // As in the server (service/main.cc): no deadlock detection of Debian's debug-built Abseil.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage(
      "Load generator for a running hourglass server. One key=value line per run on stdout.\n"
      "  hourglass_load --address=127.0.0.1:7070 --mode=schedule --inflight=1,8,64 --seconds=5\n"
      "  hourglass_load --mode=batch --batch_size=100 --inflight=8\n"
      "  hourglass_load --mode=cycle --producers=4 --consumers=4\n"
      "  hourglass_load --mode=lateness --rate=20000 --consumers=4");
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "bench/load.cc");
  };
  absl::SetFlagsUsageConfig(usage);
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "hourglass_load: unexpected argument \"%s\" (see --help)\n", rest[1]);
    return 2;
  }
  if (absl::GetFlag(FLAGS_seconds) <= 0) {
    std::fprintf(stderr, "hourglass_load: --seconds must be > 0\n");
    return 2;
  }
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode == "schedule") return RunSchedule(false);
  if (mode == "batch") {
    int b = absl::GetFlag(FLAGS_batch_size);
    if (b < 1 || b > 1000) {
      std::fprintf(stderr, "hourglass_load: --batch_size must be 1 to 1000\n");
      return 2;
    }
    return RunSchedule(true);
  }
  if (mode == "cycle") return RunCycle();
  if (mode == "lateness") return RunLateness();
  std::fprintf(stderr, "hourglass_load: unknown --mode \"%s\" (schedule, batch, cycle, lateness)\n",
               mode.c_str());
  return 2;
}
