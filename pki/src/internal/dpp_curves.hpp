// The six DPP curves (Wi-Fi Easy Connect v3.0 §3.2.2 / Table 3) with what the encoders need:
// OpenSSL names and NIDs, field sizes and the DER of each curve's namedCurve OID (RFC 5480
// §2.1.1.1 for the NIST curves, RFC 5639 §4.1 for brainpool).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "pki/dpp_key.hpp"

namespace station::pki::dpp::internal {

struct CurveInfo {
  Curve curve;
  std::string_view name;          // station name, e.g. "BP-256"
  std::string_view openssl_name;  // e.g. "brainpoolP256r1"
  int nid;
  std::size_t field_size;         // bytes of one coordinate / of the private scalar
  std::span<const std::uint8_t> oid_der;  // full TLV: 06 len ...
};

const CurveInfo& curve_info(Curve c) noexcept;
// The curve whose namedCurve OID is `nid`, or nullptr.
const CurveInfo* curve_by_nid(int nid) noexcept;

// DER of id-ecPublicKey (1.2.840.10045.2.1), full TLV.
std::span<const std::uint8_t> ec_public_key_oid_der() noexcept;

}  // namespace station::pki::dpp::internal
