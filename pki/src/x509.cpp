#include "pki/x509.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <array>
#include <cstring>
#include <deque>
#include <mutex>
#include <unordered_set>

#include <fmt/format.h>

#include "common/ossl.hpp"
#include "internal/der.hpp"
#include "internal/ec.hpp"

namespace station::pki {

Clock system_clock() {
  return [] { return std::chrono::system_clock::now(); };
}

RandomSource system_random() {
  return [](std::span<std::uint8_t> out) {
    if (::RAND_bytes(out.data(), static_cast<int>(out.size())) != 1) throw ossl::error("RAND_bytes");
  };
}

std::string rfc3339(std::chrono::system_clock::time_point t) {
  return rfc3339(std::chrono::time_point_cast<std::chrono::seconds>(t));
}

std::string rfc3339(std::chrono::sys_seconds t) {
  const std::time_t tt = static_cast<std::time_t>(t.time_since_epoch().count());
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec);
}

namespace {

// ---------------------------------------------------------------------------------------
// Curves a subject key may be on (the six DPP curves), by their DER OID.

struct SubjectCurve {
  const char* name;
  int nid;
  Bytes oid_der;
};

const std::vector<SubjectCurve>& subject_curves() {
  static const std::vector<SubjectCurve> curves = {
      {"P-256", NID_X9_62_prime256v1, der::oid("1.2.840.10045.3.1.7")},
      {"P-384", NID_secp384r1, der::oid("1.3.132.0.34")},
      {"P-521", NID_secp521r1, der::oid("1.3.132.0.35")},
      {"BP-256", NID_brainpoolP256r1, der::oid("1.3.36.3.3.2.8.1.1.7")},
      {"BP-384", NID_brainpoolP384r1, der::oid("1.3.36.3.3.2.8.1.1.11")},
      {"BP-512", NID_brainpoolP512r1, der::oid("1.3.36.3.3.2.8.1.1.13")},
  };
  return curves;
}

const Bytes& ec_public_key_oid() {
  static const Bytes oid = der::oid("1.2.840.10045.2.1");
  return oid;
}

// The subject key as the certificate carries it: uncompressed point (RFC 5480 §2.2: the
// uncompressed form MUST be supported by every implementation; compressed is optional),
// checked to be on its curve. Returns the SPKI DER and the public key bit string content.
struct SubjectKey {
  Bytes spki;
  Bytes point;
};

SubjectKey normalize_subject_key(ByteView spki) {
  std::size_t pos = 0;
  const ByteView outer = der::read_tlv(spki, pos, der::kSequence);
  if (pos != spki.size()) throw Error(Errc::invalid_argument, "subject public key: trailing bytes after the SPKI");
  std::size_t p = 0;
  const ByteView alg = der::read_tlv(outer, p, der::kSequence);
  const ByteView bits = der::read_tlv(outer, p, der::kBitString);
  std::size_t a = 0;
  const ByteView alg_oid = der::read_tlv(alg, a, der::kOid);
  const Bytes alg_oid_der = der::tlv(der::kOid, alg_oid);
  if (alg_oid_der != ec_public_key_oid())
    throw Error(Errc::invalid_argument, "subject public key is not an EC key (DPP keys are EC on a DPP curve)");
  const std::size_t curve_start = a;
  der::read_tlv(alg, a, der::kOid);
  const ByteView curve_oid = alg.subspan(curve_start, a - curve_start);
  const SubjectCurve* curve = nullptr;
  for (const auto& c : subject_curves())
    if (std::equal(curve_oid.begin(), curve_oid.end(), c.oid_der.begin(), c.oid_der.end())) curve = &c;
  if (curve == nullptr)
    throw Error(Errc::invalid_argument,
                "subject public key is not on a DPP curve (P-256, P-384, P-521, BP-256, BP-384, BP-512)");
  if (bits.size() < 2 || bits[0] != 0) throw Error(Errc::invalid_argument, "subject public key: bad BIT STRING");
  const ByteView point = bits.subspan(1);
  thread_local std::array<ossl::EcGroup, 6> groups;
  const auto idx = static_cast<std::size_t>(curve - subject_curves().data());
  if (!groups[idx]) groups[idx].reset(ossl::check(::EC_GROUP_new_by_curve_name(curve->nid), "EC_GROUP_new_by_curve_name"));
  const EC_GROUP* group = groups[idx].get();
  ossl::EcPoint ec_point(ossl::check(::EC_POINT_new(group), "EC_POINT_new"));
  if (::EC_POINT_oct2point(group, ec_point.get(), point.data(), point.size(), nullptr) != 1 ||
      ::EC_POINT_is_at_infinity(group, ec_point.get()) == 1) {
    ::ERR_clear_error();
    throw Error(Errc::invalid_argument, fmt::format("subject public key: the point is not on {}", curve->name));
  }
  SubjectKey out;
  if (point[0] == 0x04) {
    out.point.assign(point.begin(), point.end());
  } else {
    out.point.resize(1 + 2 * ((::EC_GROUP_get_degree(group) + 7) / 8));
    const std::size_t n = ::EC_POINT_point2oct(group, ec_point.get(), POINT_CONVERSION_UNCOMPRESSED,
                                               out.point.data(), out.point.size(), nullptr);
    if (n == 0) throw ossl::error("EC_POINT_point2oct");
    out.point.resize(n);
  }
  const Bytes alg_der = der::tlv(der::kSequence, der::concat({ec_public_key_oid(), curve_oid}));
  out.spki = der::seq({alg_der, der::bit_string(out.point)});
  return out;
}

// The public key BIT STRING content of an SPKI (for SubjectKeyIdentifier).
Bytes spki_key_bits(ByteView spki) {
  std::size_t pos = 0;
  const ByteView outer = der::read_tlv(spki, pos, der::kSequence);
  std::size_t p = 0;
  der::read_tlv(outer, p, der::kSequence);
  const ByteView bits = der::read_tlv(outer, p, der::kBitString);
  if (bits.empty()) throw Error(Errc::invalid_argument, "SPKI without key bits");
  return Bytes(bits.begin() + 1, bits.end());
}

// RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey bit string.
Bytes key_identifier(ByteView spki) {
  const Bytes bits = spki_key_bits(spki);
  Bytes out(20);
  unsigned int len = 0;
  if (::EVP_Digest(bits.data(), bits.size(), out.data(), &len, ossl::sha1(), nullptr) != 1) throw ossl::error("SHA-1");
  return out;
}

// ---------------------------------------------------------------------------------------
// Names, extensions

struct NameAttr {
  const char* key;
  const char* oid;
  bool printable;
};
constexpr NameAttr kNameAttrs[] = {
    {"C", "2.5.4.6", true},  {"ST", "2.5.4.8", false}, {"L", "2.5.4.7", false},  {"O", "2.5.4.10", false},
    {"OU", "2.5.4.11", false}, {"CN", "2.5.4.3", false}, {"serialNumber", "2.5.4.5", true},
};

std::string trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return std::string(s);
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    const auto p = s.find(sep, start);
    out.push_back(trim(s.substr(start, p == std::string_view::npos ? s.npos : p - start)));
    if (p == std::string_view::npos) return out;
    start = p + 1;
  }
}

