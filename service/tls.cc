#include "service/tls.h"

#include <grpc/grpc.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <utility>

#include "absl/strings/str_cat.h"
#include "service/logging.h"
#include "service/metrics.h"

namespace hourglass {

namespace {

// Certificate and key files are small; a bound keeps a wrong path (a device, a log) from being
// read whole.
constexpr size_t kMaxFileBytes = size_t{1} << 20;
constexpr absl::Duration kMinReloadInterval = absl::Milliseconds(100);
constexpr absl::Duration kMaxReloadInterval = absl::Hours(24);

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// Never prompts for a passphrase: an encrypted key is refused.
int NoPassphrase(char*, int, int, void*) { return -1; }

// The PEM certificates in `pem`, in order; none when it holds none.
std::vector<X509Ptr> ReadCertificates(const std::string& pem) {
  std::vector<X509Ptr> certs;
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (bio == nullptr) return certs;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr)) {
    certs.emplace_back(cert);
  }
  ERR_clear_error();  // the end of the input shows as an error
  return certs;
}

std::string NameText(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) return "";
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return size > 0 ? std::string(data, static_cast<size_t>(size)) : "";
}

absl::Time AsnTime(const ASN1_TIME* time) {
  std::tm tm{};
  if (time == nullptr || ASN1_TIME_to_tm(time, &tm) != 1) return absl::InfinitePast();
  return absl::FromTimeT(timegm(&tm));
}

CertificateInfo InfoOf(X509* cert) {
  CertificateInfo info;
  info.subject = NameText(X509_get_subject_name(cert));
  info.issuer = NameText(X509_get_issuer_name(cert));
  if (BIGNUM* serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr)) {
    if (char* hex = BN_bn2hex(serial)) {
      info.serial = hex;
      OPENSSL_free(hex);
    }
    BN_free(serial);
  }
  info.not_before = AsnTime(X509_get0_notBefore(cert));
  info.not_after = AsnTime(X509_get0_notAfter(cert));
  return info;
}

absl::StatusOr<std::string> ReadSmallFile(absl::string_view flag, const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rbe");
  if (file == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read ", flag, " \"", path, "\": ", std::strerror(errno)));
  }
  std::string contents;
  char buffer[16384];
  size_t n = 0;
  bool too_large = false;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0) {
    contents.append(buffer, n);
    if (contents.size() > kMaxFileBytes) {
      too_large = true;
      break;
    }
  }
  const bool failed = std::ferror(file) != 0;
  const int err = errno;
  std::fclose(file);
  if (failed) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read ", flag, " \"", path, "\": ", std::strerror(err)));
  }
  if (too_large) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " \"", path, "\" is larger than ",
                                                   kMaxFileBytes, " bytes; is it a PEM file?"));
  }
  return contents;
}

std::string Rfc3339(absl::Time time) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", time, absl::UTCTimeZone());
}

int64_t Nanoseconds(const timespec& t) {
  return static_cast<int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}

// ServerCredentials whose certificate, key and client CAs come from a fetcher that gRPC calls at
// every TLS handshake (grpc_ssl_server_credentials_create_options_using_config_fetcher): the C
// core's API for certificates that change while the server runs. gRPC's C++ API has no wrapper
// for it; like gRPC's own credentials, this one binds the port with grpc_server_add_http2_port.
class FetchedSslServerCredentials final : public grpc::ServerCredentials {
 public:
  FetchedSslServerCredentials(grpc_ssl_client_certificate_request_type request,
                              grpc_ssl_server_certificate_config_callback fetch, void* user_data) {
    // The base class has initialised gRPC (GrpcLibraryCodegen).
    credentials_ = grpc_ssl_server_credentials_create_with_options(
        grpc_ssl_server_credentials_create_options_using_config_fetcher(request, fetch, user_data));
  }
  ~FetchedSslServerCredentials() override {
    if (credentials_ != nullptr) grpc_server_credentials_release(credentials_);
  }

  // Auth metadata processors are not used by hourglass (tokens are checked by the services).
  void SetAuthMetadataProcessor(const std::shared_ptr<grpc::AuthMetadataProcessor>&) override {}

 private:
  int AddPortToServer(const std::string& address, grpc_server* server) override {
    if (credentials_ == nullptr) return 0;
    return grpc_server_add_http2_port(server, address.c_str(), credentials_);
  }

  grpc_server_credentials* credentials_ = nullptr;
};

}  // namespace

absl::Status ValidateTlsFlags(const TlsFiles& files, absl::Duration reload_interval) {
  if (files.cert_file.empty() != files.key_file.empty()) {
    return absl::InvalidArgumentError(
        files.cert_file.empty()
            ? "--tls_key is set but --tls_cert is not: TLS needs both the certificate and its key"
            : "--tls_cert is set but --tls_key is not: TLS needs both the certificate and its "
              "key");
  }
  if (!files.client_ca_file.empty() && files.cert_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls_client_ca needs --tls_cert and --tls_key: client certificates are verified only "
        "on a TLS port");
  }
  if (reload_interval < kMinReloadInterval || reload_interval > kMaxReloadInterval) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls_reload_interval must be between ", absl::FormatDuration(kMinReloadInterval), " and ",
        absl::FormatDuration(kMaxReloadInterval), ", got ", absl::FormatDuration(reload_interval)));
  }
  return absl::OkStatus();
}

