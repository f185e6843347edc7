// peer_load: the workloads of hourglass_load run against hourglass's peers (issue 6, item 3), so
// that bench/compare.py can put each hourglass figure next to the same figure of Redis and of
// beanstalkd, measured by an equivalent C++ client on the same machine.
//
//   --server=redis       hiredis, synchronous context per connection. A delayed job is one member
//                        of a sorted set (ZADD key <due time in us> "<id>:<due ns>:<payload>"), as
//                        Sidekiq keeps its scheduled jobs; taking due jobs is one Lua script
//                        (ZRANGEBYSCORE -inf <now> LIMIT 0 <n>, then ZREM of what it found), which
//                        is atomic and also the delete: Redis keeps no lease and no retry.
//   --server=beanstalkd  its text protocol over a TCP socket: `put <pri> <delay s> <ttr> <bytes>`
//                        into tube `bench`; consumers `reserve-with-timeout 1` then `delete <id>`.
//   --server=hourglass   only --mode=fill (ScheduleBatch of 100); the other workloads of hourglass
//                        are hourglass_load's.
//
// Modes (--mode), each printing one key=value line per run (the keys of hourglass_load's lines):
//   insert     pipelined inserts of jobs due --delay_seconds ahead on each of --connections
//              connections: --window commands written at once, at most --windows_in_flight
//              windows unanswered (100 x 8 by default, like ScheduleBatch(100) with 8 in flight)
//   roundtrip  one insert per round trip on each of --connections connections; p50/p99
//   cycle      --producers connections insert jobs due now, one per round trip; --consumers take
//              and delete them; cycles (deleted jobs) per second
//   lateness   --rate jobs/s due 1-2 s ahead (sent every 1 ms); --consumers take them
//              (Redis: polled every --poll_ms when the last take was not full; beanstalkd:
//              reserve, which waits);
//              lateness = take time - due time: p50, p99, p99.9, max, and how many were early
//   fill       --jobs jobs due in an hour as fast as the server takes them, then exit (the caller
//              reads the server's RSS before and after)
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
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
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "hourglass/v1/scheduler_service.grpc.pb.h"
#include "latency_stats.h"

#ifdef HOURGLASS_HAVE_HIREDIS
#include <hiredis/hiredis.h>
#endif

ABSL_FLAG(std::string, server, "redis", "Peer to drive: redis, beanstalkd or hourglass (fill).");
ABSL_FLAG(std::string, address, "127.0.0.1:6379", "host:port of the running server.");
ABSL_FLAG(std::string, mode, "insert", "Workload: insert, roundtrip, cycle, lateness or fill.");
ABSL_FLAG(double, seconds, 5.0, "How long each run generates load, in seconds.");
ABSL_FLAG(std::vector<std::string>, connections, std::vector<std::string>{"1"},
          "insert/roundtrip: connections, each with its own thread; a comma list (e.g. 1,4) runs "
          "once per value and prints one line each.");
ABSL_FLAG(int, window, 100, "insert/fill: commands written to the socket at once.");
ABSL_FLAG(int, windows_in_flight, 8, "insert/fill: windows written and not yet answered, at most.");
ABSL_FLAG(int, payload_bytes, 100, "Payload bytes of each job (after its id and due time).");
ABSL_FLAG(int, delay_seconds, 3600, "insert/roundtrip/fill: delay of each job, in whole seconds.");
ABSL_FLAG(int, producers, 4, "cycle: producer connections, one insert per round trip each.");
ABSL_FLAG(int, consumers, 4, "cycle/lateness: consumer connections.");
ABSL_FLAG(int, take_max, 100, "cycle/lateness, Redis: jobs taken by one script call, at most.");
ABSL_FLAG(int, rate, 20000, "lateness: jobs inserted per second (sent every 1 ms).");
ABSL_FLAG(double, poll_ms, 1.0,
          "cycle/lateness, Redis: pause of a consumer after a take that was not full.");
ABSL_FLAG(int64_t, jobs, 1000000, "fill: jobs to insert.");
ABSL_FLAG(
    std::string, name, "",
    "Sorted set (Redis), tube (beanstalkd) or queue (hourglass); empty: bench-<mode>-<random>.");