std::string substitute(std::string_view tmpl, const std::string& serial) {
  std::string out(tmpl);
  for (std::size_t p = 0; (p = out.find("{serial}", p)) != std::string::npos; p += serial.size())
    out.replace(p, 8, serial);
  return out;
}

bool printable_string_ok(std::string_view s) {
  for (const char c : s) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) != 0 || std::strchr(" '()+,-./:=?", c) != nullptr;
    if (!ok) return false;
  }
  return true;
}

// Encodes "O=Example, CN={serial}" (after substitution) as an RDNSequence.
Bytes encode_name(const std::string& text, const std::string& what) {
  Bytes rdns;
  for (const auto& part : split(text, ',')) {
    const auto eq = part.find('=');
    if (eq == std::string::npos)
      throw Error(Errc::config_error, fmt::format("{}: '{}' is not ATTRIBUTE=value", what, part));
    const std::string key = trim(std::string_view(part).substr(0, eq));
    const std::string value = trim(std::string_view(part).substr(eq + 1));
    const NameAttr* attr = nullptr;
    for (const auto& a : kNameAttrs)
      if (key == a.key) attr = &a;
    if (attr == nullptr)
      throw Error(Errc::config_error, fmt::format("{}: unknown attribute '{}' (use C, ST, L, O, OU, CN, serialNumber)", what, key));
    if (value.empty() || value.size() > 64)
      throw Error(Errc::invalid_argument, fmt::format("{}: {} must be 1 to 64 characters", what, key));
    for (const char c : value)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
        throw Error(Errc::invalid_argument, fmt::format("{}: {} contains a control character", what, key));
    if (attr->printable && !printable_string_ok(value))
      throw Error(Errc::invalid_argument, fmt::format("{}: {} '{}' has characters PrintableString cannot carry", what, key, value));
    if (std::string_view(attr->key) == "C" && value.size() != 2)
      throw Error(Errc::invalid_argument, fmt::format("{}: C must be a two-letter country code", what));
    const Bytes atv = der::seq({der::oid(attr->oid), der::tlv(attr->printable ? der::kPrintableString : der::kUtf8String,
                                                               as_bytes(value))});
    der::append_tlv(rdns, der::kSet, atv);
  }
  return der::tlv(der::kSequence, rdns);
}

Bytes extension(const char* oid, bool critical, ByteView value) {
  static const Bytes kTrue = {der::kBoolean, 0x01, 0xff};
  if (critical) return der::seq({der::oid(oid), kTrue, der::tlv(der::kOctetString, value)});
  return der::seq({der::oid(oid), der::tlv(der::kOctetString, value)});
}

