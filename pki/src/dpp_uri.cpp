// The DPP bootstrapping URI, Wi-Fi Easy Connect v3.0 §5.2.1:
//
//   dpp-qr         = "DPP:" *optional-field public-key ";;"
//   optional-field = ( channel-list / mac / information / version / host / supported-curves ) ";"
//                  / unreserved-token ":" *(%x20-3A / %x3C-7E) ";"
//   public-key     = "K:" base64(DER SubjectPublicKeyInfo)
//
// The generator writes the grammar exactly, in hostapd's field order (C, M, I, V, B, H, K), so
// the station's URI for a key equals wpa_supplicant's byte for byte. The parser is strict
// except where docs/dpp.md says otherwise (each case is marked "Leniency" below).
#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "internal/dpp_key_decode.hpp"
#include "common/ossl.hpp"
#include "pki/dpp.hpp"

namespace station::pki::dpp {
namespace {

constexpr std::string_view kPrefix = "DPP:";

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
bool is_alpha(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
int hex_value(char c) noexcept {
  if (is_digit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
// %x20-3A / %x3C-7E: printable ASCII except ';'.
bool is_info_char(char c) noexcept {
  const auto u = static_cast<unsigned char>(c);
  return u >= 0x20 && u <= 0x7e && u != 0x3b;
}
// H: = 1*255(DIGIT / ALPHA / "." / "-" / ":"); '[' and ']' are accepted too because hostapd
// writes an IPv6 host with a port as "[addr]:port".
bool is_host_char(char c) noexcept {
  return is_digit(c) || is_alpha(c) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']';
}
bool is_base64_char(char c) noexcept { return is_digit(c) || is_alpha(c) || c == '+' || c == '/'; }

// How a character appears in an error message.
std::string show_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u >= 0x21 && u <= 0x7e) return std::string("'") + c + "'";
  char buf[16];
  std::snprintf(buf, sizeof buf, "byte 0x%02x", u);
  return buf;
}

// A failure inside a field; `offset` is relative to the field's value.
struct FieldError {
  UriErrc code;
  std::size_t offset;
  std::string why;
};

// --- the fields, each parsed from its value -----------------------------------------------

std::optional<FieldError> parse_channels(std::string_view v, std::vector<Channel>& out) {
  const auto number = [&](std::size_t& i, const char* what, unsigned& value) -> std::optional<FieldError> {
    const std::size_t start = i;
    while (i < v.size() && is_digit(v[i])) ++i;
    if (i == start) {
      if (i >= v.size())
        return FieldError{UriErrc::bad_channel_list, i, std::string("the list ends where ") + what + " was expected"};
      return FieldError{UriErrc::bad_channel_list, i, show_char(v[i]) + " where " + what + " (digits) was expected"};
    }
    if (i - start > 3)
      return FieldError{UriErrc::bad_channel_list, start, std::string(what) + " has more than 3 digits"};
    value = static_cast<unsigned>(std::stoul(std::string(v.substr(start, i - start))));
    if (value < 1 || value > 255)
      return FieldError{UriErrc::bad_channel_list, start,
                        std::string(what) + " " + std::to_string(value) + " is outside 1-255"};
    return std::nullopt;
  };
  if (v.empty()) return FieldError{UriErrc::bad_channel_list, 0, "the channel list is empty"};
  std::size_t i = 0;
  std::optional<unsigned> opclass;
  for (;;) {
    const std::size_t item = i;
    unsigned first = 0;
    if (auto e = number(i, "an operating class or channel", first)) return e;
    unsigned channel = first;
    if (i < v.size() && v[i] == '/') {
      ++i;
      opclass = first;
      if (auto e = number(i, "a channel", channel)) return e;
    } else if (!opclass) {
      return FieldError{UriErrc::bad_channel_list, item,
                        "the first entry must be class/channel (e.g. 81/1), not a bare channel"};
    }
    if (out.size() == kMaxChannels)
      return FieldError{UriErrc::too_many_channels, item,
                        "more than " + std::to_string(kMaxChannels) + " channels (hostapd drops such a list)"};
    out.push_back(Channel{*opclass, channel});
    if (i == v.size()) return std::nullopt;
    if (v[i] != ',')
      return FieldError{UriErrc::bad_channel_list, i, show_char(v[i]) + " where ',' or '/' was expected"};
    ++i;
  }
}

std::optional<FieldError> parse_mac_field(std::string_view v, Mac& out) {
  // Leniency: hex digits of either case. Not taken from hostapd: separators (2c:cf:...).
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (hex_value(v[i]) < 0)
      return FieldError{UriErrc::bad_mac, i, show_char(v[i]) + " is not a hex digit; M: is 12 hex digits without "
                                                                "separators (e.g. M:2ccf67158817)"};
  }
  if (v.size() != 12)
    return FieldError{UriErrc::bad_mac, std::min<std::size_t>(v.size(), 12),
                      "M: has " + std::to_string(v.size()) + " hex digits; a MAC address is 12 (e.g. M:2ccf67158817)"};
  for (std::size_t i = 0; i < 6; ++i)
    out[i] = static_cast<std::uint8_t>(hex_value(v[2 * i]) << 4 | hex_value(v[2 * i + 1]));
  return std::nullopt;
}

std::optional<FieldError> check_printable(std::string_view v, UriErrc code, const char* field) {
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!is_info_char(v[i]))
      return FieldError{code, i, show_char(v[i]) + " is not allowed in " + field +
                                     " (printable ASCII 0x20-0x7e except ';' only)"};
  }
  return std::nullopt;
}

