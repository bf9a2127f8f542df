#include "pki/ca.hpp"

#include <openssl/err.h>

#include <algorithm>
#include <cctype>
#include <ctime>

#include <fmt/format.h>

#include "common/ossl.hpp"
#include "internal/der.hpp"

namespace station::pki {
namespace {

constexpr std::pair<RevocationReason, const char*> kReasons[] = {
    {RevocationReason::unspecified, "unspecified"},
    {RevocationReason::keyCompromise, "keyCompromise"},
    {RevocationReason::cACompromise, "cACompromise"},
    {RevocationReason::affiliationChanged, "affiliationChanged"},
    {RevocationReason::superseded, "superseded"},
    {RevocationReason::cessationOfOperation, "cessationOfOperation"},
    {RevocationReason::certificateHold, "certificateHold"},
    {RevocationReason::privilegeWithdrawn, "privilegeWithdrawn"},
    {RevocationReason::aACompromise, "aACompromise"},
};

std::string fold(std::string_view s) {
  std::string out;
  for (const char c : s)
    if (c != '-' && c != '_') out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  return out;
}

// A CA certificate as the signer of something else.
struct Signer {
  ossl::X509Ptr cert;
  Bytes subject_der;
  Bytes ski;
  ossl::Pkey pub;
  const EVP_MD* md = nullptr;
  Bytes alg_der;  // AlgorithmIdentifier (RFC 5758 §3.2: parameters absent)
  std::chrono::sys_seconds not_after;
};

std::chrono::sys_seconds to_sys(const ASN1_TIME* t) {
  std::tm tm{};
  if (::ASN1_TIME_to_tm(t, &tm) != 1) throw ossl::error("certificate time", Errc::parse_error);
  return std::chrono::sys_seconds(std::chrono::seconds(::timegm(&tm)));
}

Bytes key_bits_sha1(const X509* cert) {
  // RFC 5280 §4.2.1.2 method (1), as the station's own CA certificates use.
  const ASN1_BIT_STRING* bits = ::X509_get0_pubkey_bitstr(cert);
  if (bits == nullptr) throw ossl::error("certificate without a public key", Errc::parse_error);
  Bytes out(20);
  unsigned int len = 0;
  if (::EVP_Digest(bits->data, static_cast<std::size_t>(bits->length), out.data(), &len, ossl::sha1(), nullptr) != 1)
    throw ossl::error("SHA-1");
  return out;
}

ossl::X509Ptr parse_cert(ByteView der_bytes, const char* what) {
  const unsigned char* p = der_bytes.data();
  ossl::X509Ptr cert(::d2i_X509(nullptr, &p, static_cast<long>(der_bytes.size())));
  if (!cert) throw ossl::error(fmt::format("{} is not a DER certificate", what), Errc::parse_error);
  return cert;
}

Bytes name_der(const X509_NAME* name) {
  unsigned char* out = nullptr;
  const int len = ::i2d_X509_NAME(name, &out);
  if (len <= 0) throw ossl::error("i2d_X509_NAME");
  Bytes der_bytes(out, out + len);
  ::OPENSSL_free(out);
  return der_bytes;
}

Bytes spki_der(const X509* cert) {
  unsigned char* out = nullptr;
  const int len = ::i2d_X509_PUBKEY(::X509_get_X509_PUBKEY(cert), &out);
  if (len <= 0) throw ossl::error("i2d_X509_PUBKEY");
  Bytes der_bytes(out, out + len);
  ::OPENSSL_free(out);
  return der_bytes;
}

Signer parse_signer(const CaSigner& ca) {
  Signer s;
  s.cert = parse_cert(ca.cert_der, "the CA certificate");
  if (::X509_check_ca(s.cert.get()) == 0)
    throw Error(Errc::invalid_argument, "the signing certificate is not a CA certificate");
  if (sha256_hex(spki_der(s.cert.get())) != ca.key_id)
    throw Error(Errc::invalid_argument, fmt::format("the CA certificate's key is not key {}", ca.key_id));
  s.subject_der = name_der(::X509_get_subject_name(s.cert.get()));
  if (const ASN1_OCTET_STRING* ski = ::X509_get0_subject_key_id(s.cert.get()); ski != nullptr)
    s.ski.assign(ski->data, ski->data + ski->length);
  else
    s.ski = key_bits_sha1(s.cert.get());
  s.pub.reset(ossl::check(::X509_get_pubkey(s.cert.get()), "X509_get_pubkey"));
  char group[64] = {};
  std::size_t glen = 0;
  ::EVP_PKEY_get_group_name(s.pub.get(), group, sizeof group, &glen);
  if (std::string_view(group) == "secp384r1") {
    s.md = ossl::sha384();
    s.alg_der = der::seq({der::oid("1.2.840.10045.4.3.3")});
  } else if (std::string_view(group) == "prime256v1") {
    s.md = ossl::sha256();
    s.alg_der = der::seq({der::oid("1.2.840.10045.4.3.2")});
  } else {
    throw Error(Errc::unsupported, fmt::format("CA key on curve '{}': the station signs with P-256 or P-384", group));
  }
  s.not_after = to_sys(::X509_get0_notAfter(s.cert.get()));
  return s;
}

// Signs `tbs` in the HSM, verifies the signature with the CA's public key, and wraps it
// as SEQUENCE { tbs, signatureAlgorithm, signatureValue } (RFC 5280 §4.1.1, §5.1.1).
Bytes sign_and_wrap(Hsm& hsm, const std::string& key_id, const Signer& s, ByteView tbs, const char* what) {
  Bytes d(static_cast<std::size_t>(::EVP_MD_get_size(s.md)));
  unsigned int len = 0;
  if (::EVP_Digest(tbs.data(), tbs.size(), d.data(), &len, s.md, nullptr) != 1) throw ossl::error("digest");
  const Bytes sig = hsm.sign_digest(key_id, d);
  ossl::PkeyCtx vctx(ossl::check(::EVP_PKEY_CTX_new(s.pub.get(), nullptr), "EVP_PKEY_CTX_new"));
  if (::EVP_PKEY_verify_init(vctx.get()) != 1 ||
      ::EVP_PKEY_verify(vctx.get(), sig.data(), sig.size(), d.data(), d.size()) != 1) {
    ::ERR_clear_error();
    throw Error(Errc::crypto_error,
                fmt::format("the HSM's signature with key {} does not verify with the CA public key; {} withheld "
                            "(is the token's key the one the CA certificate names?)",
                            key_id, what));
  }
  return der::seq({tbs, s.alg_der, der::bit_string(sig)});
}

Bytes extension(const char* oid, bool critical, ByteView value) {
  static const Bytes kTrue = {der::kBoolean, 0x01, 0xff};
  if (critical) return der::seq({der::oid(oid), kTrue, der::tlv(der::kOctetString, value)});
  return der::seq({der::oid(oid), der::tlv(der::kOctetString, value)});
}

Bytes aki_extension(ByteView issuer_ski) {
  return extension("2.5.29.35", false, der::seq({der::tlv(der::context(0, false), issuer_ski)}));
}

Bytes serial_integer(const std::string& hex) {
  std::string even = hex.size() % 2 == 1 ? "0" + hex : hex;
  const auto magnitude = hex_decode(even);
  if (!magnitude || magnitude->empty() || magnitude->size() > 20)
    throw Error(Errc::invalid_argument,
                fmt::format("certificate serial '{}' is not 1 to 20 octets of hex (RFC 5280 §4.1.2.2)", hex));
  return der::integer_unsigned(*magnitude);
}

Bytes integer_u64(std::uint64_t v) {
  Bytes be(8);
  for (int i = 7; i >= 0; --i, v >>= 8) be[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v & 0xff);
  return der::integer_unsigned(be);
}

}  // namespace

std::string_view to_string(RevocationReason r) noexcept {
  for (const auto& [value, name] : kReasons)
    if (value == r) return name;
  return "unspecified";
}

RevocationReason revocation_reason_from_string(std::string_view text) {
  const std::string f = fold(text);
  std::string names;
  for (const auto& [value, name] : kReasons) {
    if (fold(name) == f) return value;
    names += names.empty() ? name : std::string(", ") + name;
  }
  throw Error(Errc::invalid_argument,
              fmt::format("unknown revocation reason '{}'; use one of RFC 5280's: {}", text, names));
}

Bytes make_crl(Hsm& hsm, const CrlRequest& req) {
  if (req.issuer == nullptr) throw Error(Errc::invalid_argument, "CRL request without an issuing CA");
  if (req.next_update <= req.this_update)
    throw Error(Errc::invalid_argument, "a CRL's nextUpdate must be after its thisUpdate");
  if (req.crl_number == 0) throw Error(Errc::invalid_argument, "CRL numbers start at 1");
  const Signer s = parse_signer(*req.issuer);

  // revokedCertificates, sorted by serial so the same set always encodes the same way.
  std::vector<RevokedCertificate> revoked = req.revoked;
  std::sort(revoked.begin(), revoked.end(), [](const auto& a, const auto& b) { return a.serial_hex < b.serial_hex; });
  Bytes entries;
  for (const auto& r : revoked) {
    Bytes entry = der::concat({serial_integer(r.serial_hex), der::time(r.revoked_at)});
    if (r.reason != RevocationReason::unspecified) {
      // reasonCode ::= ENUMERATED (RFC 5280 §5.3.1); absent for unspecified.
      const Bytes code = {0x0a, 0x01, static_cast<std::uint8_t>(r.reason)};
      const Bytes ext = extension("2.5.29.21", false, code);
      der::append_tlv(entry, der::kSequence, ext);
    }
    der::append_tlv(entries, der::kSequence, entry);
  }

  // crlExtensions: authorityKeyIdentifier and cRLNumber are both required (§5.2.1, §5.2.3).
  const Bytes crl_exts = der::concat({aki_extension(s.ski), extension("2.5.29.20", false, integer_u64(req.crl_number))});
  Bytes tbs_content = der::concat({der::integer_small(1), s.alg_der, s.subject_der, der::time(req.this_update),
                                   der::time(req.next_update)});
  if (!entries.empty()) der::append_tlv(tbs_content, der::kSequence, entries);
  der::append_tlv(tbs_content, der::context(0, true), der::tlv(der::kSequence, crl_exts));
  const Bytes tbs = der::tlv(der::kSequence, tbs_content);
  return sign_and_wrap(hsm, req.issuer->key_id, s, tbs, "CRL");
}

Bytes make_cross_certificate(Hsm& hsm, ByteView subject_cert_der, const CaSigner& issuer, RandomSource random,
                             Clock clock) {
  const Signer s = parse_signer(issuer);
  const ossl::X509Ptr subject = parse_cert(subject_cert_der, "the certified CA's certificate");
  if (::X509_check_ca(subject.get()) == 0)
    throw Error(Errc::invalid_argument, "a cross-certificate certifies a CA; the given certificate is not one");
  const Bytes subject_spki = spki_der(subject.get());
  if (sha256_hex(subject_spki) == issuer.key_id)
    throw Error(Errc::invalid_argument, "a cross-certificate certifies another CA's key, not the issuer's own");

  const auto now = std::chrono::time_point_cast<std::chrono::seconds>(clock());
  const auto not_before = now - std::chrono::seconds(300);
  const auto not_after = std::min(s.not_after, to_sys(::X509_get0_notAfter(subject.get())));
  if (not_after <= now) throw Error(Errc::invalid_argument, "a cross-certificate would already have expired");

  static const Bytes kTrue = {der::kBoolean, 0x01, 0xff};
  // keyCertSign | cRLSign: bits 5 and 6 -> 0x06 with 1 unused bit.
  const Bytes ku = der::bit_string(Bytes{0x06}, 1);
  const Bytes exts = der::concat({extension("2.5.29.19", true, der::seq({kTrue})), extension("2.5.29.15", true, ku),
                                  extension("2.5.29.14", false, der::tlv(der::kOctetString, key_bits_sha1(subject.get()))),
                                  aki_extension(s.ski)});
  Bytes serial(16);
  random(serial);
  serial[0] = static_cast<std::uint8_t>((serial[0] & 0x7f) | 0x40);
  const Bytes tbs = der::seq({der::tlv(der::context(0, true), der::integer_small(2)), der::integer_unsigned(serial),
                              s.alg_der, s.subject_der, der::seq({der::time(not_before), der::time(not_after)}),
                              name_der(::X509_get_subject_name(subject.get())), subject_spki,
                              der::tlv(der::context(3, true), der::tlv(der::kSequence, exts))});
  return sign_and_wrap(hsm, issuer.key_id, s, tbs, "cross-certificate");
}

}  // namespace station::pki