Bytes basic_constraints(bool ca, int path_len) {
  static const Bytes kTrue = {der::kBoolean, 0x01, 0xff};
  if (!ca) return extension("2.5.29.19", true, der::tlv(der::kSequence, {}));
  if (path_len < 0) return extension("2.5.29.19", true, der::seq({kTrue}));
  return extension("2.5.29.19", true, der::seq({kTrue, der::integer_small(path_len)}));
}

Bytes key_usage(const std::vector<std::string>& usages, const std::string& what) {
  static const std::pair<const char*, int> kBits[] = {
      {"digitalSignature", 0}, {"contentCommitment", 1}, {"nonRepudiation", 1}, {"keyEncipherment", 2},
      {"dataEncipherment", 3}, {"keyAgreement", 4},      {"keyCertSign", 5},    {"cRLSign", 6}};
  std::uint16_t bits = 0;
  for (const auto& u : usages) {
    int bit = -1;
    for (const auto& [name, b] : kBits)
      if (u == name) bit = b;
    if (bit < 0) throw Error(Errc::config_error, fmt::format("{}: unknown key usage '{}'", what, u));
    bits = static_cast<std::uint16_t>(bits | (0x8000 >> bit));
  }
  if (bits == 0) throw Error(Errc::config_error, what + ": at least one key usage is needed");
  // Named bit list: trailing zero bits are dropped (X.690 §11.2.2).
  Bytes content;
  content.push_back(static_cast<std::uint8_t>(bits >> 8));
  if ((bits & 0xff) != 0) content.push_back(static_cast<std::uint8_t>(bits & 0xff));
  unsigned unused = 0;
  for (std::uint8_t last = content.back(); (last & 1) == 0; last >>= 1) ++unused;
  return extension("2.5.29.15", true, der::bit_string(content, unused));
}

Bytes extended_key_usage(const std::vector<std::string>& usages, const std::string& what) {
  static const std::pair<const char*, const char*> kNames[] = {{"serverAuth", "1.3.6.1.5.5.7.3.1"},
                                                               {"clientAuth", "1.3.6.1.5.5.7.3.2"},
                                                               {"codeSigning", "1.3.6.1.5.5.7.3.3"},
                                                               {"emailProtection", "1.3.6.1.5.5.7.3.4"},
                                                               {"timeStamping", "1.3.6.1.5.5.7.3.8"}};
  Bytes oids;
  for (const auto& u : usages) {
    std::string dotted;
    for (const auto& [name, oid] : kNames)
      if (u == name) dotted = oid;
    if (dotted.empty()) {
      if (u.empty() || u.find_first_not_of("0123456789.") != std::string::npos)
        throw Error(Errc::config_error, fmt::format("{}: unknown extended key usage '{}'", what, u));
      dotted = u;
    }
    const Bytes o = der::oid(dotted);
    oids.insert(oids.end(), o.begin(), o.end());
  }
  return extension("2.5.29.37", false, der::tlv(der::kSequence, oids));
}

Bytes general_name(const std::string& entry, const std::string& what) {
  const auto colon = entry.find(':');
  const std::string kind = colon == std::string::npos ? "" : entry.substr(0, colon);
  const std::string value = colon == std::string::npos ? "" : entry.substr(colon + 1);
  std::uint8_t tag = 0;
  if (kind == "URI") tag = der::context(6, false);
  else if (kind == "DNS") tag = der::context(2, false);
  else if (kind == "email") tag = der::context(1, false);
  else throw Error(Errc::config_error, fmt::format("{}: '{}' must start with URI:, DNS: or email:", what, entry));
  if (value.empty()) throw Error(Errc::config_error, fmt::format("{}: '{}' has no value", what, entry));
  for (const char c : value)
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f)
      throw Error(Errc::invalid_argument, fmt::format("{}: '{}' must be printable ASCII without spaces", what, entry));
  return der::tlv(tag, as_bytes(value));
}

Bytes subject_alt_name(const std::vector<std::string>& entries, const std::string& serial, const std::string& what) {
  Bytes names;
  for (const auto& e : entries) {
    const Bytes n = general_name(substitute(e, serial), what);
    names.insert(names.end(), n.begin(), n.end());
  }
  return extension("2.5.29.17", false, der::tlv(der::kSequence, names));
}

Bytes crl_distribution_points(const std::string& uri) {
  const Bytes gn = der::tlv(der::context(6, false), as_bytes(uri));
  const Bytes full_name = der::tlv(der::context(0, true), gn);
  const Bytes dp_name = der::tlv(der::context(0, true), full_name);
  return extension("2.5.29.31", false, der::seq({der::seq({dp_name})}));
}

Bytes subject_key_id_ext(ByteView spki) {
  return extension("2.5.29.14", false, der::tlv(der::kOctetString, key_identifier(spki)));
}

