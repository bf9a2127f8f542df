#include <openssl/core_names.h>

#include "internal/ec.hpp"

namespace station::pki {

Bytes unwrap_ec_point(ByteView attr) {
  if (attr.size() >= 2 && attr[0] == 0x04) {
    // DER OCTET STRING: short or long (0x81 nn) length form.
    std::size_t len = attr[1], hdr = 2;
    if (attr[1] == 0x81 && attr.size() >= 3) {
      len = attr[2];
      hdr = 3;
    }
    if (hdr + len == attr.size() && len > 0 && (attr[hdr] == 0x04 || attr[hdr] == 0x02 || attr[hdr] == 0x03))
      return Bytes(attr.begin() + static_cast<std::ptrdiff_t>(hdr), attr.end());
  }
  return Bytes(attr.begin(), attr.end());
}

Bytes ec_point_to_spki(CaCurve curve, ByteView ec_point_attr) {
  Bytes point = unwrap_ec_point(ec_point_attr);
  const char* group = curve == CaCurve::p256 ? "prime256v1" : "secp384r1";
  ossl::ParamBld bld(ossl::check(::OSSL_PARAM_BLD_new(), "OSSL_PARAM_BLD_new"));
  ossl::check(::OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0), "group param");
  ossl::check(::OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()),
              "point param");
  ossl::Params params(ossl::check(::OSSL_PARAM_BLD_to_param(bld.get()), "OSSL_PARAM_BLD_to_param"));
  ossl::PkeyCtx ctx(ossl::check(::EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr), "EVP_PKEY_CTX_new_from_name"));
  ossl::check(::EVP_PKEY_fromdata_init(ctx.get()), "EVP_PKEY_fromdata_init");
  EVP_PKEY* raw = nullptr;
  if (::EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1)
    throw ossl::error("the HSM returned an EC point that is not on the curve", Errc::hsm_error);
  const ossl::Pkey key(raw);
  return spki_of(key.get());
}

ossl::Pkey pkey_from_spki(ByteView spki_der) {
  const unsigned char* p = spki_der.data();
  EVP_PKEY* key = ::d2i_PUBKEY(nullptr, &p, static_cast<long>(spki_der.size()));
  if (key == nullptr || p != spki_der.data() + spki_der.size()) {
    ::EVP_PKEY_free(key);
    throw ossl::error("not a DER SubjectPublicKeyInfo", Errc::invalid_argument);
  }
  return ossl::Pkey(key);
}

Bytes spki_of(EVP_PKEY* key) {
  const int len = ::i2d_PUBKEY(key, nullptr);
  if (len <= 0) throw ossl::error("i2d_PUBKEY");
  Bytes out(static_cast<std::size_t>(len));
  unsigned char* p = out.data();
  ::i2d_PUBKEY(key, &p);
  return out;
}

}  // namespace station::pki