namespace {

int64_t NowNs() { return absl::GetCurrentTimeNanos(); }

using ::hourglass::bench::Merge;
using ::hourglass::bench::PctMs;

std::string Name(const std::string& mode) {
  std::string name = absl::GetFlag(FLAGS_name);
  if (!name.empty()) return name;
  std::random_device rd;
  return absl::StrCat("bench-", mode, "-", absl::Hex(rd(), absl::kZeroPad8));
}

// The body of a job: "<id>:<due Unix ns>:<payload_bytes x 'x'>". The consumer reads the due time
// back from it to measure lateness.
std::string JobBody(absl::string_view id, int64_t due_ns) {
  return absl::StrCat(id, ":", due_ns, ":",
                      std::string(static_cast<size_t>(absl::GetFlag(FLAGS_payload_bytes)), 'x'));
}

bool DueOf(absl::string_view body, int64_t* due_ns) {
  std::vector<absl::string_view> parts = absl::StrSplit(body, absl::MaxSplits(':', 2));
  return parts.size() == 3 && absl::SimpleAtoi(parts[1], due_ns);
}

std::string JobId(int connection, int64_t n) { return absl::StrFormat("%02x%014x", connection, n); }

// One connection to a peer. Not thread-safe: one thread per connection.
class PeerConnection {
 public:
  virtual ~PeerConnection() = default;
  // Queues one insert of a job due at due_ns (delay_s from now, for servers that speak delays).
  virtual void AppendInsert(absl::string_view id, int64_t due_ns, int delay_s) = 0;
  // Writes everything queued. False on a broken connection.
  virtual bool Flush() = 0;
  // Reads the replies of n inserts; returns how many succeeded, or -1 on a broken connection.
  virtual int64_t ReadInsertReplies(int n) = 0;
  // Takes (and deletes) up to max due jobs: Redis answers at once, beanstalkd waits up to 1 s for
  // one job. received_ns is when the jobs arrived (before any delete). False on a broken
  // connection.
  virtual bool Take(int max, std::vector<std::string>* bodies, int64_t* received_ns) = 0;
  // Whether Take returns at once (the consumer then polls) rather than waiting for a job.
  virtual bool Polls() const = 0;
};

// ---- beanstalkd: its text protocol over a socket --------------------------------------------

class BeanstalkConnection final : public PeerConnection {
 public:
  static std::unique_ptr<BeanstalkConnection> Connect(const std::string& address,
                                                      const std::string& tube, std::string* error) {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos) {
      *error = absl::StrCat("--address wants host:port, got \"", address, "\"");
      return nullptr;
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const std::string host = address.substr(0, colon), port = address.substr(colon + 1);
    if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
      *error = absl::StrCat("cannot resolve ", address, ": ", gai_strerror(rc));
      return nullptr;
    }
    int fd = -1;
    for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
      fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
      if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
        close(fd);
        fd = -1;
      }
    }
    freeaddrinfo(found);
    if (fd < 0) {
      *error = absl::StrCat("cannot connect to ", address, ": ", std::strerror(errno));
      return nullptr;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto conn = std::unique_ptr<BeanstalkConnection>(new BeanstalkConnection(fd));
    // Producers put into the tube, consumers reserve from it only.
    for (const std::string& cmd :
         {absl::StrCat("use ", tube, "\r\n"), absl::StrCat("watch ", tube, "\r\n"),
          std::string("ignore default\r\n")}) {
      std::string line;
      if (!conn->Send(cmd) || !conn->ReadLine(&line) ||
          !(absl::StartsWith(line, "USING") || absl::StartsWith(line, "WATCHING"))) {
        *error =
            absl::StrCat("beanstalkd refused \"", absl::StripSuffix(cmd, "\r\n"), "\": ", line);
        return nullptr;
      }
    }
    return conn;
  }

  ~BeanstalkConnection() override { close(fd_); }

  void AppendInsert(absl::string_view id, int64_t due_ns, int delay_s) override {
    const std::string body = JobBody(id, due_ns);
    absl::StrAppend(&out_, "put 1024 ", delay_s, " 60 ", body.size(), "\r\n", body, "\r\n");
  }

  bool Flush() override {
    const bool ok = Send(out_);
    out_.clear();
    return ok;
  }

  int64_t ReadInsertReplies(int n) override {
    int64_t ok = 0;
    std::string line;
    for (int i = 0; i < n; ++i) {
      if (!ReadLine(&line)) return -1;
      ok += absl::StartsWith(line, "INSERTED ");
    }
    return ok;
  }

  bool Take(int, std::vector<std::string>* bodies, int64_t* received_ns) override {
    bodies->clear();
    std::string line;
    if (!Send("reserve-with-timeout 1\r\n") || !ReadLine(&line)) return false;
    *received_ns = NowNs();
    if (!absl::StartsWith(line, "RESERVED ")) return true;  // TIMED_OUT, DEADLINE_SOON
    std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
    size_t bytes = 0;
    if (parts.size() != 3 || !absl::SimpleAtoi(parts[2], &bytes)) return false;
    std::string body;
    if (!ReadBody(bytes, &body)) return false;
    if (!Send(absl::StrCat("delete ", parts[1], "\r\n")) || !ReadLine(&line)) return false;
    if (line == "DELETED") bodies->push_back(std::move(body));
    return true;
  }

  bool Polls() const override { return false; }

 private:
  explicit BeanstalkConnection(int fd) : fd_(fd) {}

  bool Send(absl::string_view data) {
    while (!data.empty()) {
      ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  bool Fill() {
    if (pos_ > 0 && pos_ == in_.size()) {
      in_.clear();
      pos_ = 0;
    }
    char chunk[65536];
    ssize_t n;
    do {
      n = recv(fd_, chunk, sizeof(chunk), 0);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) return false;
    in_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  bool ReadLine(std::string* line) {
    for (;;) {
      size_t end = in_.find("\r\n", pos_);
      if (end != std::string::npos) {
        line->assign(in_, pos_, end - pos_);
        pos_ = end + 2;
        return true;
      }
      if (!Fill()) return false;
    }
  }

  bool ReadBody(size_t bytes, std::string* body) {
    while (in_.size() - pos_ < bytes + 2) {
      if (!Fill()) return false;
    }
    body->assign(in_, pos_, bytes);
    pos_ += bytes + 2;
    return true;
  }

  const int fd_;
  std::string out_;
  std::string in_;
  size_t pos_ = 0;
};

// ---- Redis: hiredis --------------------------------------------------------------------------

#ifdef HOURGLASS_HAVE_HIREDIS
// Takes up to ARGV[2] members of KEYS[1] with a score <= ARGV[1] and removes them, atomically.
constexpr char kTakeScript[] =
    "local jobs = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])\n"
    "if #jobs > 0 then redis.call('ZREM', KEYS[1], unpack(jobs)) end\n"
    "return jobs\n";

class RedisConnection final : public PeerConnection {
 public:
  static std::unique_ptr<RedisConnection> Connect(const std::string& address,
                                                  const std::string& key, std::string* error) {
    const size_t colon = address.rfind(':');
    int port = 0;
    if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port)) {
      *error = absl::StrCat("--address wants host:port, got \"", address, "\"");
      return nullptr;
    }
    timeval timeout{5, 0};
    redisContext* c = redisConnectWithTimeout(address.substr(0, colon).c_str(), port, timeout);
    if (c == nullptr || c->err) {
      *error = absl::StrCat("cannot connect to ", address, ": ", c ? c->errstr : "out of memory");
      if (c) redisFree(c);
      return nullptr;
    }
    auto conn = std::unique_ptr<RedisConnection>(new RedisConnection(c, key));
    redisReply* r = static_cast<redisReply*>(redisCommand(c, "SCRIPT LOAD %s", kTakeScript));
    if (r == nullptr || r->type != REDIS_REPLY_STRING) {
      *error = absl::StrCat("SCRIPT LOAD failed: ", r ? std::string(r->str, r->len) : c->errstr);
      if (r) freeReplyObject(r);
      return nullptr;
    }
    conn->take_sha_.assign(r->str, r->len);
    freeReplyObject(r);
    return conn;
  }

  ~RedisConnection() override { redisFree(c_); }

  void AppendInsert(absl::string_view id, int64_t due_ns, int) override {
    const std::string score = absl::StrCat(due_ns / 1000);
    const std::string member = JobBody(id, due_ns);
    const char* argv[] = {"ZADD", key_.c_str(), score.c_str(), member.c_str()};
    const size_t lens[] = {4, key_.size(), score.size(), member.size()};
    redisAppendCommandArgv(c_, 4, argv, lens);
  }

  bool Flush() override {
    int done = 0;
    while (!done) {
      if (redisBufferWrite(c_, &done) != REDIS_OK) return false;
    }
    return true;
  }

  int64_t ReadInsertReplies(int n) override {
    int64_t ok = 0;
    for (int i = 0; i < n; ++i) {
      void* reply = nullptr;
      if (redisGetReply(c_, &reply) != REDIS_OK) return -1;
      auto* r = static_cast<redisReply*>(reply);
      ok += r->type == REDIS_REPLY_INTEGER && r->integer == 1;
      freeReplyObject(r);
    }
    return ok;
  }

  bool Take(int max, std::vector<std::string>* bodies, int64_t* received_ns) override {
    bodies->clear();
    const std::string now_us = absl::StrCat(NowNs() / 1000), limit = absl::StrCat(max);
    const char* argv[] = {"EVALSHA",    take_sha_.c_str(), "1",
                          key_.c_str(), now_us.c_str(),    limit.c_str()};
    const size_t lens[] = {7, take_sha_.size(), 1, key_.size(), now_us.size(), limit.size()};
    auto* r = static_cast<redisReply*>(redisCommandArgv(c_, 6, argv, lens));
    *received_ns = NowNs();
    if (r == nullptr) return false;
    if (r->type == REDIS_REPLY_ARRAY) {
      for (size_t i = 0; i < r->elements; ++i) {
        bodies->emplace_back(r->element[i]->str, r->element[i]->len);
      }
    }
    freeReplyObject(r);
    return true;
  }

  bool Polls() const override { return true; }

 private:
  RedisConnection(redisContext* c, std::string key) : c_(c), key_(std::move(key)) {}

  redisContext* const c_;
  const std::string key_;
  std::string take_sha_;
};
#endif  // HOURGLASS_HAVE_HIREDIS