Bytes authority_key_id_ext(ByteView issuer_ski) {
  return extension("2.5.29.35", false, der::seq({der::tlv(der::context(0, false), issuer_ski)}));
}

// ---------------------------------------------------------------------------------------
// Signing

struct SigAlg {
  const EVP_MD* md;
  Bytes alg_der;  // AlgorithmIdentifier
};

SigAlg sig_alg_for(CaCurve curve) {
  // RFC 5758 §3.2: ecdsa-with-SHA256 / -SHA384, parameters absent.
  if (curve == CaCurve::p256) return {ossl::sha256(), der::seq({der::oid("1.2.840.10045.4.3.2")})};
  return {ossl::sha384(), der::seq({der::oid("1.2.840.10045.4.3.3")})};
}

Bytes digest(const EVP_MD* md, ByteView data) {
  Bytes out(static_cast<std::size_t>(::EVP_MD_get_size(md)));
  unsigned int len = 0;
  if (::EVP_Digest(data.data(), data.size(), out.data(), &len, md, nullptr) != 1) throw ossl::error("digest");
  return out;
}

// Signs the TBS in the HSM, verifies the signature with the CA's public key, and wraps
// it into a Certificate (RFC 5280 §4.1.1).
Bytes sign_tbs(Hsm& hsm, const std::string& key_id, const SigAlg& alg, EVP_PKEY* ca_public, ByteView tbs) {
  const Bytes d = digest(alg.md, tbs);
  const Bytes sig = hsm.sign_digest(key_id, d);
  ossl::PkeyCtx vctx(ossl::check(::EVP_PKEY_CTX_new(ca_public, nullptr), "EVP_PKEY_CTX_new"));
  if (::EVP_PKEY_verify_init(vctx.get()) != 1 ||
      ::EVP_PKEY_verify(vctx.get(), sig.data(), sig.size(), d.data(), d.size()) != 1) {
    ::ERR_clear_error();
    throw Error(Errc::crypto_error,
                fmt::format("the HSM's signature with key {} does not verify with the CA public key; "
                            "certificate withheld (is the token's key the one the CA certificate names?)",
                            key_id));
  }
  return der::seq({tbs, alg.alg_der, der::bit_string(sig)});
}

std::string serial_hex_of(ByteView integer_tlv) {
  std::size_t pos = 0;
  const ByteView content = der::read_tlv(integer_tlv, pos, der::kInteger);
  std::size_t i = 0;
  while (i + 1 < content.size() && content[i] == 0) ++i;
  return hex_encode(content.subspan(i));
}

// 16 random bytes with the top bit cleared and the next one set: positive, always 16 bytes
// long (126 random bits; RFC 5280 §4.1.2.2 allows up to 20 octets).
Bytes random_serial(const RandomSource& random) {
  Bytes serial(16);
  random(serial);
  serial[0] = static_cast<std::uint8_t>((serial[0] & 0x7f) | 0x40);
  return serial;
}

struct ParsedCa {
  ossl::X509Ptr cert;
  Bytes subject_der;
  Bytes ski;
  ossl::Pkey pub;
  CaCurve curve = CaCurve::p256;
  std::chrono::sys_seconds not_after;
};

ParsedCa parse_ca(ByteView cert_der) {
  ParsedCa ca;
  const unsigned char* p = cert_der.data();
  ca.cert.reset(::d2i_X509(nullptr, &p, static_cast<long>(cert_der.size())));
  if (!ca.cert) throw ossl::error("CA certificate is not valid DER", Errc::parse_error);
  const X509_NAME* subject = ::X509_get_subject_name(ca.cert.get());
  unsigned char* out = nullptr;
  const int len = ::i2d_X509_NAME(subject, &out);
  if (len <= 0) throw ossl::error("i2d_X509_NAME");
  ca.subject_der.assign(out, out + len);
  ::OPENSSL_free(out);
  ca.pub.reset(ossl::check(::X509_get_pubkey(ca.cert.get()), "X509_get_pubkey"));
  const Bytes spki = spki_of(ca.pub.get());
  ca.ski = key_identifier(spki);
  char group[64] = {};
  std::size_t glen = 0;
  ::EVP_PKEY_get_group_name(ca.pub.get(), group, sizeof group, &glen);
  ca.curve = std::string_view(group) == "secp384r1" ? CaCurve::p384 : CaCurve::p256;
  std::tm tm{};
  ::ASN1_TIME_to_tm(::X509_get0_notAfter(ca.cert.get()), &tm);
  ca.not_after = std::chrono::sys_seconds(std::chrono::seconds(::timegm(&tm)));
  return ca;
}

