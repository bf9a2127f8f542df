// DPP bootstrapping keys: generation, SubjectPublicKeyInfo encode/decode, RFC 5915 export.
//
// Speed matters (a batch provisions thousands of devices a second): the encoder framework
// behind i2d_PUBKEY/i2d_PrivateKey is slow (../shared/reference/performance-notes.md), so the
// DER here is assembled from a per-curve prefix plus the raw octets. The unit tests check the
// bytes against OpenSSL's own encoders.
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <string>

#include "internal/dpp_curves.hpp"
#include "internal/dpp_der.hpp"
#include "internal/dpp_key_decode.hpp"
#include "pki/dpp_key.hpp"

namespace station::pki::dpp {
namespace internal {
namespace {

// namedCurve OIDs, DER TLVs.
constexpr std::uint8_t kOidP256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
constexpr std::uint8_t kOidP384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
constexpr std::uint8_t kOidP521[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23};
constexpr std::uint8_t kOidBp256[] = {0x06, 0x09, 0x2b, 0x24, 0x03, 0x03, 0x02, 0x08, 0x01, 0x01, 0x07};
constexpr std::uint8_t kOidBp384[] = {0x06, 0x09, 0x2b, 0x24, 0x03, 0x03, 0x02, 0x08, 0x01, 0x01, 0x0b};
constexpr std::uint8_t kOidBp512[] = {0x06, 0x09, 0x2b, 0x24, 0x03, 0x03, 0x02, 0x08, 0x01, 0x01, 0x0d};
constexpr std::uint8_t kOidEcPublicKey[] = {0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01};

const std::array<CurveInfo, 6> kCurves{{
    {Curve::p256, "P-256", "prime256v1", NID_X9_62_prime256v1, 32, kOidP256},
    {Curve::p384, "P-384", "secp384r1", NID_secp384r1, 48, kOidP384},
    {Curve::p521, "P-521", "secp521r1", NID_secp521r1, 66, kOidP521},
    {Curve::bp256, "BP-256", "brainpoolP256r1", NID_brainpoolP256r1, 32, kOidBp256},
    {Curve::bp384, "BP-384", "brainpoolP384r1", NID_brainpoolP384r1, 48, kOidBp384},
    {Curve::bp512, "BP-512", "brainpoolP512r1", NID_brainpoolP512r1, 64, kOidBp512},
}};

}  // namespace

const CurveInfo& curve_info(Curve c) noexcept { return kCurves[static_cast<std::size_t>(c)]; }

const CurveInfo* curve_by_nid(int nid) noexcept {
  for (const auto& ci : kCurves)
    if (ci.nid == nid) return &ci;
  return nullptr;
}

std::span<const std::uint8_t> ec_public_key_oid_der() noexcept { return kOidEcPublicKey; }

}  // namespace internal

using internal::curve_info;
using internal::der_append_length;
using internal::der_append_tlv;

std::string_view curve_name(Curve c) noexcept { return curve_info(c).name; }
std::string_view curve_openssl_name(Curve c) noexcept { return curve_info(c).openssl_name; }
std::size_t curve_field_size(Curve c) noexcept { return curve_info(c).field_size; }

std::optional<Curve> curve_from_name(std::string_view name) noexcept {
  const auto iequal = [](std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
             return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
  };
  for (const Curve c : kAllCurves) {
    const auto& ci = curve_info(c);
    if (iequal(name, ci.name) || name == ci.openssl_name) return c;
  }
  if (name == "secp256r1" || name == "P256") return Curve::p256;
  return std::nullopt;
}

namespace {

// The DER SubjectPublicKeyInfo prefix for a point on `c`: everything up to and including
// the BIT STRING's unused-bits octet. Built once per curve and point form.
//   SEQUENCE { SEQUENCE { id-ecPublicKey, namedCurve }, BIT STRING { 00, point } }
const Bytes& spki_prefix(Curve c, bool compressed = true) {
  static const std::array<Bytes, 12> prefixes = [] {
    std::array<Bytes, 12> out;
    for (const Curve cv : kAllCurves) {
      for (const bool comp : {true, false}) {
        const auto& ci = curve_info(cv);
        Bytes alg;
        const auto ecpk = internal::ec_public_key_oid_der();
        alg.insert(alg.end(), ecpk.begin(), ecpk.end());
        alg.insert(alg.end(), ci.oid_der.begin(), ci.oid_der.end());
        const std::size_t point_len = comp ? 1 + ci.field_size : 1 + 2 * ci.field_size;
        Bytes inner;
        der_append_tlv(inner, 0x30, alg);
        inner.push_back(0x03);
        der_append_length(inner, point_len + 1);
        inner.push_back(0x00);
        Bytes& p = out[2 * static_cast<std::size_t>(cv) + (comp ? 0 : 1)];
        p.push_back(0x30);
        der_append_length(p, inner.size() + point_len);
        p.insert(p.end(), inner.begin(), inner.end());
      }
    }
    return out;
  }();
  return prefixes[2 * static_cast<std::size_t>(c) + (compressed ? 0 : 1)];
}

// Checks that `point` (SEC 1 encoding) lies on the curve. EC_POINT_oct2point verifies the
// point is on the curve (and, compressed, that x has a square root); it is an order of
// magnitude faster than building an EVP_PKEY. One group per curve and thread.
bool point_on_curve(Curve c, ByteView point) {
  struct GroupFree {
    void operator()(EC_GROUP* g) const noexcept { ::EC_GROUP_free(g); }
  };
  thread_local std::array<std::unique_ptr<EC_GROUP, GroupFree>, 6> groups;
  auto& g = groups[static_cast<std::size_t>(c)];
  if (!g) {
    g.reset(::EC_GROUP_new_by_curve_name(curve_info(c).nid));
    if (!g) throw ossl::error("EC_GROUP_new_by_curve_name(" + std::string(curve_openssl_name(c)) + ")");
  }
  const ossl::EcPoint pt(::EC_POINT_new(g.get()));
  if (!pt) throw ossl::error("EC_POINT_new");
  const bool ok = ::EC_POINT_oct2point(g.get(), pt.get(), point.data(), point.size(), nullptr) == 1 &&
                  ::EC_POINT_is_at_infinity(g.get(), pt.get()) == 0;
  if (!ok) ::ERR_clear_error();
  return ok;
}

// SEC 1 §2.3.3: compressed form is 02|03 (parity of y) followed by x.
Bytes compress_point(Curve c, ByteView point) {
  const std::size_t fs = curve_field_size(c);
  if (point.size() == 1 + fs && (point[0] == 0x02 || point[0] == 0x03)) return Bytes(point.begin(), point.end());
  if (point.size() == 1 + 2 * fs && point[0] == 0x04) {
    Bytes out(1 + fs);
    out[0] = static_cast<std::uint8_t>(0x02 | (point[2 * fs] & 1));
    std::copy_n(point.begin() + 1, fs, out.begin() + 1);
    return out;
  }
  if (!point.empty() && (point[0] == 0x06 || point[0] == 0x07))
    throw Error(Errc::unsupported, std::string("EC point on ") + std::string(curve_name(c)) +
                                       " uses the hybrid encoding (06/07); only compressed (02/03) or "
                                       "uncompressed (04) points are accepted");
  throw Error(Errc::parse_error, "EC point on " + std::string(curve_name(c)) + " has " +
                                     std::to_string(point.size()) + " bytes; expected " + std::to_string(1 + fs) +
                                     " (compressed) or " + std::to_string(1 + 2 * fs) + " (uncompressed)");
}

// Builds an EVP_PKEY from a point; OpenSSL decodes it and checks that it lies on the curve.
ossl::Pkey pkey_from_point(Curve c, ByteView point) {
  ossl::ParamBld bld(::OSSL_PARAM_BLD_new());
  if (!bld) throw ossl::error("OSSL_PARAM_BLD_new");
  const std::string group(curve_openssl_name(c));
  ossl::check(::OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group.c_str(), 0),
              "OSSL_PARAM_BLD_push_utf8_string(group)");
  ossl::check(::OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()),
              "OSSL_PARAM_BLD_push_octet_string(pub)");
  ossl::Params params(::OSSL_PARAM_BLD_to_param(bld.get()));
  if (!params) throw ossl::error("OSSL_PARAM_BLD_to_param");
  ossl::PkeyCtx ctx(::EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  if (!ctx || ::EVP_PKEY_fromdata_init(ctx.get()) != 1) throw ossl::error("EVP_PKEY_fromdata_init(EC)");
  EVP_PKEY* raw = nullptr;
  if (::EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1 || raw == nullptr)
    throw ossl::error("the public key is not a valid point on " + std::string(curve_name(c)), Errc::parse_error);
  return ossl::Pkey(raw);
}

Bytes raw_public_point(EVP_PKEY* pkey) {
  std::array<std::uint8_t, 1 + 2 * 66> buf{};
  std::size_t len = 0;
  ossl::check(::EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_PUB_KEY, buf.data(), buf.size(), &len),
              "EVP_PKEY_get_octet_string_param(pub)");
  return Bytes(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(len));
}

