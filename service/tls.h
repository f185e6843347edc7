// TLS and mTLS on the gRPC port (--tls_cert, --tls_key, --tls_client_ca), with the files re-read
// when they change (cert-manager rotates them).
//
//   TlsFiles files{.cert_file = "/etc/hourglass-tls/tls.crt",
//                  .key_file = "/etc/hourglass-tls/tls.key",
//                  .client_ca_file = "/etc/hourglass-tls/ca.crt"};  // empty: no client certs
//   absl::StatusOr<std::unique_ptr<TlsCertificates>> tls =
//       TlsCertificates::Create(files, absl::Minutes(1));
//   builder.AddListeningPort(address, (*tls)->ServerCredentials());
//
// Every version of the files is checked before it is served: the certificate chain and the key
// must be PEM, the key must belong to the first certificate, and the client CA bundle must hold a
// certificate. A bad version at start fails Create() with a message naming the file; a bad
// version later (a half-done manual copy, a deleted file) is logged (tls_reload_failed) and the
// previous, good version stays in force. New connections get the newest good version (gRPC asks
// at every handshake); connections already open keep theirs.
//
// The private key is never logged and never put into a message.
#ifndef HOURGLASS_SERVICE_TLS_H_
#define HOURGLASS_SERVICE_TLS_H_

#include <grpc/grpc_security.h>
#include <sys/types.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/security/server_credentials.h"
#include "prometheus/metric_family.h"

namespace hourglass {

// The files of the TLS flags.
struct TlsFiles {
  std::string cert_file{};       // --tls_cert: the server's certificate chain, leaf first (PEM)
  std::string key_file{};        // --tls_key: its private key (PEM, unencrypted)
  std::string client_ca_file{};  // --tls_client_ca: CAs of client certificates; empty: none asked

  bool enabled() const { return !cert_file.empty() || !key_file.empty(); }
  bool mutual() const { return !client_ca_file.empty(); }
};

// Checks a combination of TLS flags: --tls_cert and --tls_key both or neither, --tls_client_ca
// only with them, the reload interval between 100ms and 24h. The message names the flags.
absl::Status ValidateTlsFlags(const TlsFiles& files, absl::Duration reload_interval);

// What the log and the metrics say about a certificate.
struct CertificateInfo {
  std::string subject;  // RFC 2253, e.g. "CN=hourglass.prod.svc,O=Example"
  std::string issuer;
  std::string serial;  // upper-case hex, e.g. "1A2B"
  absl::Time not_before;
  absl::Time not_after;
};

// One checked version of the files.
struct TlsMaterial {
  std::string cert_chain_pem;
  std::string private_key_pem;
  std::string client_ca_pem;  // empty: client certificates are not asked for
  CertificateInfo leaf;       // the first certificate of cert_chain_pem
  int chain_length = 0;       // certificates in cert_chain_pem
  int client_cas = 0;         // certificates in client_ca_pem
};

// Checks the contents of the three files (`files` names them in messages): INVALID_ARGUMENT
// naming the flag and the file when one holds no PEM certificate (or key), or when the key does
// not belong to the first certificate.
absl::StatusOr<TlsMaterial> ParseTlsMaterial(const TlsFiles& files, std::string cert_chain_pem,
                                             std::string private_key_pem,
                                             std::string client_ca_pem);
// Reads the files and checks them; a file that cannot be read is FAILED_PRECONDITION naming it.
absl::StatusOr<TlsMaterial> LoadTlsMaterial(const TlsFiles& files);

// The files, re-read when they change: a thread ("hg-tls-reload") polls their stat() (device,
// inode, size, mtime, ctime: an edit in place, a rename over the file and a Kubernetes Secret's
// symlink swap all show) every poll interval. Thread-safe.
class TlsCertificates {
 public:
  // Loads and checks the files; fails with a message naming the bad file. poll_interval <= 0:
  // no thread, reloads only through ReloadIfChanged().
  static absl::StatusOr<std::unique_ptr<TlsCertificates>> Create(TlsFiles files,
                                                                 absl::Duration poll_interval);
  ~TlsCertificates();  // stops the thread

  // Credentials for ServerBuilder::AddListeningPort that serve the newest good version: gRPC
  // fetches it at each handshake. They refer to this object, which must outlive the grpc::Server.
  std::shared_ptr<grpc::ServerCredentials> ServerCredentials();

  // The version in force.
  std::shared_ptr<const TlsMaterial> Current() const ABSL_LOCKS_EXCLUDED(mu_);

  // Re-reads the files if any stat() changed since the last look. OK when unchanged or reloaded;
  // otherwise the error (logged as tls_reload_failed), and the previous version stays.
  absl::Status ReloadIfChanged() ABSL_LOCKS_EXCLUDED(reload_mu_, mu_);

  // hourglass_tls_certificate_expiry_timestamp_seconds and hourglass_tls_reloads_total.
  void CollectMetrics(std::vector<prometheus::MetricFamily>* out) const;

  const TlsFiles& files() const { return files_; }

 private:
  struct Stamp {
    dev_t device = 0;
    ino_t inode = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;
    bool operator==(const Stamp&) const = default;
  };
  using Stamps = std::array<std::optional<Stamp>, 3>;  // cert, key, client CA (none: no file)
  // none: a file could not be stat()ed.
  static std::optional<Stamps> StampsOf(const TlsFiles& files);

  TlsCertificates(TlsFiles files, std::optional<Stamps> stamps, TlsMaterial material);
  void PollLoop(absl::Duration poll_interval) ABSL_LOCKS_EXCLUDED(mu_);
  // gRPC's certificate config fetcher (grpc_ssl_server_certificate_config_callback).
  static grpc_ssl_certificate_config_reload_status Fetch(
      void* self, grpc_ssl_server_certificate_config** config);

  // Constant after construction.
  const TlsFiles files_;

  absl::Mutex reload_mu_;  // serialises reloads (the thread and ReloadIfChanged())
  std::optional<Stamps> stamps_ ABSL_GUARDED_BY(reload_mu_);

  mutable absl::Mutex mu_;
  std::shared_ptr<const TlsMaterial> material_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 1;          // of material_
  uint64_t fetched_generation_ ABSL_GUARDED_BY(mu_) = 0;  // last handed to gRPC
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  std::atomic<uint64_t> reloads_ok_{0};
  std::atomic<uint64_t> reloads_failed_{0};

  std::thread poller_;
};

// Logs tls_enabled: the files, the served certificate (subject, issuer, serial, not-after) and
// whether client certificates are required; warns (tls_certificate_not_valid_now) when the
// certificate has expired or is not valid yet.
void LogTlsEnabled(const TlsCertificates& tls);

}  // namespace hourglass

#endif  // HOURGLASS_SERVICE_TLS_H_
