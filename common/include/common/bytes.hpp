// Bytes and their text encodings (lowercase hex, standard base64 with padding).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace station {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;

inline ByteView as_bytes(std::string_view s) noexcept {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
inline std::string to_string(ByteView b) { return {b.begin(), b.end()}; }

std::string hex_encode(ByteView data);                     // lowercase, no separators
std::optional<Bytes> hex_decode(std::string_view text);    // even length, [0-9a-fA-F] only
std::string base64_encode(ByteView data);                  // RFC 4648 §4, with padding
std::optional<Bytes> base64_decode(std::string_view text); // strict: padding required, no whitespace

// SHA-256 of data, as bytes and as lowercase hex.
Bytes sha256(ByteView data);
std::string sha256_hex(ByteView data);

}  // namespace station