// 04 || x || y, whatever conversion form the key was loaded with.
Bytes uncompressed_point(EVP_PKEY* pkey, std::size_t field_size) {
  Bytes point = raw_public_point(pkey);
  if (point.size() == 1 + 2 * field_size) return point;
  BIGNUM* x = nullptr;
  BIGNUM* y = nullptr;
  const bool ok = ::EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, &x) == 1 &&
                  ::EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &y) == 1;
  const ossl::Bignum xo(x), yo(y);
  if (!ok) throw ossl::error("reading the public point");
  point.assign(1 + 2 * field_size, 0);
  point[0] = 0x04;
  const int fs = static_cast<int>(field_size);
  if (::BN_bn2binpad(x, point.data() + 1, fs) < 0 || ::BN_bn2binpad(y, point.data() + 1 + fs, fs) < 0)
    throw ossl::error("encoding the public point");
  return point;
}

std::optional<Curve> curve_of(EVP_PKEY* pkey) {
  char group[64] = {};
  std::size_t len = 0;
  if (::EVP_PKEY_get_group_name(pkey, group, sizeof group, &len) != 1) return std::nullopt;
  return curve_from_name(std::string_view(group, len));
}

using BnSecret = std::unique_ptr<BIGNUM, ossl::Deleter<BN_clear_free>>;