std::optional<FieldError> parse_version(std::string_view v, int& out) {
  // The grammar allows 1*ALPHANUMERIC; every published version is a number, so the station
  // reads a decimal number and refuses anything else (hostapd looks at the first character only).
  if (v.empty()) return FieldError{UriErrc::bad_version, 0, "V: is empty; expected a version number (2 or 3)"};
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!is_digit(v[i]))
      return FieldError{UriErrc::bad_version, i, show_char(v[i]) + " in V:; expected a decimal version number (2 or 3)"};
  }
  if (v.size() > 3 || v[0] == '0')
    return FieldError{UriErrc::bad_version, 0, "V:" + std::string(v) + " is not a version number (1-255)"};
  out = std::stoi(std::string(v));
  if (out > 255) return FieldError{UriErrc::bad_version, 0, "V:" + std::string(v) + " is not a version number (1-255)"};
  return std::nullopt;
}

std::optional<FieldError> parse_supported_curves(std::string_view v, std::vector<Curve>& out) {
  // The B: bitmap as hostapd reads and writes it: the first hex digit holds bits 0-3, the
  // second bits 4-7 (bit0 P-256, bit1 P-384, bit2 P-521, bit3 BP-256, bit4 BP-384, bit5 BP-512).
  // Leniency: reserved bits (6 and up) are ignored, for curves a later version may add.
  if (v.empty()) return FieldError{UriErrc::bad_supported_curves, 0, "B: is empty; expected a hex bitmap"};
  if (v.size() > 8) return FieldError{UriErrc::bad_supported_curves, 8, "B: has more than 8 hex digits"};
  std::uint32_t bits = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const int h = hex_value(v[i]);
    if (h < 0) return FieldError{UriErrc::bad_supported_curves, i, show_char(v[i]) + " is not a hex digit in B:"};
    bits |= static_cast<std::uint32_t>(h) << (4 * i);
  }
  for (const Curve c : kAllCurves)
    if ((bits >> static_cast<unsigned>(c)) & 1U) out.push_back(c);
  return std::nullopt;
}

std::optional<FieldError> check_host(std::string_view v) {
  if (v.empty()) return FieldError{UriErrc::bad_host, 0, "H: is empty"};
  if (v.size() > kMaxHostLength)
    return FieldError{UriErrc::bad_host, kMaxHostLength,
                      "H: has " + std::to_string(v.size()) + " characters; at most 255 are allowed"};
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!is_host_char(v[i]))
      return FieldError{UriErrc::bad_host, i, show_char(v[i]) + " is not allowed in H: (letters, digits, '.', '-', ':')"};
  }
  return std::nullopt;
}