std::unique_ptr<PeerConnection> Connect(const std::string& name) {
  const std::string server = absl::GetFlag(FLAGS_server);
  const std::string address = absl::GetFlag(FLAGS_address);
  std::string error;
  std::unique_ptr<PeerConnection> conn;
  if (server == "beanstalkd") {
    conn = BeanstalkConnection::Connect(address, name, &error);
  } else if (server == "redis") {
#ifdef HOURGLASS_HAVE_HIREDIS
    conn = RedisConnection::Connect(address, name, &error);
#else
    error = "built without hiredis (install libhiredis-dev and reconfigure)";
#endif
  } else {
    error = absl::StrCat("--server=", server, " has no --mode=", absl::GetFlag(FLAGS_mode));
  }
  if (conn == nullptr) std::fprintf(stderr, "peer_load: %s\n", error.c_str());
  return conn;
}

// Runs body(i) on n threads and joins them.
template <typename Body>
void OnThreads(int n, Body body) {
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) threads.emplace_back([&body, i] { body(i); });
  for (auto& t : threads) t.join();
}

bool ParseCounts(const std::vector<std::string>& values, std::vector<int>* counts) {
  for (const std::string& s : values) {
    int n = 0;
    if (!absl::SimpleAtoi(s, &n) || n < 1) {
      std::fprintf(stderr, "peer_load: --connections wants positive integers, got \"%s\"\n",
                   s.c_str());
      return false;
    }
    counts->push_back(n);
  }
  return true;
}