// One keygen context per curve and thread: creating it (provider fetch, group lookup) costs
// more than the generation itself.
EVP_PKEY_CTX* keygen_ctx(Curve c) {
  thread_local std::array<ossl::PkeyCtx, 6> ctxs;
  auto& slot = ctxs[static_cast<std::size_t>(c)];
  if (!slot) {
    ossl::PkeyCtx ctx(::EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
    if (!ctx || ::EVP_PKEY_keygen_init(ctx.get()) != 1) throw ossl::error("EVP_PKEY_keygen_init(EC)");
    const std::string group(curve_openssl_name(c));
    OSSL_PARAM params[] = {
        ::OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, const_cast<char*>(group.c_str()), 0),
        ::OSSL_PARAM_construct_end()};
    ossl::check(::EVP_PKEY_CTX_set_params(ctx.get(), params), "EVP_PKEY_CTX_set_params(group)");
    slot = std::move(ctx);
  }
  return slot.get();
}

}  // namespace

// --- PublicKey ---------------------------------------------------------------------------

PublicKey PublicKey::from_point(Curve curve, ByteView point) {
  Bytes compressed = compress_point(curve, point);
  if (!point_on_curve(curve, point))
    throw Error(Errc::parse_error, "the public key is not a valid point on " + std::string(curve_name(curve)));
  return PublicKey(curve, std::move(compressed));
}

