// EC public keys between PKCS#11 attributes, OpenSSL and DER.
#pragma once

#include "common/bytes.hpp"
#include "common/ossl.hpp"
#include "pki/hsm.hpp"

namespace station::pki {

// CKA_EC_POINT holds a DER OCTET STRING around the point (PKCS#11 v2.40 §2.3.3); some
// modules give the bare point. Returns the bare point.
Bytes unwrap_ec_point(ByteView attr);

// SubjectPublicKeyInfo DER (uncompressed point) for a CA key read from the token.
Bytes ec_point_to_spki(CaCurve curve, ByteView ec_point_attr);

// Parses a DER SubjectPublicKeyInfo; Errc::invalid_argument when it is not one.
ossl::Pkey pkey_from_spki(ByteView spki_der);

// SPKI DER of a public key (OpenSSL's encoding).
Bytes spki_of(EVP_PKEY* key);

}  // namespace station::pki
