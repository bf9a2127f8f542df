#include <gtest/gtest.h>

#include "common/bytes.hpp"

namespace station {
namespace {

TEST(Hex, EncodesLowercaseAndRoundTrips) {
  const Bytes b{0x00, 0x2c, 0xcf, 0xff};
  EXPECT_EQ(hex_encode(b), "002ccfff");
  EXPECT_EQ(hex_decode("002CCFff"), b);
}

TEST(Hex, RejectsOddLengthAndNonHex) {
  EXPECT_FALSE(hex_decode("abc").has_value());
  EXPECT_FALSE(hex_decode("zz").has_value());
}

TEST(Base64, MatchesRfc4648TestVectors) {
  // RFC 4648 §10
  EXPECT_EQ(base64_encode(as_bytes("")), "");
  EXPECT_EQ(base64_encode(as_bytes("f")), "Zg==");
  EXPECT_EQ(base64_encode(as_bytes("fo")), "Zm8=");
  EXPECT_EQ(base64_encode(as_bytes("foo")), "Zm9v");
  EXPECT_EQ(base64_encode(as_bytes("foobar")), "Zm9vYmFy");
  EXPECT_EQ(to_string(*base64_decode("Zm9vYmE=")), "fooba");
  EXPECT_EQ(to_string(*base64_decode("Zm9vYg==")), "foob");
}

TEST(Base64, RejectsMissingPaddingBadCharactersAndNonCanonicalBits) {
  EXPECT_FALSE(base64_decode("Zm9vYg").has_value());
  EXPECT_FALSE(base64_decode("Zm9v*mE=").has_value());
  EXPECT_FALSE(base64_decode("Zh==").has_value());   // low bits set in padding
  EXPECT_FALSE(base64_decode("Z===").has_value());
  EXPECT_FALSE(base64_decode("Zg==Zg==").has_value());  // padding mid-stream
}

TEST(Sha256, MatchesKnownDigest) {
  EXPECT_EQ(sha256_hex(as_bytes("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace station
