#include "internal/der.hpp"

#include <ctime>

#include <fmt/format.h>

#include "common/error.hpp"

namespace station::pki::der {

void append_length(Bytes& out, std::size_t len) {
  if (len < 0x80) {
    out.push_back(static_cast<std::uint8_t>(len));
    return;
  }
  std::uint8_t buf[sizeof(std::size_t)];
  int n = 0;
  for (std::size_t v = len; v != 0; v >>= 8) buf[n++] = static_cast<std::uint8_t>(v & 0xff);
  out.push_back(static_cast<std::uint8_t>(0x80 | n));
  while (n > 0) out.push_back(buf[--n]);
}

void append_tlv(Bytes& out, std::uint8_t tag, ByteView content) {
  out.push_back(tag);
  append_length(out, content.size());
  out.insert(out.end(), content.begin(), content.end());
}

Bytes tlv(std::uint8_t tag, ByteView content) {
  Bytes out;
  out.reserve(content.size() + 6);
  append_tlv(out, tag, content);
  return out;
}

Bytes concat(std::initializer_list<ByteView> parts) {
  std::size_t n = 0;
  for (const auto& p : parts) n += p.size();
  Bytes out;
  out.reserve(n);
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

Bytes seq(std::initializer_list<ByteView> parts) { return tlv(kSequence, concat(parts)); }

Bytes integer_unsigned(ByteView magnitude) {
  std::size_t i = 0;
  while (i + 1 < magnitude.size() && magnitude[i] == 0) ++i;
  Bytes content;
  if (magnitude.empty()) {
    content.push_back(0);
  } else {
    if ((magnitude[i] & 0x80) != 0) content.push_back(0);
    content.insert(content.end(), magnitude.begin() + static_cast<std::ptrdiff_t>(i), magnitude.end());
  }
  return tlv(kInteger, content);
}

Bytes integer_small(long v) {
  Bytes content;
  bool started = false;
  for (int shift = 56; shift >= 0; shift -= 8) {
    const auto b = static_cast<std::uint8_t>((static_cast<unsigned long>(v) >> shift) & 0xff);
    if (!started && b == 0 && shift != 0) continue;
    if (!started && (b & 0x80) != 0) content.push_back(0);
    started = true;
    content.push_back(b);
  }
  return tlv(kInteger, content);
}

Bytes time(std::chrono::sys_seconds t) {
  const std::time_t tt = static_cast<std::time_t>(t.time_since_epoch().count());
  std::tm tm{};
  ::gmtime_r(&tt, &tm);
  const int year = tm.tm_year + 1900;
  std::string s;
  if (year >= 1950 && year < 2050) {
    s = fmt::format("{:02}{:02}{:02}{:02}{:02}{:02}Z", year % 100, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return tlv(kUtcTime, as_bytes(s));
  }
  s = fmt::format("{:04}{:02}{:02}{:02}{:02}{:02}Z", year, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return tlv(kGeneralizedTime, as_bytes(s));
}

Bytes bit_string(ByteView bits, unsigned unused_bits) {
  Bytes content;
  content.reserve(bits.size() + 1);
  content.push_back(static_cast<std::uint8_t>(unused_bits));
  content.insert(content.end(), bits.begin(), bits.end());
  return tlv(kBitString, content);
}

Bytes oid(std::string_view dotted) {
  std::vector<unsigned long> arcs;
  unsigned long cur = 0;
  bool have = false;
  for (const char c : dotted) {
    if (c == '.') {
      if (!have) throw Error(Errc::invalid_argument, fmt::format("bad OID '{}'", dotted));
      arcs.push_back(cur);
      cur = 0;
      have = false;
    } else if (c >= '0' && c <= '9') {
      cur = cur * 10 + static_cast<unsigned long>(c - '0');
      have = true;
    } else {
      throw Error(Errc::invalid_argument, fmt::format("bad OID '{}'", dotted));
    }
  }
  if (!have) throw Error(Errc::invalid_argument, fmt::format("bad OID '{}'", dotted));
  arcs.push_back(cur);
  if (arcs.size() < 2 || arcs[0] > 2) throw Error(Errc::invalid_argument, fmt::format("bad OID '{}'", dotted));
  Bytes content;
  auto put = [&](unsigned long v) {
    std::uint8_t tmp[10];
    int n = 0;
    do {
      tmp[n++] = static_cast<std::uint8_t>(v & 0x7f);
      v >>= 7;
    } while (v != 0);
    while (n > 0) {
      --n;
      content.push_back(static_cast<std::uint8_t>(tmp[n] | (n > 0 ? 0x80 : 0)));
    }
  };
  put(arcs[0] * 40 + arcs[1]);
  for (std::size_t i = 2; i < arcs.size(); ++i) put(arcs[i]);
  return tlv(kOid, content);
}

ByteView read_tlv(ByteView in, std::size_t& pos, std::uint8_t expected_tag) {
  if (pos + 2 > in.size() || in[pos] != expected_tag)
    throw Error(Errc::parse_error, fmt::format("DER: expected tag 0x{:02x} at offset {}", expected_tag, pos));
  std::size_t p = pos + 1;
  std::size_t len = in[p++];
  if ((len & 0x80) != 0) {
    const std::size_t n = len & 0x7f;
    if (n == 0 || n > 4 || p + n > in.size()) throw Error(Errc::parse_error, "DER: bad length");
    len = 0;
    for (std::size_t i = 0; i < n; ++i) len = (len << 8) | in[p++];
  }
  if (p + len > in.size()) throw Error(Errc::parse_error, "DER: length past the end");
  pos = p + len;
  return in.subspan(p, len);
}

}  // namespace station::pki::der
