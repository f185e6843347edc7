// service/tls: the TLS flag combinations, the checks of the PEM files, and the reload of changed
// files (without the poll thread: ReloadIfChanged() is called by the test). The handshakes
// themselves are tested against the real binary in tests/e2e/test_tls.py.
#include "service/tls.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"

namespace hourglass {
namespace {

using ::testing::HasSubstr;

// A key and a self-signed certificate for `common_name`, valid from `not_before` to `not_after`,
// as PEM.
struct Pem {
  std::string cert;
  std::string key;
};

std::string BioText(BIO* bio) {
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  std::string text(data, static_cast<size_t>(size));
  BIO_free(bio);
  return text;
}

Pem MakeCertificate(const std::string& common_name, long serial, absl::Time not_before,
                    absl::Time not_after) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), serial);
  ASN1_TIME_set(X509_getm_notBefore(cert), absl::ToTimeT(not_before));
  ASN1_TIME_set(X509_getm_notAfter(cert), absl::ToTimeT(not_after));
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                             0);
  X509_set_issuer_name(cert, name);
  X509_sign(cert, key, EVP_sha256());
  Pem pem;
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  pem.cert = BioText(bio);
  bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  pem.key = BioText(bio);
  X509_free(cert);
  EVP_PKEY_free(key);
  return pem;
}

Pem MakeCertificate(const std::string& common_name, long serial) {
  const absl::Time now = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()));
  return MakeCertificate(common_name, serial, now - absl::Hours(1), now + absl::Hours(24));
}

std::string EncryptedKey() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  BIO* bio = BIO_new(BIO_s_mem());
  char passphrase[] = "secret";
  PEM_write_bio_PrivateKey(bio, key, EVP_aes_128_cbc(), nullptr, 0, nullptr, passphrase);
  EVP_PKEY_free(key);
  return BioText(bio);
}

const TlsFiles kNames{.cert_file = "/etc/tls/tls.crt",
                      .key_file = "/etc/tls/tls.key",
                      .client_ca_file = "/etc/tls/ca.crt"};