std::chrono::sys_seconds kForever() {
  std::tm tm{};
  tm.tm_year = 9999 - 1900;
  tm.tm_mon = 11;
  tm.tm_mday = 31;
  tm.tm_hour = 23;
  tm.tm_min = 59;
  tm.tm_sec = 59;
  return std::chrono::sys_seconds(std::chrono::seconds(::timegm(&tm)));
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Profiles

void CertProfile::validate() const {
  const std::string where = "profiles." + name;
  if (validity_days < 0 || validity_days > 36500)
    throw Error(Errc::config_error, where + ".validity_days: must be 0 (no expiration) to 36500");
  if (backdate_seconds < 0 || backdate_seconds > 86400)
    throw Error(Errc::config_error, where + ".backdate_seconds: must be 0 to 86400");
  if (subject.find("{serial}") == std::string::npos)
    throw Error(Errc::config_error, where + ".subject: must contain {serial} so every device's subject is its own");
  encode_name(substitute(subject, "X"), where + ".subject");
  for (const auto& e : subject_alt_names) general_name(substitute(e, "X"), where + ".subject_alt_names");
  pki::key_usage(this->key_usage, where + ".key_usage");
  if (!extended_key_usage.empty()) pki::extended_key_usage(extended_key_usage, where + ".extended_key_usage");
  for (const auto& u : this->key_usage)
    if (u == "keyCertSign" || u == "cRLSign")
      throw Error(Errc::config_error, where + ".key_usage: a device certificate cannot have " + u);
  if (crl_distribution_point && crl_distribution_point->find("://") == std::string::npos)
    throw Error(Errc::config_error, where + ".crl_distribution_point: must be a URI");
  if (certified_key != "dpp" && certified_key != "separate")
    throw Error(Errc::config_error, where + ".certified_key: must be 'dpp' (the certificate certifies the DPP key) or "
                                           "'separate' (a second device key, bound to the DPP key by its hash), not '" +
                                           certified_key + "'");
}

// ---------------------------------------------------------------------------------------
// Device issuance

struct CertificateIssuer::Impl {
  Hsm& hsm;
  CaSigner ca;
  CertProfile profile;
  SerialLedger* ledger;
  RandomSource random;
  Clock clock;
  ParsedCa parsed;
  SigAlg alg;
  Bytes version_der;       // [0] EXPLICIT INTEGER 2
  Bytes alg_and_issuer;    // signature AlgorithmIdentifier + issuer Name
  Bytes constant_exts;     // basicConstraints, keyUsage, extKeyUsage, AKI, CRL DP
  std::mutex mutex;
  // Serials this issuer made lately: those in flight between signing and the caller's
  // record, which the ledger cannot see yet. Bounded (the oldest go first), so a long batch
  // keeps flat memory; older serials are in the ledger or were never released.
  static constexpr std::size_t kRecentSerials = 4096;
  std::unordered_set<std::string> recent;
  std::deque<std::string> recent_order;

  Impl(Hsm& h, CaSigner c, CertProfile p, SerialLedger* l, RandomSource r, Clock k)
      : hsm(h), ca(std::move(c)), profile(std::move(p)), ledger(l), random(std::move(r)), clock(std::move(k)),
        parsed(parse_ca(ca.cert_der)), alg(sig_alg_for(parsed.curve)) {
    profile.validate();
    if (sha256_hex(spki_of(parsed.pub.get())) != ca.key_id)
      throw Error(Errc::config_error, fmt::format("issuing CA certificate's key is not key {}", ca.key_id));
    version_der = der::tlv(der::context(0, true), der::integer_small(2));
    alg_and_issuer = der::concat({alg.alg_der, parsed.subject_der});
    constant_exts = der::concat({basic_constraints(false, -1), key_usage(profile.key_usage, "profile"),
                                 profile.extended_key_usage.empty()
                                     ? Bytes{}
                                     : extended_key_usage(profile.extended_key_usage, "profile"),
                                 authority_key_id_ext(parsed.ski)});
    if (profile.crl_distribution_point) {
      const Bytes cdp = crl_distribution_points(*profile.crl_distribution_point);
      constant_exts.insert(constant_exts.end(), cdp.begin(), cdp.end());
    }
  }

  Bytes fresh_serial() {
    for (int attempt = 0; attempt < 16; ++attempt) {
      Bytes serial = random_serial(random);
      const std::string hex = serial_hex_of(der::integer_unsigned(serial));
      const std::lock_guard lock(mutex);
      if (recent.count(hex) != 0) continue;
      if (ledger != nullptr && ledger->contains(hex)) continue;
      recent.insert(hex);
      recent_order.push_back(hex);
      if (recent_order.size() > kRecentSerials) {
        recent.erase(recent_order.front());
        recent_order.pop_front();
      }
      return serial;
    }
    throw Error(Errc::crypto_error,
                "the random source produced 16 certificate serials in a row that were already issued; "
                "it is broken, refusing to issue");
  }
};

CertificateIssuer::CertificateIssuer(Hsm& hsm, CaSigner ca, CertProfile profile, SerialLedger* ledger,
                                     RandomSource random, Clock clock)
    : impl_(std::make_unique<Impl>(hsm, std::move(ca), std::move(profile), ledger, std::move(random), std::move(clock))) {}

CertificateIssuer::~CertificateIssuer() = default;

const std::string& CertificateIssuer::issuer_key_id() const noexcept { return impl_->ca.key_id; }
const Bytes& CertificateIssuer::issuer_cert_der() const noexcept { return impl_->ca.cert_der; }

IssuedCertificate CertificateIssuer::issue(ByteView subject_spki_der, const std::string& device_serial,
                                           const std::string& dpp_pkhash) {
  Impl& m = *impl_;
  if (m.profile.separate_key()) {
    const auto raw = hex_decode(dpp_pkhash);
    if (!raw || raw->size() != 32 || dpp_pkhash != hex_encode(*raw))
      throw Error(Errc::invalid_argument, fmt::format("profile '{}' certifies a separate key: the certificate needs the "
                                                      "DPP key hash (64 lowercase hex digits) to bind",
                                                      m.profile.name));
  } else if (!dpp_pkhash.empty()) {
    throw Error(Errc::invalid_argument, fmt::format("profile '{}' certifies the DPP key itself: no separate DPP key "
                                                    "hash to bind (set certified_key = 'separate' for that)",
                                                    m.profile.name));
  }
  // checks
  if (device_serial.empty() || device_serial.size() > 64)
    throw Error(Errc::invalid_argument, "device serial must be 1 to 64 characters");
  for (const char c : device_serial)
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f || c == ',' || c == '=')
      throw Error(Errc::invalid_argument,
                  fmt::format("device serial '{}' may hold printable ASCII only, without spaces, ',' or '='", device_serial));
  const SubjectKey key = normalize_subject_key(subject_spki_der);
  const auto now = m.clock();
  const std::chrono::sys_seconds not_before =
      std::chrono::time_point_cast<std::chrono::seconds>(now) - std::chrono::seconds(m.profile.backdate_seconds);
  std::chrono::sys_seconds not_after =
      m.profile.validity_days == 0 ? kForever() : not_before + std::chrono::hours(24) * m.profile.validity_days;
  if (not_after > m.parsed.not_after) not_after = m.parsed.not_after;  // never outlive the issuer
  if (now > m.parsed.not_after) throw Error(Errc::config_error, "the issuing CA certificate has expired; rotate it");

  // TBSCertificate (RFC 5280 §4.1)
  const Bytes serial = m.fresh_serial();
  const Bytes serial_der = der::integer_unsigned(serial);
  const Bytes validity = der::seq({der::time(not_before), der::time(not_after)});
  const Bytes subject = encode_name(substitute(m.profile.subject, device_serial), "profile subject");
  Bytes exts = m.constant_exts;
  const Bytes ski = subject_key_id_ext(key.spki);
  exts.insert(exts.end(), ski.begin(), ski.end());
  if (!m.profile.subject_alt_names.empty() || m.profile.separate_key()) {
    std::vector<std::string> names = m.profile.subject_alt_names;
    if (m.profile.separate_key()) names.push_back(std::string("URI:") + kDppKeyBindingPrefix + dpp_pkhash);
    const Bytes san = subject_alt_name(names, device_serial, "profile subject_alt_names");
    exts.insert(exts.end(), san.begin(), san.end());
  }
  const Bytes ext_block = der::tlv(der::context(3, true), der::tlv(der::kSequence, exts));
  const Bytes tbs = der::seq({m.version_der, serial_der, m.alg_and_issuer, validity, subject, key.spki, ext_block});

  IssuedCertificate out;
  out.der = sign_tbs(m.hsm, m.ca.key_id, m.alg, m.parsed.pub.get(), tbs);
  out.serial = serial_hex_of(serial_der);
  out.sha256 = sha256_hex(out.der);
  out.issuer_key_id = m.ca.key_id;
  out.not_before = not_before;
  out.not_after = not_after;
  return out;
}