absl::StatusOr<TlsMaterial> ParseTlsMaterial(const TlsFiles& files, std::string cert_chain_pem,
                                             std::string private_key_pem,
                                             std::string client_ca_pem) {
  std::vector<X509Ptr> chain = ReadCertificates(cert_chain_pem);
  if (chain.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls_cert \"", files.cert_file,
                     "\" holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
  }
  PkeyPtr key;
  {
    BioPtr bio(BIO_new_mem_buf(private_key_pem.data(), static_cast<int>(private_key_pem.size())));
    if (bio != nullptr)
      key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
    ERR_clear_error();
  }
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls_key \"", files.key_file,
        "\" holds no unencrypted PEM private key (-----BEGIN PRIVATE KEY-----, or RSA or EC)"));
  }
  if (X509_check_private_key(chain.front().get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat("--tls_key \"", files.key_file,
                                                   "\" is not the key of the certificate in "
                                                   "--tls_cert \"",
                                                   files.cert_file, "\""));
  }
  int client_cas = 0;
  if (!files.client_ca_file.empty()) {
    client_cas = static_cast<int>(ReadCertificates(client_ca_pem).size());
    if (client_cas == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tls_client_ca \"", files.client_ca_file,
                       "\" holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
  }
  TlsMaterial material;
  material.leaf = InfoOf(chain.front().get());
  material.chain_length = static_cast<int>(chain.size());
  material.client_cas = client_cas;
  material.cert_chain_pem = std::move(cert_chain_pem);
  material.private_key_pem = std::move(private_key_pem);
  material.client_ca_pem = files.client_ca_file.empty() ? "" : std::move(client_ca_pem);
  return material;
}

absl::StatusOr<TlsMaterial> LoadTlsMaterial(const TlsFiles& files) {
  absl::StatusOr<std::string> cert = ReadSmallFile("--tls_cert", files.cert_file);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadSmallFile("--tls_key", files.key_file);
  if (!key.ok()) return key.status();
  std::string client_ca;
  if (!files.client_ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadSmallFile("--tls_client_ca", files.client_ca_file);
    if (!ca.ok()) return ca.status();
    client_ca = *std::move(ca);
  }
  return ParseTlsMaterial(files, *std::move(cert), *std::move(key), std::move(client_ca));
}

std::optional<TlsCertificates::Stamps> TlsCertificates::StampsOf(const TlsFiles& files) {
  Stamps stamps;
  const std::string* paths[] = {&files.cert_file, &files.key_file, &files.client_ca_file};
  for (size_t i = 0; i < stamps.size(); ++i) {
    if (paths[i]->empty()) continue;
    struct stat st {};
    if (::stat(paths[i]->c_str(), &st) != 0) return std::nullopt;
    stamps[i] = Stamp{.device = st.st_dev,
                      .inode = st.st_ino,
                      .size = st.st_size,
                      .mtime_ns = Nanoseconds(st.st_mtim),
                      .ctime_ns = Nanoseconds(st.st_ctim)};
  }
  return stamps;
}

absl::StatusOr<std::unique_ptr<TlsCertificates>> TlsCertificates::Create(
    TlsFiles files, absl::Duration poll_interval) {
  // The stamps are taken before the read: a change during the read shows at the next poll.
  std::optional<Stamps> stamps = StampsOf(files);
  absl::StatusOr<TlsMaterial> material = LoadTlsMaterial(files);
  if (!material.ok()) return material.status();
  auto tls = std::unique_ptr<TlsCertificates>(
      new TlsCertificates(std::move(files), stamps, *std::move(material)));
  if (poll_interval > absl::ZeroDuration()) {
    TlsCertificates* self = tls.get();
    tls->poller_ = std::thread([self, poll_interval] {
      pthread_setname_np(pthread_self(), "hg-tls-reload");
      self->PollLoop(poll_interval);
    });
  }
  return tls;
}

TlsCertificates::TlsCertificates(TlsFiles files, std::optional<Stamps> stamps, TlsMaterial material)
    : files_(std::move(files)),
      stamps_(stamps),
      material_(std::make_shared<const TlsMaterial>(std::move(material))) {}

TlsCertificates::~TlsCertificates() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (poller_.joinable()) poller_.join();
}

std::shared_ptr<grpc::ServerCredentials> TlsCertificates::ServerCredentials() {
  return std::make_shared<FetchedSslServerCredentials>(
      files_.mutual() ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                      : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
      &TlsCertificates::Fetch, this);
}

