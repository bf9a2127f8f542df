// A minimal DER writer (X.690 §8, §10) for the parts of certificates and CRLs the station
// encodes itself: fast, allocation-light, and only what X.509 needs.
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <string_view>

#include "common/bytes.hpp"

namespace station::pki::der {

enum Tag : std::uint8_t {
  kBoolean = 0x01, kInteger = 0x02, kBitString = 0x03, kOctetString = 0x04, kNull = 0x05,
  kOid = 0x06, kUtf8String = 0x0c, kPrintableString = 0x13, kIa5String = 0x16, kUtcTime = 0x17,
  kGeneralizedTime = 0x18, kSequence = 0x30, kSet = 0x31,
};
constexpr std::uint8_t context(unsigned n, bool constructed) {
  return static_cast<std::uint8_t>(0x80 | (constructed ? 0x20 : 0) | n);
}

void append_length(Bytes& out, std::size_t len);
void append_tlv(Bytes& out, std::uint8_t tag, ByteView content);
Bytes tlv(std::uint8_t tag, ByteView content);
Bytes seq(std::initializer_list<ByteView> parts);
Bytes concat(std::initializer_list<ByteView> parts);
// INTEGER from unsigned big-endian magnitude (leading zeros stripped, 0x00 added when the
// top bit is set, so the value stays positive).
Bytes integer_unsigned(ByteView magnitude);
Bytes integer_small(long v);
// UTCTime for years 1950-2049, GeneralizedTime otherwise (RFC 5280 §4.1.2.5).
Bytes time(std::chrono::sys_seconds t);
Bytes bit_string(ByteView bits, unsigned unused_bits = 0);
Bytes oid(std::string_view dotted);  // "2.5.29.19"

// Reads one TLV at `pos`; returns the content span and advances pos past it.
// Throws Error(Errc::parse_error) on malformed input.
ByteView read_tlv(ByteView in, std::size_t& pos, std::uint8_t expected_tag);

}  // namespace station::pki::der
