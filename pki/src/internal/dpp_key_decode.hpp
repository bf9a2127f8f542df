// Decoding a URI's K: bytes without exceptions, keeping why it failed, so the URI parser can
// report a specific error (RSA key, non-DPP curve, bad point, malformed DER).
#pragma once

#include <string>
#include <variant>

#include "common/bytes.hpp"
#include "pki/dpp_key.hpp"

namespace station::pki::dpp::internal {

enum class KeyDecodeErr { malformed, not_ec, not_named_curve, not_dpp_curve, bad_point };

struct KeyDecodeFailure {
  KeyDecodeErr err;
  std::string message;
};

std::variant<PublicKey, KeyDecodeFailure> decode_spki(ByteView der);

}  // namespace station::pki::dpp::internal