// ---------------------------------------------------------------------------------------
// CA certificates

Bytes make_ca_certificate(Hsm& hsm, const CaCertRequest& req, RandomSource random, Clock clock) {
  if (req.subject_key == nullptr) throw Error(Errc::invalid_argument, "CA certificate request without a key");
  const bool self_signed = req.issuer == nullptr;
  if (self_signed != (req.kind == CaKind::root))
    throw Error(Errc::invalid_argument, "only a root CA certificate is self-signed");
  const std::chrono::sys_seconds now = std::chrono::time_point_cast<std::chrono::seconds>(clock());
  const auto not_before = now - std::chrono::seconds(300);
  auto not_after = not_before + std::chrono::hours(24) * req.validity_days;

  Bytes issuer_name, issuer_ski;
  std::string signing_key_id;
  ossl::Pkey verify_key;
  CaCurve signing_curve = req.subject_key->curve;
  if (self_signed) {
    issuer_name = encode_name(req.subject, "CA subject");
    issuer_ski = key_identifier(req.subject_key->spki_der);
    signing_key_id = req.subject_key->key_id;
    verify_key = pkey_from_spki(req.subject_key->spki_der);
  } else {
    ParsedCa parent = parse_ca(req.issuer->cert_der);
    issuer_name = parent.subject_der;
    issuer_ski = parent.ski;
    signing_key_id = req.issuer->key_id;
    signing_curve = parent.curve;
    if (not_after > parent.not_after) not_after = parent.not_after;
    verify_key = std::move(parent.pub);
  }
  const SigAlg alg = sig_alg_for(signing_curve);
  Bytes exts;
  auto add = [&](const Bytes& e) { exts.insert(exts.end(), e.begin(), e.end()); };
  switch (req.kind) {
    case CaKind::root:
      add(basic_constraints(true, -1));
      add(key_usage({"keyCertSign", "cRLSign"}, "root"));
      break;
    case CaKind::issuing:
      add(basic_constraints(true, 0));
      add(key_usage({"keyCertSign", "cRLSign"}, "issuing"));
      break;
    case CaKind::audit:
      add(basic_constraints(false, -1));
      add(key_usage({"digitalSignature", "contentCommitment"}, "audit"));
      break;
  }
  add(subject_key_id_ext(req.subject_key->spki_der));
  if (!self_signed) add(authority_key_id_ext(issuer_ski));

  Bytes serial = random_serial(random);
  const Bytes tbs = der::seq({der::tlv(der::context(0, true), der::integer_small(2)), der::integer_unsigned(serial),
                              alg.alg_der, issuer_name, der::seq({der::time(not_before), der::time(not_after)}),
                              encode_name(req.subject, "CA subject"), req.subject_key->spki_der,
                              der::tlv(der::context(3, true), der::tlv(der::kSequence, exts))});
  return sign_tbs(hsm, signing_key_id, alg, verify_key.get(), tbs);
}