// ---- insert and roundtrip --------------------------------------------------------------------

int RunInserts(bool pipelined) {
  std::vector<int> counts;
  if (!ParseCounts(absl::GetFlag(FLAGS_connections), &counts)) return 2;
  const std::string mode = pipelined ? "insert" : "roundtrip";
  const double seconds = absl::GetFlag(FLAGS_seconds);
  const int window = pipelined ? absl::GetFlag(FLAGS_window) : 1;
  const int max_outstanding = pipelined ? window * absl::GetFlag(FLAGS_windows_in_flight) : 1;
  const int delay_s = absl::GetFlag(FLAGS_delay_seconds);
  for (int n : counts) {
    const std::string name = Name(mode);
    std::vector<std::unique_ptr<PeerConnection>> conns;
    for (int i = 0; i < n; ++i) {
      conns.push_back(Connect(name));
      if (conns.back() == nullptr) return 1;
    }
    std::atomic<int64_t> done{0}, errors{0};
    std::vector<std::vector<int64_t>> latency_us(n);
    const absl::Time deadline = absl::Now() + absl::Seconds(seconds);
    OnThreads(n, [&](int c) {
      PeerConnection& conn = *conns[c];
      int64_t next = 0, ok_total = 0, outstanding = 0;
      bool broken = false;
      while (!broken && absl::Now() < deadline) {
        const int64_t start_ns = NowNs();
        for (int i = 0; i < window; ++i) {
          conn.AppendInsert(JobId(c, next++), start_ns + int64_t{delay_s} * 1'000'000'000, delay_s);
        }
        outstanding += window;
        broken = !conn.Flush();
        while (!broken && outstanding >= max_outstanding) {
          int64_t ok = conn.ReadInsertReplies(window);
          if (ok < 0) {
            broken = true;
            break;
          }
          outstanding -= window;
          if (absl::Now() <= deadline) {
            ok_total += ok;
            errors.fetch_add(window - ok, std::memory_order_relaxed);
            if (!pipelined) latency_us[c].push_back((NowNs() - start_ns) / 1000);
          }
        }
      }
      if (!broken && outstanding > 0) conn.ReadInsertReplies(static_cast<int>(outstanding));
      if (broken) errors.fetch_add(1, std::memory_order_relaxed);
      done.fetch_add(ok_total, std::memory_order_relaxed);
    });
    const double per_s = static_cast<double>(done.load()) / seconds;
    if (pipelined) {
      std::printf(
          "mode=insert server=%s connections=%d window=%d in_flight=%d jobs_per_s=%.0f "
          "errors=%lld\n",
          absl::GetFlag(FLAGS_server).c_str(), n, window, max_outstanding, per_s,
          static_cast<long long>(errors.load()));
    } else {
      std::vector<int64_t> lat = Merge(latency_us);
      std::printf(
          "mode=roundtrip server=%s connections=%d jobs_per_s=%.0f p50_ms=%.3f "
          "p99_ms=%.3f errors=%lld\n",
          absl::GetFlag(FLAGS_server).c_str(), n, per_s, PctMs(lat, 0.5), PctMs(lat, 0.99),
          static_cast<long long>(errors.load()));
    }
    std::fflush(stdout);
  }
  return 0;
}

// ---- consumers shared by cycle and lateness --------------------------------------------------

// Takes until `stop`; calls on_taken(received_ns, bodies) for each non-empty take.
template <typename OnTaken>
void ConsumeLoop(PeerConnection& conn, const std::atomic<bool>& stop, std::atomic<int64_t>& errors,
                 OnTaken on_taken) {
  const int max = absl::GetFlag(FLAGS_take_max);
  const absl::Duration poll = absl::Microseconds(absl::GetFlag(FLAGS_poll_ms) * 1000);
  std::vector<std::string> bodies;
  while (!stop.load(std::memory_order_relaxed)) {
    int64_t received_ns = 0;
    if (!conn.Take(max, &bodies, &received_ns)) {
      errors.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (!bodies.empty()) on_taken(received_ns, bodies);
    if (conn.Polls() && static_cast<int>(bodies.size()) < max) absl::SleepFor(poll);
  }
}

int RunCycle() {
  const std::string name = Name("cycle");
  const double seconds = absl::GetFlag(FLAGS_seconds);
  const int producers = absl::GetFlag(FLAGS_producers);
  const int consumers = absl::GetFlag(FLAGS_consumers);
  std::vector<std::unique_ptr<PeerConnection>> conns;
  for (int i = 0; i < producers + consumers; ++i) {
    conns.push_back(Connect(name));
    if (conns.back() == nullptr) return 1;
  }
  std::atomic<bool> stop{false};
  std::atomic<int64_t> inserted{0}, taken{0}, errors{0};
  const absl::Time deadline = absl::Now() + absl::Seconds(seconds);
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      PeerConnection& conn = *conns[p];
      for (int64_t n = 0; absl::Now() < deadline; ++n) {
        conn.AppendInsert(JobId(p, n), NowNs(), 0);
        int64_t ok = conn.Flush() ? conn.ReadInsertReplies(1) : -1;
        if (ok < 0) {
          errors.fetch_add(1, std::memory_order_relaxed);
          return;
        }
        inserted.fetch_add(ok, std::memory_order_relaxed);
        errors.fetch_add(1 - ok, std::memory_order_relaxed);
      }
    });
  }
  for (int c = 0; c < consumers; ++c) {
    threads.emplace_back([&, c] {
      ConsumeLoop(*conns[producers + c], stop, errors,
                  [&](int64_t received_ns, const std::vector<std::string>& bodies) {
                    if (received_ns <= absl::ToUnixNanos(deadline)) {
                      taken.fetch_add(static_cast<int64_t>(bodies.size()),
                                      std::memory_order_relaxed);
                    }
                  });
    });
  }
  absl::SleepFor(deadline - absl::Now());
  stop.store(true);
  for (auto& t : threads) t.join();
  std::printf(
      "mode=cycle server=%s producers=%d consumers=%d cycles_per_s=%.0f scheduled_per_s=%.0f "
      "errors=%lld\n",
      absl::GetFlag(FLAGS_server).c_str(), producers, consumers,
      static_cast<double>(taken.load()) / seconds, static_cast<double>(inserted.load()) / seconds,
      static_cast<long long>(errors.load()));
  return 0;
}