namespace internal {

std::variant<PublicKey, KeyDecodeFailure> decode_spki(ByteView der) {
  using F = KeyDecodeFailure;
  // Fast path: the exact DER of a named-curve EC key, compressed or uncompressed, which is
  // what every DPP stack writes. Anything else goes through OpenSSL's ASN.1 decoder, which
  // also says precisely what is wrong.
  for (const Curve c : kAllCurves) {
    for (const bool comp : {true, false}) {
      const Bytes& prefix = spki_prefix(c, comp);
      const std::size_t point_len = 1 + (comp ? 1 : 2) * curve_field_size(c);
      if (der.size() != prefix.size() + point_len || !std::equal(prefix.begin(), prefix.end(), der.begin())) continue;
      try {
        return PublicKey::from_point(c, der.subspan(prefix.size()));
      } catch (const Error& e) {
        return F{KeyDecodeErr::bad_point, e.what()};
      }
    }
  }
  const unsigned char* p = der.data();
  std::unique_ptr<X509_PUBKEY, ossl::Deleter<X509_PUBKEY_free>> xpk(
      ::d2i_X509_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (!xpk) {
    return F{KeyDecodeErr::malformed,
             ossl::error("the public key is not a DER SubjectPublicKeyInfo", Errc::parse_error).what()};
  }
  if (p != der.data() + der.size()) {
    return F{KeyDecodeErr::malformed, "the public key has " + std::to_string(der.data() + der.size() - p) +
                                          " bytes after its DER SubjectPublicKeyInfo"};
  }
  ASN1_OBJECT* alg_oid = nullptr;
  const unsigned char* pk = nullptr;
  int pk_len = 0;
  X509_ALGOR* alg = nullptr;
  if (::X509_PUBKEY_get0_param(&alg_oid, &pk, &pk_len, &alg, xpk.get()) != 1)
    return F{KeyDecodeErr::malformed, ossl::error("X509_PUBKEY_get0_param").what()};
  const int alg_nid = ::OBJ_obj2nid(alg_oid);
  if (alg_nid != NID_X9_62_id_ecPublicKey) {
    const char* sn = alg_nid != NID_undef ? ::OBJ_nid2sn(alg_nid) : nullptr;
    char oid_txt[80] = {};
    ::OBJ_obj2txt(oid_txt, sizeof oid_txt, alg_oid, 1);
    return F{KeyDecodeErr::not_ec, std::string("the public key is ") + (sn != nullptr ? sn : "algorithm") + " (" +
                                       oid_txt + "), not an EC key (id-ecPublicKey); DPP needs an EC key on "
                                                 "P-256, P-384, P-521, BP-256, BP-384 or BP-512"};
  }
  int ptype = 0;
  const void* pval = nullptr;
  ::X509_ALGOR_get0(nullptr, &ptype, &pval, alg);
  if (ptype != V_ASN1_OBJECT) {
    return F{KeyDecodeErr::not_named_curve,
             "the EC public key has explicit or absent curve parameters; DPP needs a named curve "
             "(P-256, P-384, P-521, BP-256, BP-384 or BP-512)"};
  }
  const auto* curve_oid = static_cast<const ASN1_OBJECT*>(pval);
  const auto* ci = curve_by_nid(::OBJ_obj2nid(curve_oid));
  if (ci == nullptr) {
    char oid_txt[80] = {};
    ::OBJ_obj2txt(oid_txt, sizeof oid_txt, curve_oid, 0);
    return F{KeyDecodeErr::not_dpp_curve, std::string("the EC public key is on curve ") + oid_txt +
                                              ", which is not a DPP curve (P-256, P-384, P-521, BP-256, "
                                              "BP-384, BP-512)"};
  }
  try {
    return PublicKey::from_point(ci->curve, ByteView(pk, static_cast<std::size_t>(pk_len)));
  } catch (const Error& e) {
    return F{KeyDecodeErr::bad_point, e.what()};
  }
}

}  // namespace internal

PublicKey PublicKey::from_spki_der(ByteView der) {
  auto r = internal::decode_spki(der);
  if (auto* f = std::get_if<internal::KeyDecodeFailure>(&r)) {
    const bool unsupported = f->err == internal::KeyDecodeErr::not_ec ||
                             f->err == internal::KeyDecodeErr::not_named_curve ||
                             f->err == internal::KeyDecodeErr::not_dpp_curve;
    throw Error(unsupported ? Errc::unsupported : Errc::parse_error, f->message);
  }
  return std::get<PublicKey>(std::move(r));
}

PublicKey PublicKey::from_spki_pem_or_der(ByteView data) {
  const std::string_view text(reinterpret_cast<const char*>(data.data()), data.size());
  if (text.find("-----BEGIN") == std::string_view::npos) return from_spki_der(data);
  if (text.find("-----BEGIN PUBLIC KEY-----") == std::string_view::npos)
    throw Error(Errc::parse_error, "expected a PEM \"PUBLIC KEY\" (SubjectPublicKeyInfo) block");
  ossl::Bio bio(::BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
  if (!bio) throw ossl::error("BIO_new_mem_buf");
  char* name = nullptr;
  char* header = nullptr;
  unsigned char* body = nullptr;
  long len = 0;
  // Skip anything before the PUBLIC KEY block (e.g. a private key is refused, not read).
  for (;;) {
    if (::PEM_read_bio(bio.get(), &name, &header, &body, &len) != 1)
      throw ossl::error("the PEM \"PUBLIC KEY\" block could not be read", Errc::parse_error);
    const bool match = std::string_view(name) == "PUBLIC KEY";
    ::OPENSSL_free(name);
    ::OPENSSL_free(header);
    if (match) break;
    ::OPENSSL_free(body);
  }
  struct PemFree {
    void operator()(unsigned char* b) const noexcept { ::OPENSSL_free(b); }
  };
  const std::unique_ptr<unsigned char, PemFree> owner(body);
  return from_spki_der(ByteView(body, static_cast<std::size_t>(len)));
}

Bytes PublicKey::spki_der() const {
  const Bytes& prefix = spki_prefix(curve_);
  Bytes out;
  out.reserve(prefix.size() + point_.size());
  out.insert(out.end(), prefix.begin(), prefix.end());
  out.insert(out.end(), point_.begin(), point_.end());
  return out;
}

Bytes PublicKey::key_hash() const { return sha256(spki_der()); }

ossl::Pkey PublicKey::to_evp() const { return pkey_from_point(curve_, point_); }

// --- KeyPair -----------------------------------------------------------------------------

KeyPair KeyPair::generate(Curve curve) {
  EVP_PKEY* raw = nullptr;
  if (::EVP_PKEY_generate(keygen_ctx(curve), &raw) != 1 || raw == nullptr)
    throw ossl::error("generating a " + std::string(curve_name(curve)) + " key failed");
  ossl::Pkey pkey(raw);
  Bytes point = raw_public_point(pkey.get());
  PublicKey pub(curve, compress_point(curve, point));
  return KeyPair(std::move(pkey), std::move(pub));
}

KeyPair KeyPair::from_ec_private_key_der(ByteView der) {
  const unsigned char* p = der.data();
  ossl::Pkey pkey(::d2i_PrivateKey(EVP_PKEY_EC, nullptr, &p, static_cast<long>(der.size())));
  if (!pkey) throw ossl::error("the private key is not an RFC 5915 ECPrivateKey DER", Errc::parse_error);
  const auto curve = curve_of(pkey.get());
  if (!curve)
    throw Error(Errc::unsupported, "the private key is not on a DPP curve (P-256, P-384, P-521, BP-256, "
                                   "BP-384, BP-512)");
  Bytes point = raw_public_point(pkey.get());
  PublicKey pub(*curve, compress_point(*curve, point));
  return KeyPair(std::move(pkey), std::move(pub));
}

SecretBytes KeyPair::ec_private_key_der() const {
  const auto& ci = curve_info(curve());
  BIGNUM* raw = nullptr;
  if (::EVP_PKEY_get_bn_param(pkey_.get(), OSSL_PKEY_PARAM_PRIV_KEY, &raw) != 1 || raw == nullptr)
    throw ossl::error("reading the private key for export");
  const BnSecret scalar(raw);
  const Bytes point = uncompressed_point(pkey_.get(), ci.field_size);

  // RFC 5915 §3:
  //   ECPrivateKey ::= SEQUENCE { version INTEGER 1, privateKey OCTET STRING,
  //                               parameters [0] ECParameters, publicKey [1] BIT STRING }
  const std::size_t pub_bits_len = 1 + point.size();
  std::size_t body_len = 3 + 2 + ci.field_size;              // version, privateKey
  const std::size_t params_len = ci.oid_der.size();
  body_len += internal::der_tlv_size(params_len);            // [0] { OID }
  body_len += internal::der_tlv_size(internal::der_tlv_size(pub_bits_len));  // [1] { BIT STRING }

  Bytes out;
  out.reserve(internal::der_tlv_size(body_len));
  const std::uint8_t* const buffer = out.data();  // must not move: a moved buffer is not wiped
  out.push_back(0x30);
  der_append_length(out, body_len);
  out.insert(out.end(), {0x02, 0x01, 0x01});
  out.push_back(0x04);
  der_append_length(out, ci.field_size);
  const std::size_t at = out.size();
  out.resize(at + ci.field_size);
  if (::BN_bn2binpad(scalar.get(), out.data() + at, static_cast<int>(ci.field_size)) < 0) {
    secure_wipe(out.data(), out.size());
    throw ossl::error("encoding the private key");
  }
  out.push_back(0xa0);
  der_append_length(out, params_len);
  out.insert(out.end(), ci.oid_der.begin(), ci.oid_der.end());
  out.push_back(0xa1);
  der_append_length(out, internal::der_tlv_size(pub_bits_len));
  out.push_back(0x03);
  der_append_length(out, pub_bits_len);
  out.push_back(0x00);
  out.insert(out.end(), point.begin(), point.end());
  if (out.data() != buffer || out.size() != internal::der_tlv_size(body_len)) {
    secure_wipe(out.data(), out.size());
    throw Error(Errc::internal, "RFC 5915 encoding: size computed wrongly for " + std::string(ci.name));
  }
  return SecretBytes(std::move(out));
}

SecretString KeyPair::ec_private_key_pem() const {
  const SecretBytes der = ec_private_key_der();
  std::string b64 = base64_encode(der.bytes());
  std::string pem;
  pem.reserve(b64.size() + b64.size() / 64 + 64);
  // RFC 7468 §10 label "EC PRIVATE KEY" (RFC 5915 §4), kept in one constant.
  static constexpr std::string_view kLabel = "EC PRIVATE KEY";
  pem.append("-----BEGIN ").append(kLabel).append("-----\n");
  for (std::size_t i = 0; i < b64.size(); i += 64) {
    pem.append(b64, i, 64);
    pem.push_back('\n');
  }
  pem.append("-----END ").append(kLabel).append("-----\n");
  secure_wipe(b64.data(), b64.size());
  return SecretString(std::move(pem));
}

}  // namespace station::pki::dpp