// ---------------------------------------------------------------------------------------
// Reading certificates

namespace {

std::string name_string(const X509_NAME* name) {
  ossl::Bio bio(ossl::check(::BIO_new(::BIO_s_mem()), "BIO_new"));
  ::X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

std::string time_string(const ASN1_TIME* t) {
  std::tm tm{};
  if (::ASN1_TIME_to_tm(t, &tm) != 1) return {};
  return rfc3339(std::chrono::sys_seconds(std::chrono::seconds(::timegm(&tm))));
}

}  // namespace

CertInfo describe_certificate(ByteView der_bytes) {
  const unsigned char* p = der_bytes.data();
  const ossl::X509Ptr cert(::d2i_X509(nullptr, &p, static_cast<long>(der_bytes.size())));
  if (!cert) throw ossl::error("not a DER certificate", Errc::parse_error);
  CertInfo info;
  info.der.assign(der_bytes.begin(), der_bytes.end());
  info.subject = name_string(::X509_get_subject_name(cert.get()));
  info.issuer = name_string(::X509_get_issuer_name(cert.get()));
  const ASN1_INTEGER* serial = ::X509_get0_serialNumber(cert.get());
  const ossl::Bignum bn(::ASN1_INTEGER_to_BN(serial, nullptr));
  char* hex = ::BN_bn2hex(bn.get());
  info.serial = hex;
  ::OPENSSL_free(hex);
  for (auto& c : info.serial) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  while (info.serial.size() > 1 && info.serial[0] == '0') info.serial.erase(0, 1);
  info.not_before = time_string(::X509_get0_notBefore(cert.get()));
  info.not_after = time_string(::X509_get0_notAfter(cert.get()));
  unsigned char* spki = nullptr;
  const int len = ::i2d_X509_PUBKEY(::X509_get_X509_PUBKEY(cert.get()), &spki);
  if (len <= 0) throw ossl::error("i2d_X509_PUBKEY");
  info.spki.assign(spki, spki + len);
  info.key_id = sha256_hex(info.spki);
  ::OPENSSL_free(spki);
  info.sha256 = sha256_hex(der_bytes);
  info.pem = to_pem(der_bytes);
  info.is_ca = ::X509_check_ca(cert.get()) != 0;
  info.self_signed = ::X509_check_issued(cert.get(), cert.get()) == X509_V_OK;
  return info;
}

std::optional<std::string> bound_dpp_pkhash(ByteView cert_der) {
  const unsigned char* p = cert_der.data();
  const ossl::X509Ptr cert(::d2i_X509(nullptr, &p, static_cast<long>(cert_der.size())));
  if (!cert) throw ossl::error("not a DER certificate", Errc::parse_error);
  GENERAL_NAMES* names =
      static_cast<GENERAL_NAMES*>(::X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return std::nullopt;
  std::optional<std::string> found;
  const std::string_view prefix = kDppKeyBindingPrefix;
  for (int i = 0; i < sk_GENERAL_NAME_num(names) && !found; ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
    if (gn->type != GEN_URI) continue;
    const auto* s = gn->d.uniformResourceIdentifier;
    const std::string_view uri(reinterpret_cast<const char*>(::ASN1_STRING_get0_data(s)),
                               static_cast<std::size_t>(::ASN1_STRING_length(s)));
    if (uri.size() == prefix.size() + 64 && uri.substr(0, prefix.size()) == prefix)
      found = std::string(uri.substr(prefix.size()));
  }
  ::GENERAL_NAMES_free(names);
  return found;
}

std::string to_pem(ByteView der_bytes, const char* label) {
  std::string out = fmt::format("-----BEGIN {}-----\n", label);
  const std::string b64 = base64_encode(der_bytes);
  for (std::size_t i = 0; i < b64.size(); i += 64) out += b64.substr(i, 64) + "\n";
  out += fmt::format("-----END {}-----\n", label);
  return out;
}

std::vector<Bytes> certificates_from_pem(const std::string& pem) {
  ossl::Bio bio(ossl::check(::BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), "BIO_new_mem_buf"));
  std::vector<Bytes> out;
  for (;;) {
    X509* raw = ::PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (raw == nullptr) break;
    const ossl::X509Ptr cert(raw);
    unsigned char* der_out = nullptr;
    const int len = ::i2d_X509(cert.get(), &der_out);
    out.emplace_back(der_out, der_out + len);
    ::OPENSSL_free(der_out);
  }
  ::ERR_clear_error();
  if (out.empty()) throw Error(Errc::parse_error, "no PEM certificate found");
  return out;
}

Bytes public_key_from_pem_or_der(const std::string& data) {
  if (data.find("-----BEGIN") != std::string::npos) {
    ossl::Bio bio(ossl::check(::BIO_new_mem_buf(data.data(), static_cast<int>(data.size())), "BIO_new_mem_buf"));
    EVP_PKEY* raw = ::PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr);
    if (raw == nullptr)
      throw ossl::error("not a PEM public key (expected -----BEGIN PUBLIC KEY-----)", Errc::invalid_argument);
    const ossl::Pkey key(raw);
    // Keep the key's own encoding (a compressed point stays compressed): re-read the DER.
    const auto begin = data.find("-----BEGIN PUBLIC KEY-----");
    const auto end = data.find("-----END PUBLIC KEY-----");
    if (begin != std::string::npos && end != std::string::npos) {
      std::string b64;
      for (std::size_t i = begin + 26; i < end; ++i)
        if (data[i] != '\n' && data[i] != '\r' && data[i] != ' ') b64.push_back(data[i]);
      if (auto der_bytes = base64_decode(b64)) return *der_bytes;
    }
    return spki_of(key.get());
  }
  const Bytes der_bytes(data.begin(), data.end());
  pkey_from_spki(der_bytes);  // validates
  return der_bytes;
}