// --tls_cert and --tls_key go together; --tls_client_ca needs them; the interval is bounded.
TEST(ValidateTlsFlagsTest, RefusesCombinationsThatMakeNoSense) {
  const absl::Duration minute = absl::Minutes(1);
  EXPECT_TRUE(ValidateTlsFlags({}, minute).ok());
  EXPECT_TRUE(ValidateTlsFlags({.cert_file = "c", .key_file = "k"}, minute).ok());
  EXPECT_TRUE(
      ValidateTlsFlags({.cert_file = "c", .key_file = "k", .client_ca_file = "a"}, minute).ok());
  EXPECT_EQ(ValidateTlsFlags({.cert_file = "c"}, minute).message(),
            "--tls_cert is set but --tls_key is not: TLS needs both the certificate and its key");
  EXPECT_EQ(ValidateTlsFlags({.key_file = "k"}, minute).message(),
            "--tls_key is set but --tls_cert is not: TLS needs both the certificate and its key");
  EXPECT_THAT(ValidateTlsFlags({.client_ca_file = "a"}, minute).message(),
              HasSubstr("--tls_client_ca needs --tls_cert and --tls_key"));
  EXPECT_EQ(ValidateTlsFlags({}, absl::Milliseconds(50)).message(),
            "--tls_reload_interval must be between 100ms and 24h, got 50ms");
  EXPECT_EQ(ValidateTlsFlags({}, absl::Hours(25)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ValidateTlsFlags({}, absl::Milliseconds(100)).ok());
}

// A good pair: the leaf's subject, issuer, serial and validity are read; a CA bundle counts.
TEST(ParseTlsMaterialTest, ReadsTheLeafCertificate) {
  const absl::Time not_before = absl::FromUnixSeconds(1'700'000'000);
  const absl::Time not_after = absl::FromUnixSeconds(1'900'000'000);
  const Pem server = MakeCertificate("hourglass.test", 0x1A2B, not_before, not_after);
  const Pem ca = MakeCertificate("ca", 1);
  const Pem other_ca = MakeCertificate("other-ca", 2);
  absl::StatusOr<TlsMaterial> material =
      ParseTlsMaterial(kNames, server.cert + ca.cert, server.key, ca.cert + other_ca.cert);
  ASSERT_TRUE(material.ok()) << material.status();
  EXPECT_EQ(material->leaf.subject, "CN=hourglass.test");
  EXPECT_EQ(material->leaf.issuer, "CN=hourglass.test");
  EXPECT_EQ(material->leaf.serial, "1A2B");
  EXPECT_EQ(material->leaf.not_before, not_before);
  EXPECT_EQ(material->leaf.not_after, not_after);
  EXPECT_EQ(material->chain_length, 2);
  EXPECT_EQ(material->client_cas, 2);
  EXPECT_EQ(material->cert_chain_pem, server.cert + ca.cert);
  EXPECT_EQ(material->private_key_pem, server.key);
  EXPECT_EQ(material->client_ca_pem, ca.cert + other_ca.cert);
}

// Without --tls_client_ca the CA contents are ignored.
TEST(ParseTlsMaterialTest, NoClientCaWithoutTheFlag) {
  const Pem server = MakeCertificate("s", 1);
  absl::StatusOr<TlsMaterial> material =
      ParseTlsMaterial({.cert_file = "c", .key_file = "k"}, server.cert, server.key, "ignored");
  ASSERT_TRUE(material.ok()) << material.status();
  EXPECT_EQ(material->client_ca_pem, "");
  EXPECT_EQ(material->client_cas, 0);
}

// Each bad file is refused with a message naming its flag and path, and never the key.
TEST(ParseTlsMaterialTest, RefusesBadFilesNamingThem) {
  const Pem server = MakeCertificate("s", 1);
  const Pem other = MakeCertificate("o", 2);
  const Pem ca = MakeCertificate("ca", 3);
  EXPECT_EQ(ParseTlsMaterial(kNames, "junk", server.key, ca.cert).status().message(),
            "--tls_cert \"/etc/tls/tls.crt\" holds no PEM certificate "
            "(-----BEGIN CERTIFICATE-----)");
  EXPECT_EQ(ParseTlsMaterial(kNames, server.key, server.key, ca.cert).status().message(),
            "--tls_cert \"/etc/tls/tls.crt\" holds no PEM certificate "
            "(-----BEGIN CERTIFICATE-----)");
  EXPECT_THAT(ParseTlsMaterial(kNames, server.cert, "junk", ca.cert).status().message(),
              HasSubstr("--tls_key \"/etc/tls/tls.key\" holds no unencrypted PEM private key"));
  EXPECT_THAT(ParseTlsMaterial(kNames, server.cert, EncryptedKey(), ca.cert).status().message(),
              HasSubstr("--tls_key \"/etc/tls/tls.key\" holds no unencrypted PEM private key"));
  const absl::Status mismatch = ParseTlsMaterial(kNames, server.cert, other.key, ca.cert).status();
  EXPECT_EQ(mismatch.message(),
            "--tls_key \"/etc/tls/tls.key\" is not the key of the certificate in --tls_cert "
            "\"/etc/tls/tls.crt\"");
  EXPECT_EQ(ParseTlsMaterial(kNames, server.cert, server.key, "").status().message(),
            "--tls_client_ca \"/etc/tls/ca.crt\" holds no PEM certificate "
            "(-----BEGIN CERTIFICATE-----)");
  // The key of a chain's second certificate is not the leaf's.
  EXPECT_EQ(ParseTlsMaterial(kNames, other.cert + server.cert, server.key, ca.cert).status().code(),
            absl::StatusCode::kInvalidArgument);
}

class TlsCertificatesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/hourglass-tls-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    files_ = {.cert_file = dir_ + "/tls.crt", .key_file = dir_ + "/tls.key"};
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Replaces `path` atomically.
  void Write(const std::string& path, const std::string& contents) {
    const std::string temporary = path + ".new";
    std::ofstream(temporary, std::ios::binary) << contents;
    std::filesystem::rename(temporary, path);
  }
  void WritePair(const Pem& pem) {
    Write(files_.cert_file, pem.cert);
    Write(files_.key_file, pem.key);
  }

  std::string dir_;
  TlsFiles files_;
};

// Missing files at start are FAILED_PRECONDITION naming the flag and the file.
TEST_F(TlsCertificatesTest, MissingFileAtStart) {
  absl::StatusOr<std::unique_ptr<TlsCertificates>> tls =
      TlsCertificates::Create(files_, absl::ZeroDuration());
  EXPECT_EQ(tls.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(tls.status().message(), absl::StrCat("cannot read --tls_cert \"", files_.cert_file,
                                                 "\": No such file or directory"));
}

// A changed good pair is taken; a bad one (a key of another certificate, a deleted file) is
// refused and the previous pair stays; the reload counters and the expiry gauge follow.
TEST_F(TlsCertificatesTest, ReloadsGoodFilesAndKeepsThePreviousOnBadOnes) {
  const Pem first = MakeCertificate("first", 1);
  WritePair(first);
  absl::StatusOr<std::unique_ptr<TlsCertificates>> tls =
      TlsCertificates::Create(files_, absl::ZeroDuration());
  ASSERT_TRUE(tls.ok()) << tls.status();
  TlsCertificates& certificates = **tls;
  EXPECT_EQ(certificates.Current()->leaf.serial, "01");
  EXPECT_TRUE(certificates.ReloadIfChanged().ok());  // unchanged

  const Pem second = MakeCertificate("second", 2);
  Write(files_.cert_file, second.cert);  // the key is still the first's
  EXPECT_THAT(certificates.ReloadIfChanged().message(), HasSubstr("is not the key"));
  EXPECT_EQ(certificates.Current()->leaf.serial, "01");
  Write(files_.key_file, second.key);
  EXPECT_TRUE(certificates.ReloadIfChanged().ok());
  EXPECT_EQ(certificates.Current()->leaf.subject, "CN=second");

  std::filesystem::remove(files_.key_file);
  EXPECT_EQ(certificates.ReloadIfChanged().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(certificates.ReloadIfChanged().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(certificates.Current()->leaf.subject, "CN=second");

  const absl::Time not_after = absl::FromUnixSeconds(2'000'000'000);
  const Pem third = MakeCertificate("third", 3, absl::FromUnixSeconds(1'700'000'000), not_after);
  WritePair(third);
  EXPECT_TRUE(certificates.ReloadIfChanged().ok());
  EXPECT_EQ(certificates.Current()->leaf.subject, "CN=third");

  std::vector<prometheus::MetricFamily> families;
  certificates.CollectMetrics(&families);
  ASSERT_EQ(families.size(), 2u);
  EXPECT_EQ(families[0].name, "hourglass_tls_certificate_expiry_timestamp_seconds");
  ASSERT_EQ(families[0].metric.size(), 1u);
  EXPECT_EQ(families[0].metric[0].gauge.value, 2'000'000'000.0);
  EXPECT_EQ(families[1].name, "hourglass_tls_reloads_total");
  ASSERT_EQ(families[1].metric.size(), 2u);
  EXPECT_EQ(families[1].metric[0].label[0].value, "ok");
  EXPECT_EQ(families[1].metric[0].counter.value, 2);
  // The mismatch and the deleted key (counted once, however often it is polled).
  EXPECT_EQ(families[1].metric[1].label[0].value, "failed");
  EXPECT_EQ(families[1].metric[1].counter.value, 2);
}

// Rewriting the same contents (a touch, a sync that rewrites every file) is not a reload.
TEST_F(TlsCertificatesTest, SameContentsAreNotAReload) {
  const Pem pem = MakeCertificate("same", 7);
  WritePair(pem);
  absl::StatusOr<std::unique_ptr<TlsCertificates>> tls =
      TlsCertificates::Create(files_, absl::ZeroDuration());
  ASSERT_TRUE(tls.ok()) << tls.status();
  const std::shared_ptr<const TlsMaterial> before = (*tls)->Current();
  WritePair(pem);
  EXPECT_TRUE((*tls)->ReloadIfChanged().ok());
  EXPECT_EQ((*tls)->Current(), before);
}

// The poll thread picks a change up by itself.
TEST_F(TlsCertificatesTest, PollThreadReloads) {
  WritePair(MakeCertificate("polled", 1));
  absl::StatusOr<std::unique_ptr<TlsCertificates>> tls =
      TlsCertificates::Create(files_, absl::Milliseconds(100));
  ASSERT_TRUE(tls.ok()) << tls.status();
  WritePair(MakeCertificate("polled-again", 2));
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while ((*tls)->Current()->leaf.serial != "02" && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ((*tls)->Current()->leaf.subject, "CN=polled-again");
}

}  // namespace
}  // namespace hourglass