int RunLateness() {
  const std::string name = Name("lateness");
  const double seconds = absl::GetFlag(FLAGS_seconds);
  const int rate = absl::GetFlag(FLAGS_rate);
  const int consumers = absl::GetFlag(FLAGS_consumers);
  const bool whole_seconds = absl::GetFlag(FLAGS_server) == "beanstalkd";
  std::unique_ptr<PeerConnection> producer = Connect(name);
  if (producer == nullptr) return 1;
  std::vector<std::unique_ptr<PeerConnection>> conns;
  for (int i = 0; i < consumers; ++i) {
    conns.push_back(Connect(name));
    if (conns.back() == nullptr) return 1;
  }
  std::atomic<bool> stop{false};
  std::atomic<int64_t> errors{0}, received{0}, early{0}, bad_body{0};
  std::vector<std::vector<int64_t>> lateness(consumers);
  std::vector<std::thread> threads;
  for (int c = 0; c < consumers; ++c) {
    threads.emplace_back([&, c] {
      lateness[c].reserve(static_cast<size_t>(rate * (seconds + 1)) / consumers + 1024);
      ConsumeLoop(*conns[c], stop, errors,
                  [&, c](int64_t received_ns, const std::vector<std::string>& bodies) {
                    for (const std::string& body : bodies) {
                      int64_t due_ns = 0;
                      if (!DueOf(body, &due_ns)) {
                        bad_body.fetch_add(1, std::memory_order_relaxed);
                        continue;
                      }
                      const int64_t late_ns = received_ns - due_ns;
                      if (late_ns < 0) early.fetch_add(1, std::memory_order_relaxed);
                      lateness[c].push_back(late_ns / 1000);
                      received.fetch_add(1, std::memory_order_relaxed);
                    }
                  });
    });
  }
  // Producer: every millisecond, the jobs owed by then, each due at a uniformly random instant
  // 1-2 s ahead (beanstalkd speaks whole seconds: 1 or 2 s); its due time is in its body.
  std::mt19937_64 rng(std::random_device{}());
  std::uniform_int_distribution<int64_t> jitter(0, 1'000'000'000);
  int64_t sent = 0, scheduled = 0;
  const int64_t start_ns = NowNs();
  const int64_t end_ns = start_ns + static_cast<int64_t>(seconds * 1e9);
  int64_t last_due_ns = start_ns;
  for (int64_t now_ns = start_ns; now_ns < end_ns; now_ns = NowNs()) {
    const int64_t owed =
        static_cast<int64_t>(static_cast<double>(now_ns - start_ns) * 1e-9 * rate) - sent;
    if (owed > 0) {
      for (int64_t i = 0; i < owed; ++i) {
        int delay_s = 1;
        int64_t due_ns;
        if (whole_seconds) {
          delay_s = 1 + static_cast<int>(jitter(rng) & 1);
          due_ns = now_ns + int64_t{delay_s} * 1'000'000'000;
        } else {
          due_ns = now_ns + 1'000'000'000 + jitter(rng);
        }
        last_due_ns = std::max(last_due_ns, due_ns);
        producer->AppendInsert(JobId(99, sent + i), due_ns, delay_s);
      }
      int64_t ok = producer->Flush() ? producer->ReadInsertReplies(static_cast<int>(owed)) : -1;
      if (ok < 0) {
        errors.fetch_add(1, std::memory_order_relaxed);
        break;
      }
      sent += owed;
      scheduled += ok;
      errors.fetch_add(owed - ok, std::memory_order_relaxed);
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
  // Drain: until every scheduled job arrived, or 3 s past the last due time.
  while (received.load() < scheduled && NowNs() < last_due_ns + 3'000'000'000) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  stop.store(true);
  for (auto& t : threads) t.join();
  std::vector<int64_t> all = Merge(lateness);
  std::printf(
      "mode=lateness server=%s rate=%d consumers=%d scheduled=%lld count=%lld early=%lld "
      "p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f errors=%lld\n",
      absl::GetFlag(FLAGS_server).c_str(), rate, consumers, static_cast<long long>(scheduled),
      static_cast<long long>(received.load()), static_cast<long long>(early.load()),
      PctMs(all, 0.5), PctMs(all, 0.99), PctMs(all, 0.999),
      all.empty() ? 0.0 : static_cast<double>(all.back()) / 1000.0,
      static_cast<long long>(errors.load() + bad_body.load()));
  return 0;
}

// ---- fill ------------------------------------------------------------------------------------

// Fills with ScheduleBatch calls of --window tasks from 4 threads, one call in flight each.
void FillHourglass(int64_t jobs, const std::string& queue, int64_t* ok_out, int64_t* errors_out) {
  namespace hv1 = hourglass::v1;
  constexpr int kThreads = 4;
  const int window = std::clamp(absl::GetFlag(FLAGS_window), 1, 1000);
  std::atomic<int64_t> next{0}, ok_total{0}, errors{0};
  std::string first_error;
  absl::Mutex mu;
  OnThreads(kThreads, [&](int) {
    auto stub = hv1::SchedulerService::NewStub(
        grpc::CreateChannel(absl::GetFlag(FLAGS_address), grpc::InsecureChannelCredentials()));
    hv1::ScheduleRequest one;
    one.set_queue(queue);
    one.set_payload(std::string(static_cast<size_t>(absl::GetFlag(FLAGS_payload_bytes)), 'x'));
    one.mutable_delay()->set_seconds(absl::GetFlag(FLAGS_delay_seconds));
    for (;;) {
      const int64_t first = next.fetch_add(window);
      if (first >= jobs) return;
      const int n = static_cast<int>(std::min<int64_t>(window, jobs - first));
      hv1::ScheduleBatchRequest batch;
      for (int i = 0; i < n; ++i) *batch.add_requests() = one;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      hv1::ScheduleBatchResponse resp;
      grpc::Status st = stub->ScheduleBatch(&ctx, batch, &resp);
      int64_t ok = 0;
      for (const auto& r : resp.results()) ok += r.code() == 0;
      ok_total.fetch_add(ok);
      errors.fetch_add(n - ok);
      if (!st.ok()) {
        absl::MutexLock l(&mu);
        if (first_error.empty()) first_error = st.error_message();
      }
    }
  });
  if (!first_error.empty()) std::fprintf(stderr, "peer_load: %s\n", first_error.c_str());
  *ok_out = ok_total.load();
  *errors_out = errors.load();
}

int RunFill() {
  const int64_t jobs = absl::GetFlag(FLAGS_jobs);
  const std::string name = Name("fill");
  const absl::Time start = absl::Now();
  int64_t ok_total = 0, errors = 0;
  if (absl::GetFlag(FLAGS_server) == "hourglass") {
    FillHourglass(jobs, name, &ok_total, &errors);
  } else {
    std::unique_ptr<PeerConnection> conn = Connect(name);
    if (conn == nullptr) return 1;
    const int window = absl::GetFlag(FLAGS_window);
    const int max_outstanding = window * absl::GetFlag(FLAGS_windows_in_flight);
    const int delay_s = absl::GetFlag(FLAGS_delay_seconds);
    int64_t next = 0, outstanding = 0;
    while (next < jobs || outstanding > 0) {
      if (next < jobs) {
        const int n = static_cast<int>(std::min<int64_t>(window, jobs - next));
        const int64_t now_ns = NowNs();
        for (int i = 0; i < n; ++i) {
          conn->AppendInsert(JobId(0, next++), now_ns + int64_t{delay_s} * 1'000'000'000, delay_s);
        }
        if (!conn->Flush()) return 1;
        outstanding += n;
      }
      while (outstanding >= max_outstanding || (next >= jobs && outstanding > 0)) {
        const int n = static_cast<int>(std::min<int64_t>(window, outstanding));
        int64_t ok = conn->ReadInsertReplies(n);
        if (ok < 0) return 1;
        outstanding -= n;
        ok_total += ok;
        errors += n - ok;
      }
    }
  }
  std::printf("mode=fill server=%s jobs=%lld seconds=%.3f errors=%lld\n",
              absl::GetFlag(FLAGS_server).c_str(), static_cast<long long>(ok_total),
              absl::ToDoubleSeconds(absl::Now() - start), static_cast<long long>(errors));
  return errors == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  // As in the server (service/main.cc): no deadlock detection of Debian's debug-built Abseil.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage(
      "hourglass_load's workloads against Redis and beanstalkd. One key=value line per run.\n"
      "  peer_load --server=redis --address=127.0.0.1:6379 --mode=insert --connections=1,4\n"
      "  peer_load --server=beanstalkd --address=127.0.0.1:11300 --mode=cycle\n"
      "  peer_load --server=hourglass --address=127.0.0.1:7070 --mode=fill --jobs=1000000");
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "bench/peer_load.cc");
  };
  absl::SetFlagsUsageConfig(usage);
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    std::fprintf(stderr, "peer_load: unexpected argument \"%s\" (see --help)\n", rest[1]);
    return 2;
  }
  const std::string server = absl::GetFlag(FLAGS_server);
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (server != "redis" && server != "beanstalkd" && server != "hourglass") {
    std::fprintf(stderr, "peer_load: unknown --server \"%s\" (redis, beanstalkd, hourglass)\n",
                 server.c_str());
    return 2;
  }
  if (absl::GetFlag(FLAGS_seconds) <= 0 || absl::GetFlag(FLAGS_window) < 1 ||
      absl::GetFlag(FLAGS_windows_in_flight) < 1 || absl::GetFlag(FLAGS_take_max) < 1 ||
      absl::GetFlag(FLAGS_jobs) < 1 || absl::GetFlag(FLAGS_rate) < 1) {
    std::fprintf(stderr,
                 "peer_load: --seconds, --window, --windows_in_flight, --take_max, --jobs and "
                 "--rate must be > 0\n");
    return 2;
  }
  if (mode == "fill") return RunFill();
  if (server == "hourglass") {
    std::fprintf(stderr,
                 "peer_load: --server=hourglass runs only --mode=fill (see hourglass_load)\n");
    return 2;
  }
  if (mode == "insert") return RunInserts(true);
  if (mode == "roundtrip") return RunInserts(false);
  if (mode == "cycle") return RunCycle();
  if (mode == "lateness") return RunLateness();
  std::fprintf(stderr,
               "peer_load: unknown --mode \"%s\" (insert, roundtrip, cycle, lateness, fill)\n",
               mode.c_str());
  return 2;
}