grpc_ssl_certificate_config_reload_status TlsCertificates::Fetch(
    void* user_data, grpc_ssl_server_certificate_config** config) {
  auto* self = static_cast<TlsCertificates*>(user_data);
  std::shared_ptr<const TlsMaterial> material;
  {
    absl::MutexLock lock(&self->mu_);
    if (self->fetched_generation_ == self->generation_)
      return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
    self->fetched_generation_ = self->generation_;
    material = self->material_;
  }
  // gRPC copies the strings. It requires root certificates even when it asks for no client
  // certificate (ssl_security_connector asserts them); they are then never used nor sent, so the
  // server's own chain stands in.
  grpc_ssl_pem_key_cert_pair pair{material->private_key_pem.c_str(),
                                  material->cert_chain_pem.c_str()};
  const std::string& roots =
      material->client_ca_pem.empty() ? material->cert_chain_pem : material->client_ca_pem;
  *config = grpc_ssl_server_certificate_config_create(roots.c_str(), &pair, 1);
  return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
}

std::shared_ptr<const TlsMaterial> TlsCertificates::Current() const {
  absl::MutexLock lock(&mu_);
  return material_;
}

absl::Status TlsCertificates::ReloadIfChanged() {
  absl::MutexLock reload_lock(&reload_mu_);
  std::optional<Stamps> stamps = StampsOf(files_);
  if (stamps.has_value() && stamps_.has_value() && *stamps == *stamps_) return absl::OkStatus();
  const bool was_missing = !stamps_.has_value();
  stamps_ = stamps;
  absl::StatusOr<TlsMaterial> material = LoadTlsMaterial(files_);
  if (!material.ok()) {
    // A missing file is logged once, not at every poll.
    if (stamps.has_value() || !was_missing) {
      reloads_failed_.fetch_add(1, std::memory_order_relaxed);
      LogError("tls_reload_failed")
          .Str("error", material.status().message())
          .Str("action", "kept serving the previous certificate");
    }
    return material.status();
  }
  const CertificateInfo leaf = material->leaf;
  {
    absl::MutexLock lock(&mu_);
    if (material_->cert_chain_pem == material->cert_chain_pem &&
        material_->private_key_pem == material->private_key_pem &&
        material_->client_ca_pem == material->client_ca_pem) {
      return absl::OkStatus();  // touched, not changed
    }
    material_ = std::make_shared<const TlsMaterial>(*std::move(material));
    ++generation_;
  }
  reloads_ok_.fetch_add(1, std::memory_order_relaxed);
  LogInfo("tls_reloaded")
      .Str("subject", leaf.subject)
      .Str("serial", leaf.serial)
      .Str("not_after", Rfc3339(leaf.not_after))
      .Str("action", "new connections get the new certificate; open ones keep theirs");
  return absl::OkStatus();
}

void TlsCertificates::PollLoop(absl::Duration poll_interval) {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping), poll_interval)) return;
    }
    ReloadIfChanged().IgnoreError();
  }
}

void LogTlsEnabled(const TlsCertificates& tls) {
  const std::shared_ptr<const TlsMaterial> material = tls.Current();
  const CertificateInfo& leaf = material->leaf;
  LogInfo("tls_enabled")
      .Str("tls_cert", tls.files().cert_file)
      .Str("tls_key", tls.files().key_file)
      .Str("tls_client_ca", tls.files().client_ca_file)
      .Bool("client_certificates_required", tls.files().mutual())
      .Str("subject", leaf.subject)
      .Str("issuer", leaf.issuer)
      .Str("serial", leaf.serial)
      .Str("not_before", Rfc3339(leaf.not_before))
      .Str("not_after", Rfc3339(leaf.not_after))
      .Int("chain_length", material->chain_length)
      .Int("client_cas", material->client_cas);
  const absl::Time now = absl::Now();
  if (now < leaf.not_before || now >= leaf.not_after) {
    LogWarning("tls_certificate_not_valid_now")
        .Str("subject", leaf.subject)
        .Str("not_before", Rfc3339(leaf.not_before))
        .Str("not_after", Rfc3339(leaf.not_after))
        .Str("action",
             "clients will refuse it: renew the certificate (it is re-read when it changes)");
  }
}

void TlsCertificates::CollectMetrics(std::vector<prometheus::MetricFamily>* out) const {
  const std::shared_ptr<const TlsMaterial> material = Current();
  prometheus::MetricFamily expiry = GaugeFamily(
      "hourglass_tls_certificate_expiry_timestamp_seconds",
      "When the certificate the gRPC port serves (--tls_cert) expires, in seconds since the "
      "epoch.");
  AddGauge(&expiry, static_cast<double>(absl::ToUnixSeconds(material->leaf.not_after)));
  out->push_back(std::move(expiry));
  prometheus::MetricFamily reloads;
  reloads.name = "hourglass_tls_reloads_total";
  reloads.help =
      "Re-reads of changed TLS files: ok (the new certificate is served) or failed (the files "
      "were refused and the previous certificate kept).";
  reloads.type = prometheus::MetricType::Counter;
  for (const auto& [result, count] :
       {std::pair<const char*, uint64_t>{"ok", reloads_ok_.load(std::memory_order_relaxed)},
        {"failed", reloads_failed_.load(std::memory_order_relaxed)}}) {
    prometheus::ClientMetric& metric = reloads.metric.emplace_back();
    metric.label.push_back({"result", result});
    metric.counter.value = static_cast<double>(count);
  }
  out->push_back(std::move(reloads));
}

}  // namespace hourglass
