// The DPP bootstrapping URI (Wi-Fi Easy Connect v3.0 §5.2.1): what goes into a device's QR
// code. generate_uri() writes exactly the grammar, fields in the order hostapd writes them
// (C, M, I, V, B, H, K); parse_uri() returns a typed result or an error that names the field,
// the offending character and the reason. docs/dpp.md lists every leniency choice.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/bytes.hpp"
#include "pki/dpp_key.hpp"

namespace station::pki::dpp {

// IEEE 802.11-2020 Annex E, Table E-4 (global operating classes; 6 GHz classes per
// 802.11ax-2021): the centre frequency in MHz of `channel` in `opclass`, or nullopt when the
// pair is not in the table (unknown class, or a channel the class does not contain).
// Covers the 2.4 GHz (81-84), 5 GHz (115-130) and 6 GHz (131-136) classes.
std::optional<unsigned> channel_frequency(unsigned opclass, unsigned channel) noexcept;

// hostapd drops the whole channel list past this many entries (DPP_BOOTSTRAP_MAX_FREQ);
// the station refuses to generate or accept a longer one.
inline constexpr std::size_t kMaxChannels = 30;
// H: is at most 255 characters (§5.2.1 grammar).
inline constexpr std::size_t kMaxHostLength = 255;

struct Channel {
  unsigned opclass = 0;
  unsigned channel = 0;
  friend bool operator==(const Channel&, const Channel&) = default;
};

using Mac = std::array<std::uint8_t, 6>;

// What a URI says, apart from the key.
struct UriFields {
  std::vector<Channel> channels;                   // C: (empty: no C: field)
  std::optional<Mac> mac;                          // M:
  std::optional<std::string> info;                 // I: printable ASCII except ';'
  std::optional<int> version = 2;                  // V: 2 or 3 (nullopt: no V:, a v1 URI)
  std::optional<std::vector<Curve>> supported_curves;  // B: (at least one curve when present)
  std::optional<std::string> host;                 // H:
  friend bool operator==(const UriFields&, const UriFields&) = default;
};

// Writes the URI for `key` with `fields`. Throws Error(invalid_argument) naming the field
// when a value is outside the grammar: a channel not in the operating class table, more than
// kMaxChannels channels, info with ';' or a non-printable character, a version other than
// 2 or 3, an empty supported-curves list, a bad host.
std::string generate_uri(const PublicKey& key, const UriFields& fields);

// A parsed URI.
struct BootstrapUri {
  UriFields fields;                    // channels in URI order; version nullopt when no V:
  std::vector<std::optional<unsigned>> freqs;  // per fields.channels entry; nullopt if unknown
  Curve curve = Curve::p256;
  PublicKey key() const { return PublicKey::from_spki_der(key_der); }
  Bytes key_der;                       // the decoded K: bytes exactly as given
  std::array<std::uint8_t, 32> pkhash{};      // SHA-256(key_der)
  std::array<std::uint8_t, 32> chirp_hash{};  // SHA-256("chirp" || key_der)
  // Fields with a token the station does not know (grammar's extension tokens), in order.
  std::vector<std::pair<std::string, std::string>> unknown_fields;
  // False when the URI ended in a single ';' after K: (accepted, as hostapd does).
  bool terminated = true;
};

enum class UriErrc {
  bad_prefix,          // does not start with "DPP:"
  missing_key,         // no K: field
  missing_terminator,  // K: value not followed by ';'
  trailing_data,       // text after the final ";;"
  empty_field,         // ";;" before K:, or a ';' with nothing before it
  duplicate_field,     // a known field given twice (ambiguous: parsers disagree which wins)
  field_after_key,     // K: must be the last field
  bad_token,           // a field that is not TOKEN ":" value
  bad_channel_list,    // C: syntax or a number out of range
  too_many_channels,   // more than kMaxChannels
  bad_mac,             // M: not 12 hex digits
  bad_info,            // I: character outside %x20-3A / %x3C-7E
  bad_version,         // V: not a decimal version
  bad_supported_curves,  // B: not hex
  bad_host,            // H: empty, too long or a character outside the grammar
  bad_base64,          // K: not standard padded base64
  bad_key,             // K: bytes are not a DER SubjectPublicKeyInfo / point not on curve
  unsupported_key,     // K: is not an EC key (e.g. RSA)
  unsupported_curve,   // K: EC key on a curve that DPP does not use
};

std::string_view uri_errc_name(UriErrc e) noexcept;

struct UriError {
  UriErrc code;
  char field = 0;             // 'C', 'M', 'I', 'V', 'B', 'H', 'K', or 0 for the URI as a whole
  std::size_t position = 0;   // byte offset in the URI of the offending character
  std::string message;        // one line: field, offset, character, why, what is expected
};

using UriParseResult = std::variant<BootstrapUri, UriError>;

// Never throws for malformed input (only std::bad_alloc).
UriParseResult try_parse_uri(std::string_view uri);
// Throws Error(parse_error, UriError::message).
BootstrapUri parse_uri(std::string_view uri);

// Parses a channel list in the URI's own syntax ("81/1,6,11,115/36"), as `station dpp gen
// --chan` takes it. Throws Error(invalid_argument) with the offset of the bad character.
std::vector<Channel> parse_channel_list(std::string_view text);
std::string format_channel_list(const std::vector<Channel>& channels);

// "2ccf67158817" or "2c:cf:67:15:88:17" / "2c-cf-..." (for command lines); nullopt otherwise.
std::optional<Mac> parse_mac(std::string_view text) noexcept;
std::string format_mac(const Mac& mac);  // 12 lowercase hex digits

}  // namespace station::pki::dpp