std::optional<FieldError> decode_key(std::string_view v, Bytes& der, Curve& curve) {
  // Standard base64 with '=' padding (RFC 4648 §4), no whitespace. Leniency not taken from
  // hostapd: it skips characters outside the alphabet and accepts missing padding.
  if (v.empty()) return FieldError{UriErrc::bad_base64, 0, "K: is empty; expected base64 of a DER SubjectPublicKeyInfo"};
  std::size_t pad = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '=') {
      ++pad;
      continue;
    }
    if (pad > 0 || !is_base64_char(v[i])) {
      return FieldError{UriErrc::bad_base64, i, pad > 0 ? show_char(v[i]) + " after '=' padding in K:"
                                                        : show_char(v[i]) + " is not a base64 character in K:"};
    }
  }
  if (v.size() % 4 != 0 || pad > 2)
    return FieldError{UriErrc::bad_base64, v.size(),
                      "K: has " + std::to_string(v.size()) + " base64 characters, not a multiple of 4 "
                      "(missing or extra '=' padding?)"};
  auto bytes = base64_decode(v);
  if (!bytes)
    return FieldError{UriErrc::bad_base64, v.size() - 1, "K: base64 has non-zero bits in its padding (not canonical)"};
  auto key = internal::decode_spki(*bytes);
  if (auto* f = std::get_if<internal::KeyDecodeFailure>(&key)) {
    UriErrc code = UriErrc::bad_key;
    if (f->err == internal::KeyDecodeErr::not_ec) code = UriErrc::unsupported_key;
    if (f->err == internal::KeyDecodeErr::not_dpp_curve || f->err == internal::KeyDecodeErr::not_named_curve)
      code = UriErrc::unsupported_curve;
    return FieldError{code, 0, f->message};
  }
  curve = std::get<PublicKey>(key).curve();
  der = std::move(*bytes);
  return std::nullopt;
}

UriError make_error(UriErrc code, char field, std::size_t position, const std::string& why) {
  std::string msg = "DPP URI";
  if (field != 0) msg += std::string(" field ") + field + ":";
  msg += " (offset " + std::to_string(position) + "): " + why;
  return UriError{code, field, position, std::move(msg)};
}

std::array<std::uint8_t, 32> digest(std::string_view prefix, const Bytes& data) {
  std::array<std::uint8_t, 32> out{};
  ossl::MdCtx md(::EVP_MD_CTX_new());
  unsigned int len = 0;
  if (!md || ::EVP_DigestInit_ex(md.get(), ossl::sha256(), nullptr) != 1 ||
      ::EVP_DigestUpdate(md.get(), prefix.data(), prefix.size()) != 1 ||
      ::EVP_DigestUpdate(md.get(), data.data(), data.size()) != 1 ||
      ::EVP_DigestFinal_ex(md.get(), out.data(), &len) != 1)
    throw ossl::error("SHA-256");
  return out;
}

}  // namespace

std::string_view uri_errc_name(UriErrc e) noexcept {
  switch (e) {
    case UriErrc::bad_prefix: return "bad_prefix";
    case UriErrc::missing_key: return "missing_key";
    case UriErrc::missing_terminator: return "missing_terminator";
    case UriErrc::trailing_data: return "trailing_data";
    case UriErrc::empty_field: return "empty_field";
    case UriErrc::duplicate_field: return "duplicate_field";
    case UriErrc::field_after_key: return "field_after_key";
    case UriErrc::bad_token: return "bad_token";
    case UriErrc::bad_channel_list: return "bad_channel_list";
    case UriErrc::too_many_channels: return "too_many_channels";
    case UriErrc::bad_mac: return "bad_mac";
    case UriErrc::bad_info: return "bad_info";
    case UriErrc::bad_version: return "bad_version";
    case UriErrc::bad_supported_curves: return "bad_supported_curves";
    case UriErrc::bad_host: return "bad_host";
    case UriErrc::bad_base64: return "bad_base64";
    case UriErrc::bad_key: return "bad_key";
    case UriErrc::unsupported_key: return "unsupported_key";
    case UriErrc::unsupported_curve: return "unsupported_curve";
  }
  return "unknown";
}

