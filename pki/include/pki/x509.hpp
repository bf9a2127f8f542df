// X.509 certificates signed in the HSM: device certificate issuance as a pipeline
// (profile -> checks -> HSM sign -> verify -> result), CA certificates for the hierarchy,
// and reading certificates back for display and records (RFC 5280).
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "common/bytes.hpp"
#include "pki/hsm.hpp"

namespace station::pki {

using Clock = std::function<std::chrono::system_clock::time_point()>;
Clock system_clock();

// Fills the span with random bytes. Injected so tests can make it repeat.
using RandomSource = std::function<void(std::span<std::uint8_t>)>;
RandomSource system_random();  // OpenSSL's DRBG (RAND_bytes)

// A device certificate profile (config section [profiles.NAME]).
struct CertProfile {
  std::string name = "device";
  // Days of validity from notBefore; 0 means "no well-defined expiration"
  // (notAfter 99991231235959Z, RFC 5280 §4.1.2.5, as IEEE 802.1AR device identities use).
  int validity_days = 3650;
  int backdate_seconds = 300;  // notBefore = now - this, to tolerate clock skew on devices
  // Subject attributes in encoding order (most significant first), "{serial}" substituted:
  // e.g. "O=Example Devices, CN={serial}". Known attributes: C, ST, L, O, OU, CN, serialNumber.
  std::string subject = "CN={serial}";
  // "URI:...", "DNS:..." or "email:..." entries, "{serial}" substituted.
  std::vector<std::string> subject_alt_names;
  // digitalSignature, contentCommitment, keyEncipherment, dataEncipherment, keyAgreement.
  std::vector<std::string> key_usage = {"digitalSignature", "keyAgreement"};
  // serverAuth, clientAuth, codeSigning, emailProtection, or a dotted OID.
  std::vector<std::string> extended_key_usage = {"clientAuth"};
  std::optional<std::string> crl_distribution_point;  // URI
  // Which key the certificate certifies: "dpp", the device's DPP bootstrapping key itself,
  // or "separate", a second key pair of the device (its certificate key, GENKEY/PUT slot
  // CERT_KEY) that the certificate binds to the DPP key by the DPP key's hash: a
  // subjectAltName URI kDppKeyBindingPrefix + 64 lowercase hex digits (SHA-256 of the DPP
  // key's SubjectPublicKeyInfo DER as the DPP URI carries it). The DPP key then serves key
  // agreement only and the certificate key signs.
  std::string certified_key = "dpp";
  bool separate_key() const noexcept { return certified_key == "separate"; }

  // Errc::config_error naming "profiles.<name>.<key>" and the reason.
  void validate() const;
};

// The subjectAltName URI of a "separate" profile's certificate is this prefix and the DPP
// key hash (pkhash, lowercase hex).
inline constexpr const char* kDppKeyBindingPrefix = "urn:dpp:pkhash:";
// The DPP key hash a certificate binds (its subjectAltName URI kDppKeyBindingPrefix...), or
// nullopt when it has none (the certificate then certifies the DPP key itself).
std::optional<std::string> bound_dpp_pkhash(ByteView cert_der);

// A certificate as people and records see it (DESIGN.md conventions).
struct CertInfo {
  Bytes der;
  std::string subject;     // RFC 2253 string
  std::string issuer;
  std::string serial;      // lowercase hex, no colons
  std::string not_before;  // RFC 3339 UTC
  std::string not_after;
  std::string key_id;      // SHA-256 of the SubjectPublicKeyInfo DER, lowercase hex
  Bytes spki;              // the certified public key, SubjectPublicKeyInfo DER
  std::string sha256;      // SHA-256 of the certificate DER
  std::string pem;
  bool is_ca = false;
  bool self_signed = false;
};
CertInfo describe_certificate(ByteView der);

std::string to_pem(ByteView der, const char* label = "CERTIFICATE");
// Every certificate in a PEM text; Errc::parse_error when there is none or one is bad.
std::vector<Bytes> certificates_from_pem(const std::string& pem);
// A public key from PEM ("PUBLIC KEY") or DER SubjectPublicKeyInfo, as SPKI DER.
Bytes public_key_from_pem_or_der(const std::string& data);
// The public key of a PKCS#10 certificate request (RFC 2986; PEM "CERTIFICATE REQUEST" or
// DER), as the SPKI DER it carries, once the request's signature verifies with that key:
// proof that whoever made the request holds the private key. Only the key is taken (the
// profile names the subject). Errc::parse_error for what is not one request, with nothing
// after it; Errc::invalid_argument when its signature does not verify.
Bytes public_key_from_csr(const std::string& data);

// Whether a certificate serial was ever issued. The station's records implement it, so
// a repeating random source can never produce a duplicate.
class SerialLedger {
 public:
  virtual ~SerialLedger() = default;
  virtual bool contains(const std::string& serial_hex) = 0;
};

struct IssuedCertificate {
  Bytes der;
  std::string serial;  // lowercase hex
  std::string sha256;
  std::string issuer_key_id;
  std::chrono::sys_seconds not_before, not_after;  // seconds: 9999-12-31 does not fit in nanoseconds
};

// A CA that signs: its certificate and its key in the HSM.
struct CaSigner {
  Bytes cert_der;
  std::string key_id;
};

// Issues device certificates under one CA. The constant parts of the TBSCertificate
// (issuer name, algorithm, constant extensions) are encoded once at construction.
// Thread-safe: many fixtures may issue at once.
class CertificateIssuer {
 public:
  CertificateIssuer(Hsm& hsm, CaSigner ca, CertProfile profile, SerialLedger* ledger = nullptr,
                    RandomSource random = system_random(), Clock clock = system_clock());
  ~CertificateIssuer();
  CertificateIssuer(const CertificateIssuer&) = delete;
  CertificateIssuer& operator=(const CertificateIssuer&) = delete;

  // subject_spki_der: the device key (any DPP curve, compressed or uncompressed point; the
  // certificate carries the uncompressed form). The HSM signature is verified with the CA
  // public key before the certificate is returned. With a "separate" profile the subject
  // key is the device's certificate key and dpp_pkhash (64 hex digits) the hash of its DPP
  // key, which the certificate binds (Errc::invalid_argument without it); with a "dpp"
  // profile dpp_pkhash must be empty.
  IssuedCertificate issue(ByteView subject_spki_der, const std::string& device_serial,
                          const std::string& dpp_pkhash = {});

  const std::string& issuer_key_id() const noexcept;
  const Bytes& issuer_cert_der() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

enum class CaKind { root, issuing, audit };

struct CaCertRequest {
  CaKind kind = CaKind::root;
  std::string subject;                  // e.g. "O=Example, CN=Example Root CA" (encoding order)
  int validity_days = 9125;
  const HsmKeyInfo* subject_key = nullptr;
  const CaSigner* issuer = nullptr;     // null for a self-signed root
};
// A CA certificate (root self-signed; issuing CA with pathLen 0; audit signer CA:FALSE)
// signed in the HSM and verified before it is returned.
Bytes make_ca_certificate(Hsm& hsm, const CaCertRequest& request, RandomSource random = system_random(),
                          Clock clock = system_clock());

// RFC 3339 UTC, second precision: "2026-11-22T01:02:03Z".
std::string rfc3339(std::chrono::sys_seconds t);
std::string rfc3339(std::chrono::system_clock::time_point t);

}  // namespace station::pki