Bytes public_key_from_csr(const std::string& data) {
  if (data.size() > 65536) throw Error(Errc::parse_error, "too large for a certificate request (over 64 KiB)");
  ossl::X509Req req;
  if (data.find("-----BEGIN") != std::string::npos) {
    const bool labelled = data.find("-----BEGIN CERTIFICATE REQUEST-----") != std::string::npos ||
                          data.find("-----BEGIN NEW CERTIFICATE REQUEST-----") != std::string::npos;
    if (!labelled)
      throw Error(Errc::parse_error, "not a PEM certificate request (expected -----BEGIN CERTIFICATE REQUEST-----)");
    ossl::Bio bio(ossl::check(::BIO_new_mem_buf(data.data(), static_cast<int>(data.size())), "BIO_new_mem_buf"));
    req.reset(::PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
    if (!req) throw ossl::error("a malformed PEM certificate request", Errc::parse_error);
  } else {
    const auto* p = reinterpret_cast<const unsigned char*>(data.data());
    req.reset(::d2i_X509_REQ(nullptr, &p, static_cast<long>(data.size())));
    if (!req) throw ossl::error("not a certificate request (PEM or DER PKCS#10)", Errc::parse_error);
    if (p != reinterpret_cast<const unsigned char*>(data.data()) + data.size())
      throw Error(Errc::parse_error, "the certificate request is followed by other bytes");
  }
  EVP_PKEY* key = ::X509_REQ_get0_pubkey(req.get());
  if (key == nullptr) throw ossl::error("the certificate request's public key cannot be read", Errc::parse_error);
  ::ERR_clear_error();
  if (::X509_REQ_verify(req.get(), key) != 1) {
    ::ERR_clear_error();
    throw Error(Errc::invalid_argument,
                "the certificate request's signature does not verify with its own public key: it does not prove "
                "possession of the private key (make the request again on the device)");
  }
  X509_PUBKEY* pub = ::X509_REQ_get_X509_PUBKEY(req.get());
  unsigned char* der = nullptr;
  const int n = ::i2d_X509_PUBKEY(pub, &der);
  if (n <= 0) throw ossl::error("i2d_X509_PUBKEY", Errc::parse_error);
  Bytes out(der, der + n);
  ::OPENSSL_free(der);
  return out;
}

}  // namespace station::pki
