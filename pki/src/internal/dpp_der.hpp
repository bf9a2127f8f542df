// Just enough DER writing (X.690 §8.1) for the fixed structures of DPP keys.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "common/bytes.hpp"

namespace station::pki::dpp::internal {

// Size of a TLV whose value has `len` bytes (one tag byte).
constexpr std::size_t der_tlv_size(std::size_t len) noexcept {
  return 1 + (len < 0x80 ? 1 : len < 0x100 ? 2 : 3) + len;
}

inline void der_append_length(Bytes& out, std::size_t len) {
  if (len < 0x80) {
    out.push_back(static_cast<std::uint8_t>(len));
  } else if (len < 0x100) {
    out.push_back(0x81);
    out.push_back(static_cast<std::uint8_t>(len));
  } else {
    out.push_back(0x82);
    out.push_back(static_cast<std::uint8_t>(len >> 8));
    out.push_back(static_cast<std::uint8_t>(len));
  }
}

inline void der_append_tlv(Bytes& out, std::uint8_t tag, std::span<const std::uint8_t> value) {
  out.push_back(tag);
  der_append_length(out, value.size());
  out.insert(out.end(), value.begin(), value.end());
}

}  // namespace station::pki::dpp::internal