UriParseResult try_parse_uri(std::string_view uri) {
  if (uri.substr(0, kPrefix.size()) != kPrefix) {
    std::size_t i = 0;
    while (i < uri.size() && i < kPrefix.size() && uri[i] == kPrefix[i]) ++i;
    return make_error(UriErrc::bad_prefix, 0, i, "a DPP URI starts with \"DPP:\" (case-sensitive)");
  }
  BootstrapUri out;
  out.fields.version.reset();
  bool seen[128] = {};
  std::size_t pos = kPrefix.size();
  for (;;) {
    if (pos >= uri.size()) return make_error(UriErrc::missing_key, 0, pos, "no K: (public key) field");
    const std::size_t end = uri.find(';', pos);
    const std::size_t piece_end = end == std::string_view::npos ? uri.size() : end;
    if (piece_end == pos) return make_error(UriErrc::empty_field, 0, pos, "empty field (';' with nothing before it)");
    const std::string_view piece = uri.substr(pos, piece_end - pos);

    // TOKEN ":" value; a token is letters only.
    std::size_t t = 0;
    while (t < piece.size() && is_alpha(piece[t])) ++t;
    if (t == piece.size() || piece[t] != ':' || t == 0) {
      const std::size_t at = pos + (t < piece.size() ? t : piece.size());
      const std::string found = t < piece.size() ? show_char(piece[t]) : std::string("the end of the field");
      return make_error(UriErrc::bad_token, 0, at, found + " where a field \"<letters>:<value>\" was expected");
    }
    const std::string_view token = piece.substr(0, t);
    const std::string_view value = piece.substr(t + 1);
    const std::size_t vpos = pos + t + 1;
    const char f = token.size() == 1 ? token[0] : 0;
    const bool known = f == 'C' || f == 'M' || f == 'I' || f == 'V' || f == 'B' || f == 'H' || f == 'K';

    if (end == std::string_view::npos) {
      if (f == 'K')
        return make_error(UriErrc::missing_terminator, 'K', uri.size(), "the public key is not followed by \";;\"");
      return make_error(UriErrc::missing_key, 0, pos, "the URI ends without a K: (public key) field");
    }
    if (known) {
      // Strict: a repeated field is refused. hostapd takes the first, other parsers the last;
      // an attacker-made label could then mean different things to different readers.
      if (seen[static_cast<unsigned char>(f)])
        return make_error(UriErrc::duplicate_field, f, pos, std::string(1, f) + ": appears more than once");
      seen[static_cast<unsigned char>(f)] = true;
    }
    std::optional<FieldError> err;
    switch (f) {
      case 'C': err = parse_channels(value, out.fields.channels); break;
      case 'M': {
        Mac mac{};
        err = parse_mac_field(value, mac);
        if (!err) out.fields.mac = mac;
        break;
      }
      case 'I':
        err = check_printable(value, UriErrc::bad_info, "I:");
        if (!err) out.fields.info = std::string(value);
        break;
      case 'V': {
        int v = 0;
        err = parse_version(value, v);
        if (!err) out.fields.version = v;
        break;
      }
      case 'B': {
        std::vector<Curve> curves;
        err = parse_supported_curves(value, curves);
        if (!err) out.fields.supported_curves = std::move(curves);
        break;
      }
      case 'H':
        err = check_host(value);
        if (!err) out.fields.host = std::string(value);
        break;
      case 'K': err = decode_key(value, out.key_der, out.curve); break;
      default:
        // Leniency (as hostapd, and as the grammar's extension rule allows): an unknown token
        // is kept in unknown_fields and otherwise ignored, if its value is printable.
        err = check_printable(value, UriErrc::bad_token, "an extension field");
        if (!err) out.unknown_fields.emplace_back(std::string(token), std::string(value));
        break;
    }
    if (err) return make_error(err->code, f, vpos + err->offset, err->why);

    pos = end + 1;
    if (f != 'K') continue;
    // K: is last (§5.2.1), then ";;".
    if (pos == uri.size()) {
      // Leniency (as hostapd): a single ';' after K: is accepted; `terminated` says so.
      out.terminated = false;
    } else if (uri[pos] != ';') {
      return make_error(UriErrc::field_after_key, 0, pos, "a field follows K:; the public key must be the last field");
    } else if (pos + 1 != uri.size()) {
      return make_error(UriErrc::trailing_data, 0, pos + 1, "text after the closing \";;\"");
    }
    break;
  }
  out.freqs.reserve(out.fields.channels.size());
  for (const auto& ch : out.fields.channels) out.freqs.push_back(channel_frequency(ch.opclass, ch.channel));
  out.pkhash = digest({}, out.key_der);
  out.chirp_hash = digest("chirp", out.key_der);
  return out;
}

