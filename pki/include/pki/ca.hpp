// CA lifecycle pieces signed in the HSM: cross-certificates for root rotation (RFC 5280
// §3.2, RFC 4158 §2.3), and certificate revocation lists v2 (RFC 5280 §5) with their
// reason codes. Every signature is verified with the CA's public key before it is returned.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.hpp"
#include "pki/hsm.hpp"
#include "pki/x509.hpp"

namespace station::pki {

// RFC 5280 §5.3.1 CRLReason (value 7 is unused; removeFromCRL only appears in delta CRLs,
// which the station does not publish, so it is not offered).
enum class RevocationReason : int {
  unspecified = 0,
  keyCompromise = 1,
  cACompromise = 2,
  affiliationChanged = 3,
  superseded = 4,
  cessationOfOperation = 5,
  certificateHold = 6,
  privilegeWithdrawn = 9,
  aACompromise = 10,
};
// The RFC's names: "keyCompromise", "cessationOfOperation", ...
std::string_view to_string(RevocationReason r) noexcept;
// Accepts the RFC's names case-insensitively, with or without '-'/'_' ("key-compromise").
// Errc::invalid_argument listing the valid names otherwise.
RevocationReason revocation_reason_from_string(std::string_view text);

struct RevokedCertificate {
  std::string serial_hex;               // lowercase hex, as records hold it
  std::chrono::sys_seconds revoked_at;
  RevocationReason reason = RevocationReason::unspecified;
};

struct CrlRequest {
  const CaSigner* issuer = nullptr;     // the CA whose certificates the CRL covers
  std::uint64_t crl_number = 1;         // strictly increasing per CA (RFC 5280 §5.2.3)
  std::chrono::sys_seconds this_update, next_update;
  std::vector<RevokedCertificate> revoked;
};

// A DER CertificateList v2: issuer name and AKI from the CA certificate, cRLNumber,
// a reasonCode entry extension for every reason but unspecified (§5.3.1), signed with the
// CA's key in the HSM and verified before it is returned.
Bytes make_crl(Hsm& hsm, const CrlRequest& request);

// A CA certificate for the key and name of `subject_cert` (an existing CA certificate),
// signed by `issuer`: the cross-certificates of a root rotation (the old root certifies
// the new root's key and the new root the old one's). CA:TRUE without a path length, the
// same key usages as a root, SKI of the subject key, AKI of the issuer. Valid from now
// until the earlier of both certificates' notAfter.
Bytes make_cross_certificate(Hsm& hsm, ByteView subject_cert_der, const CaSigner& issuer,
                             RandomSource random = system_random(), Clock clock = system_clock());

}  // namespace station::pki
