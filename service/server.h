// Server: assembles hourglass. One object owns every part, built in dependency order:
//
//   clock ─ Ticker (tick thread, timing wheel) ─fires─▶ dispatch queue (BoundedQueue)
//                                                          │
//   TaskStore ◀──── WorkerPool (--workers threads) ◀───────┘
//       │                │ READY task
//       │                ├─ pull task ─▶ PullDeliverer ─▶ parked Lease calls
//       │                └─ push task ─▶ PushDispatcher (--push_workers threads, at most
//       │                                --queue_concurrency per queue) ─▶ HTTP / gRPC endpoint
//       ▼
//   gRPC services (SchedulerService, ConsumerService, health, reflection) + /metrics exposer
//
// The TaskStore writes every change to the write-ahead log (Wal, in --data_dir); an RPC that
// changed state is answered once its record is durable. At start the log is replayed before the
// gRPC port opens.
//
//   absl::StatusOr<std::unique_ptr<Server>> server = Server::Create(options, SystemClock::Get());
//   ...                                           // serve until SIGTERM
//   (*server)->Shutdown();                        // NOT_SERVING, drain, stop threads
//
// Thread-safe: Shutdown may be called from any thread, once or more.
#ifndef HOURGLASS_SERVICE_SERVER_H_
#define HOURGLASS_SERVICE_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "service/tls.h"
#include "service/validation.h"
#include "store/file.h"
#include "store/task_store.h"
#include "wheel/clock.h"

namespace hourglass {

struct ServerOptions {
  // Where gRPC listens; port 0 picks a free port (see Server::grpc_port()).
  std::string grpc_address = "0.0.0.0:7070";
  // Where /metrics is served; port 0 picks a free port; empty: no metrics endpoint.
  std::string metrics_address = "0.0.0.0:9464";
  // The data directory: created if missing and locked against a second server; holds the
  // write-ahead log.
  std::string data_dir = "./data";
  // fdatasync every group commit before answering (--fsync=always); false: --fsync=never.
  bool fsync = true;
  // Replay past corrupt log records instead of refusing to start (--skip_corrupt_log).
  bool skip_corrupt_log = false;
  uint64_t log_segment_bytes = uint64_t{64} << 20;
  // Write a snapshot (and delete the log it covers) after this many bytes of log records.
  uint64_t snapshot_bytes = uint64_t{64} << 20;
  // Overload protection. Unfinished (scheduled, ready or leased) tasks the server accepts before
  // Schedule answers RESOURCE_EXHAUSTED (--max_pending; 0: no limit); threads gRPC may start for
  // synchronous handlers (--max_grpc_threads) and memory it may take for connections and calls in
  // flight (--grpc_memory_bytes), both through a grpc::ResourceQuota (0: gRPC's default, no
  // bound).
  int64_t max_pending = 5'000'000;
  int max_grpc_threads = 64;
  int64_t grpc_memory_bytes = int64_t{256} << 20;
  int workers = 4;
  size_t queue_capacity = 10000;
  // Push delivery: threads making HTTP/gRPC calls, the cap of calls in progress per queue (0:
  // a quarter of push_workers, at least 1), and the CIDRs admitted despite the SSRF guard.
  int push_workers = 16;
  int queue_concurrency = 0;
  std::string push_allowlist;
  absl::Duration retention = absl::Hours(24);
  absl::Duration shutdown_grace = absl::Seconds(10);
  Limits limits;
  // Bearer tokens and their queues and permissions (--auth_tokens_file, see docs/security.md);
  // empty: no authentication. The file is polled for changes every auth_reload_interval.
  std::string auth_tokens_file;
  absl::Duration auth_reload_interval = absl::Seconds(1);
  // TLS on the gRPC port (--tls_cert, --tls_key; mTLS with --tls_client_ca, see service/tls.h);
  // no files: plaintext. The files are polled for changes every tls_reload_interval.
  TlsFiles tls;
  absl::Duration tls_reload_interval = absl::Minutes(1);
  // The file system of the log and snapshots; null: the real one. Tests inject one that stalls
  // or fails; it must outlive the server.
  FileSystem* file_system = nullptr;
};

// Checks options a user sets with flags; the message names the flag and the limit.
absl::Status ValidateOptions(const ServerOptions& options);

class Server {
 public:
  // Recovers the data directory, then builds and starts everything; fails (with a message naming
  // what to fix) when an address cannot be bound, or the data directory cannot be used or holds a
  // corrupt log. `clock` must outlive the server.
  static absl::StatusOr<std::unique_ptr<Server>> Create(const ServerOptions& options, Clock& clock);
  ~Server();  // Shutdown()

  // The bound gRPC port and metrics address ("host:port"; empty when disabled).
  int grpc_port() const;
  std::string metrics_address() const;

  // Health NOT_SERVING, new calls UNAVAILABLE, parked Lease calls answered UNAVAILABLE; then, after
  // a lame-duck second (at most the grace), gRPC stops accepting calls and in-flight ones get
  // until the end of the shutdown grace; then the tick thread and workers stop. Idempotent.
  void Shutdown();

  // A channel to this server that skips the network, for tests. Only until Shutdown(): gRPC 1.51
  // crashes on a call through it afterwards; talk to grpc_port() to test shutdown.
  std::shared_ptr<grpc::Channel> InProcessChannel();

  TaskStore& store();

 private:
  struct Parts;
  explicit Server(std::unique_ptr<Parts> parts);

  absl::Mutex shutdown_mu_;  // serialises Shutdown()
  std::unique_ptr<Parts> parts_;
};

}  // namespace hourglass

#endif  // HOURGLASS_SERVICE_SERVER_H_