BootstrapUri parse_uri(std::string_view uri) {
  auto r = try_parse_uri(uri);
  if (auto* e = std::get_if<UriError>(&r)) throw Error(Errc::parse_error, e->message);
  return std::get<BootstrapUri>(std::move(r));
}

// --- generation ---------------------------------------------------------------------------

std::string format_channel_list(const std::vector<Channel>& channels) {
  std::string out;
  std::optional<unsigned> current;
  for (const auto& ch : channels) {
    if (!out.empty()) out.push_back(',');
    if (current != ch.opclass) {
      out += std::to_string(ch.opclass);
      out.push_back('/');
      current = ch.opclass;
    }
    out += std::to_string(ch.channel);
  }
  return out;
}

std::vector<Channel> parse_channel_list(std::string_view text) {
  std::vector<Channel> out;
  if (auto e = parse_channels(text, out)) {
    throw Error(Errc::invalid_argument, "channel list \"" + std::string(text) + "\" (offset " +
                                            std::to_string(e->offset) + "): " + e->why +
                                            "; expected e.g. 81/1,6,11,115/36");
  }
  return out;
}

std::optional<Mac> parse_mac(std::string_view text) noexcept {
  std::string digits;
  if (text.size() == 17) {
    const char sep = text[2];
    if (sep != ':' && sep != '-') return std::nullopt;
    for (std::size_t i = 0; i < text.size(); ++i) {
      if (i % 3 == 2) {
        if (text[i] != sep) return std::nullopt;
      } else {
        digits.push_back(text[i]);
      }
    }
  } else {
    digits = text;
  }
  Mac mac{};
  if (parse_mac_field(digits, mac)) return std::nullopt;
  return mac;
}

std::string format_mac(const Mac& mac) { return hex_encode(mac); }

std::string generate_uri(const PublicKey& key, const UriFields& f) {
  const auto bad = [](const std::string& what) { return Error(Errc::invalid_argument, "DPP URI: " + what); };
  std::string uri(kPrefix);
  if (!f.channels.empty()) {
    if (f.channels.size() > kMaxChannels)
      throw bad(std::to_string(f.channels.size()) + " channels; a channel list holds at most " +
                std::to_string(kMaxChannels) + " (hostapd drops a longer list)");
    for (const auto& ch : f.channels) {
      if (!channel_frequency(ch.opclass, ch.channel))
        throw bad("channel " + std::to_string(ch.channel) + " is not in global operating class " +
                  std::to_string(ch.opclass) + " (IEEE 802.11 Annex E); e.g. 81/1-13, 115/36-48, 131/1-233");
    }
    uri += "C:" + format_channel_list(f.channels) + ";";
  }
  if (f.mac) uri += "M:" + format_mac(*f.mac) + ";";
  if (f.info) {
    if (auto e = check_printable(*f.info, UriErrc::bad_info, "I:"))
      throw bad("information at offset " + std::to_string(e->offset) + ": " + e->why);
    uri += "I:" + *f.info + ";";
  }
  if (f.version) {
    if (*f.version != 2 && *f.version != 3)
      throw bad("version " + std::to_string(*f.version) + " is not supported; use 2 or 3");
    uri += "V:" + std::to_string(*f.version) + ";";
  }
  if (f.supported_curves) {
    unsigned bits = 0;
    for (const Curve c : *f.supported_curves) bits |= 1U << static_cast<unsigned>(c);
    if (bits == 0) throw bad("the supported-curves list (B:) is empty; name at least one curve");
    // hostapd's nibble order: low nibble first, the high nibble only when set.
    constexpr char kHex[] = "0123456789abcdef";
    uri += "B:";
    uri.push_back(kHex[bits & 0xf]);
    if ((bits & 0xf0) != 0) uri.push_back(kHex[bits >> 4]);
    uri += ";";
  }
  if (f.host) {
    if (auto e = check_host(*f.host)) throw bad("host at offset " + std::to_string(e->offset) + ": " + e->why);
    uri += "H:" + *f.host + ";";
  }
  uri += "K:" + base64_encode(key.spki_der()) + ";;";
  return uri;
}

}  // namespace station::pki::dpp
