#include "http/tls.hpp"

#include <openssl/ssl.h>

#include <algorithm>
#include <mutex>

#include <fmt/format.h>

#include "common/ossl.hpp"
#include "core/ca_lifecycle.hpp"
#include "pki/x509.hpp"

namespace station::http {
namespace {

using core::RecordsLedger;

// P-256 key pair in memory; returns it and its SubjectPublicKeyInfo DER.
ossl::Pkey session_key(Bytes& spki) {
  ossl::Pkey key(ossl::check(EVP_EC_gen("P-256"), "generating the TLS session key"));
  unsigned char* der = nullptr;
  const int n = i2d_PUBKEY(key.get(), &der);
  if (n <= 0) throw ossl::error("encoding the TLS session key's public key");
  spki.assign(der, der + n);
  OPENSSL_free(der);
  return key;
}

}  // namespace

nlohmann::json TlsIdentity::to_json() const {
  return {{"serial", serial}, {"sha256", sha256}, {"issuer", issuer}, {"not_after", not_after}, {"names", names}};
}

TlsIdentity make_tls_identity(core::Station& station, std::vector<std::string> names, int validity_days) {
  names.erase(std::remove(names.begin(), names.end(), "localhost"), names.end());
  names.insert(names.begin(), "localhost");
  pki::CertProfile profile;
  profile.name = "tls-server";
  profile.validity_days = validity_days;
  profile.subject = "CN={serial}";  // the issuer fills in names.front()
  profile.subject_alt_names.clear();
  for (const auto& n : names) profile.subject_alt_names.push_back("DNS:" + n);
  profile.key_usage = {"digitalSignature"};
  profile.extended_key_usage = {"serverAuth"};
  profile.validate();

  Bytes spki;
  const ossl::Pkey key = session_key(spki);

  TlsIdentity id;
  id.names = names;
  std::lock_guard lock(station.mutex());
  const db::CaRecord issuing = core::current_issuer(station);
  RecordsLedger ledger(station.records());
  pki::CertificateIssuer issuer(station.hsm(), pki::CaSigner{issuing.der, issuing.key_id}, profile, &ledger);
  const pki::IssuedCertificate cert = issuer.issue(spki, names.front());
  id.serial = cert.serial;
  id.sha256 = cert.sha256;
  id.issuer = cert.issuer_key_id;
  id.not_after = pki::rfc3339(cert.not_after);
  id.expires = std::chrono::system_clock::time_point(cert.not_after);
  id.chain_pem = pki::to_pem(cert.der) + pki::to_pem(issuing.der);
  // Journaled before it is used, like every certificate the station signs.
  station.journal().commit({core::os_user(), "http.tls_certificate", "tls:" + cert.serial,
                            {{"serial", cert.serial},
                             {"sha256", cert.sha256},
                             {"issuer", cert.issuer_key_id},
                             {"not_after", id.not_after},
                             {"names", names},
                             {"key", "session key in memory (P-256), never stored"}}});

  namespace ssl = boost::asio::ssl;
  id.context = std::make_shared<ssl::context>(ssl::context::tls_server);
  id.context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                          ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
  SSL_CTX* ctx = id.context->native_handle();
  ossl::check(SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION), "setting TLS 1.2 as the minimum");
  id.context->use_certificate_chain(boost::asio::buffer(id.chain_pem));
  // The key object itself, never a PEM or DER of it.
  ossl::check(SSL_CTX_use_PrivateKey(ctx, key.get()), "loading the TLS session key");
  ossl::check(SSL_CTX_check_private_key(ctx), "checking the TLS key against its certificate");
  return id;
}

}  // namespace station::http
