// Test helpers for the records: a software audit signer with a self-signed certificate
// (made with OpenSSL, independently of pki/), and a database with it recorded.
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <string>

#include "common/ossl.hpp"
#include "db/journal.hpp"
#include "db/records.hpp"
#include "support.hpp"

namespace station::test {

class SoftwareAuditSigner final : public db::CheckpointSigner {
 public:
  SoftwareAuditSigner() : key_(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")) {
    ossl::X509Ptr cert(X509_new());
    X509_set_version(cert.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
    X509_NAME* name = X509_get_subject_name(cert.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("test audit"), -1, -1, 0);
    X509_set_issuer_name(cert.get(), name);
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
    X509_set_pubkey(cert.get(), key_.get());
    X509_sign(cert.get(), key_.get(), EVP_sha256());
    unsigned char* out = nullptr;
    const int len = i2d_X509(cert.get(), &out);
    der_.assign(out, out + len);
    OPENSSL_free(out);
  }
  Bytes sign(ByteView message) override {
    ossl::MdCtx ctx(EVP_MD_CTX_new());
    EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key_.get());
    std::size_t len = 0;
    EVP_DigestSign(ctx.get(), nullptr, &len, message.data(), message.size());
    Bytes sig(len);
    EVP_DigestSign(ctx.get(), sig.data(), &len, message.data(), message.size());
    sig.resize(len);
    return sig;
  }
  std::string signer_sha256() override { return sha256_hex(der_); }
  const Bytes& der() const { return der_; }

 private:
  ossl::Pkey key_;
  Bytes der_;
};

inline db::CaRecord audit_record(const SoftwareAuditSigner& s) {
  db::CaRecord r;
  r.role = "audit";
  r.status = "active";
  r.subject = r.issuer = "CN=test audit";
  r.serial = "01";
  r.not_before = "2026-01-01T00:00:00Z";
  r.not_after = "2036-01-01T00:00:00Z";
  r.key_id = std::string(64, 'a');
  r.key_label = "test-audit";
  r.sha256 = sha256_hex(s.der());
  r.issuer_key_id = r.key_id;
  r.der = s.der();
  return r;
}

// A device with an identity whose unique fields derive from `n`.
inline std::pair<db::DeviceRecord, db::IdentityRecord> sample_device(int n) {
  db::DeviceRecord d;
  d.serial = "SN-" + std::to_string(n);
  d.chip_id = "chip-" + std::to_string(n);
  char mac[13];
  std::snprintf(mac, sizeof mac, "02%010x", n);
  d.mac = mac;
  d.state = "issued";
  db::IdentityRecord i;
  i.cert_serial = sha256_hex(as_bytes("cert" + std::to_string(n))).substr(0, 32);
  i.cert_sha256 = sha256_hex(as_bytes("der" + std::to_string(n)));
  i.cert_der = Bytes{0x30, static_cast<std::uint8_t>(n & 0xff)};
  i.issuer_key_id = std::string(64, 'b');
  i.profile = "device";
  i.public_key = Bytes{0x04, static_cast<std::uint8_t>(n & 0xff)};
  i.pkhash = sha256_hex(as_bytes("key" + std::to_string(n)));
  i.key_mode = "injected";
  i.status = "active";
  i.op = "tester";
  return {d, i};
}

inline db::Mutation add_device(int n) {
  return [n](db::Connection& c) {
    auto [d, i] = sample_device(n);
    return db::insert_device_with_identity(c, d, i);
  };
}

}  // namespace station::test
