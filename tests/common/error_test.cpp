#include <gtest/gtest.h>

#include <cerrno>

#include "common/error.hpp"
#include "common/secure.hpp"

namespace station {
namespace {

TEST(Error, CarriesCodeMessageAndNativeCode) {
  const Error e(Errc::hsm_pin_incorrect, "token 'x': PIN incorrect", 0xa0);
  EXPECT_EQ(e.code(), Errc::hsm_pin_incorrect);
  EXPECT_EQ(e.native(), 0xa0);
  EXPECT_STREQ(e.what(), "token 'x': PIN incorrect");
  EXPECT_EQ(e.error_code(), Errc::hsm_pin_incorrect);
  EXPECT_EQ(e.error_code().category().name(), std::string("station"));
}

TEST(Error, ThrowErrnoMapsCommonCauses) {
  errno = ENOENT;
  try {
    throw_errno("open /nope");
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::not_found);
    EXPECT_EQ(e.native(), ENOENT);
    EXPECT_NE(std::string(e.what()).find("/nope"), std::string::npos);
  }
}

TEST(SecretBytes, MoveLeavesSourceEmpty) {
  SecretBytes a(std::vector<std::uint8_t>{1, 2, 3});
  SecretBytes b(std::move(a));
  EXPECT_EQ(b.size(), 3u);
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): the contract under test
  b.wipe();
  EXPECT_TRUE(b.empty());
}

}  // namespace
}  // namespace station
