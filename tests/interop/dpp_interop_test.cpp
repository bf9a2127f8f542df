// The station's DPP URIs against Debian's wpa_supplicant (hostapd's DPP code, which phones
// and Linux devices run): it must accept and read them the same way, generate the same URI
// for the same key, and the station must read wpa_supplicant's URIs the same way.
#include <gtest/gtest.h>
#include <openssl/x509.h>

#include <signal.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/bytes.hpp"
#include "common/secure.hpp"
#include "pki/dpp.hpp"
#include "support.hpp"
#include "wpas_harness.hpp"

namespace station::pki::dpp {
namespace {

using test::interop::BootstrapInfo;

std::string colon_mac(const std::optional<Mac>& mac) {
  if (!mac) return "00:00:00:00:00:00";
  const std::string h = format_mac(*mac);
  std::string out;
  for (std::size_t i = 0; i < h.size(); i += 2) {
    if (!out.empty()) out.push_back(':');
    out += h.substr(i, 2);
  }
  return out;
}

std::string curve_label(const std::string& openssl_name) {
  const auto c = curve_from_name(openssl_name);
  return c ? std::string(curve_name(*c)) : "unknown curve " + openssl_name;
}

// What wpa_supplicant must report for a URI the station parsed.
void expect_same_reading(const BootstrapUri& u, const BootstrapInfo& bi, const std::string& uri) {
  SCOPED_TRACE(uri);
  EXPECT_EQ(bi.type, "QRCODE");
  EXPECT_EQ(bi.mac_addr, colon_mac(u.fields.mac));
  EXPECT_EQ(bi.info, u.fields.info.value_or(""));
  unsigned known = 0;
  std::optional<unsigned> only;
  for (const auto& f : u.freqs) {
    if (!f) continue;
    ++known;
    only = f;
  }
  EXPECT_EQ(bi.num_freq, known);
  EXPECT_EQ(bi.use_freq, known == 1 ? *only : 0u);
  EXPECT_EQ(curve_label(bi.curve), curve_name(u.curve));
  EXPECT_EQ(bi.pkhash, hex_encode(u.pkhash));
  EXPECT_EQ(bi.version, u.fields.version.value_or(0));
}

const std::vector<std::vector<Channel>> kChannelLists = {
    {{81, 6}},                                  // one channel: use_freq
    {{81, 1}, {81, 6}, {81, 11}, {115, 36}},    // the example
    {{131, 5}},                                 // 6 GHz
    {{83, 1}, {118, 52}, {125, 165}, {136, 2}},
};

TEST(WpaSupplicantReadsStationUris, OnEveryCurveWithEveryFieldCombination) {
  STATION_START_WPAS_OR_SKIP(wpas);
  int checked = 0;
  for (const Curve curve : kAllCurves) {
    const auto key = KeyPair::generate(curve);
    // Bits: C, M, I, B+H; the version alternates between 2 and 3.
    for (unsigned mask = 0; mask < 16; ++mask) {
      UriFields f;
      if (mask & 1) f.channels = kChannelLists[(mask / 2 + static_cast<unsigned>(curve)) % kChannelLists.size()];
      if (mask & 2) f.mac = Mac{0x2c, 0xcf, 0x67, 0x15, 0x88, static_cast<std::uint8_t>(mask)};
      if (mask & 4) f.info = "SN-" + std::to_string(mask) + " line 3: ~!@#$%^&*()_+{}|:\"<>?";
      if (mask & 8) {
        f.supported_curves = std::vector<Curve>{Curve::p256, curve};
        f.host = "192.0.2.1";
      }
      f.version = (mask + static_cast<unsigned>(curve)) % 2 == 0 ? 2 : 3;
      const auto uri = generate_uri(key.public_key(), f);
      const auto info = wpas->read_uri(uri);
      ASSERT_TRUE(info.has_value()) << "dpp_qr_code refused " << uri;
      expect_same_reading(parse_uri(uri), *info, uri);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 96);
}

TEST(WpaSupplicantReadsStationUris, FromADeviceGeneratedUncompressedKey) {
  STATION_START_WPAS_OR_SKIP(wpas);
  // K: as a device might write it: uncompressed point. pkhash is over the bytes as given.
  const auto key = KeyPair::generate(Curve::p521);
  unsigned char* raw = nullptr;
  const int len = ::i2d_PUBKEY(key.evp(), &raw);
  ASSERT_GT(len, 0);
  const Bytes der(raw, raw + len);
  ::OPENSSL_free(raw);
  const std::string uri = "DPP:C:81/1;V:2;K:" + base64_encode(der) + ";;";
  const auto id = wpas->qr_code(uri);
  ASSERT_TRUE(id.has_value());
  expect_same_reading(parse_uri(uri), wpas->bootstrap_info(*id), uri);
}

TEST(WpaSupplicantReadsStationUris, CountsOnlyChannelsWithAKnownFrequency) {
  STATION_START_WPAS_OR_SKIP(wpas);
  const auto key = KeyPair::generate();
  const std::string k = base64_encode(key.public_key().spki_der());
  for (const std::string& c : std::vector<std::string>{"81/14,115/36", "82/1,81/1,200/7", "81/14"}) {
    const std::string uri = "DPP:C:" + c + ";K:" + k + ";;";
    const auto id = wpas->qr_code(uri);
    ASSERT_TRUE(id.has_value()) << uri;
    expect_same_reading(parse_uri(uri), wpas->bootstrap_info(*id), uri);
  }
}

TEST(WpaSupplicantReadsStationUris, DiffersOnlyWhereDocumentedForChannelsOutsideAnnexE) {
  // docs/dpp.md: hostapd 2.10 range-checks channels (115/37 gets 5185 MHz) and does not know
  // channel 144 in class 121; the station follows Annex E's channel sets. Pinned here so the
  // documentation stays true.
  STATION_START_WPAS_OR_SKIP(wpas);
  const auto key = KeyPair::generate();
  const std::string k = base64_encode(key.public_key().spki_der());
  const auto id1 = wpas->qr_code("DPP:C:115/37;K:" + k + ";;");
  ASSERT_TRUE(id1);
  EXPECT_EQ(wpas->bootstrap_info(*id1).use_freq, 5185u);
  EXPECT_FALSE(parse_uri("DPP:C:115/37;K:" + k + ";;").freqs[0].has_value());
  const auto id2 = wpas->qr_code("DPP:C:121/144;K:" + k + ";;");
  ASSERT_TRUE(id2);
  EXPECT_EQ(wpas->bootstrap_info(*id2).num_freq, 0u);
  EXPECT_EQ(parse_uri("DPP:C:121/144;K:" + k + ";;").freqs[0], 5720u);
}

TEST(WpaSupplicantReadsStationUris, AcceptsTheLeniencyCasesTheStationAlsoAccepts) {
  STATION_START_WPAS_OR_SKIP(wpas);
  const auto key = KeyPair::generate();
  const std::string k = base64_encode(key.public_key().spki_der());
  for (const std::string& uri : std::vector<std::string>{"DPP:V:2;K:" + k + ";",                     // single ';'
                                "DPP:Ext:value;M:2CCF67158817;K:" + k + ";;",  // unknown token, uppercase MAC
                                "DPP:I:x;C:81/1;V:3;K:" + k + ";;"}) {       // any order before K:
    const auto id = wpas->qr_code(uri);
    ASSERT_TRUE(id.has_value()) << uri;
    expect_same_reading(parse_uri(uri), wpas->bootstrap_info(*id), uri);
  }
}

TEST(WpaSupplicantGeneratesTheSameUri, ForTheSameKeyChannelsMacAndInfo) {
  STATION_START_WPAS_OR_SKIP(wpas);
  struct Case {
    std::vector<Channel> channels;
    std::optional<Mac> mac;
    std::optional<std::string> info;
  };
  const std::vector<Case> cases = {
      {{}, std::nullopt, std::nullopt},
      {{{81, 1}}, Mac{0x2c, 0xcf, 0x67, 0x15, 0x88, 0x17}, std::nullopt},
      {{{81, 1}, {81, 6}, {81, 11}, {115, 36}}, std::nullopt, "SN-000042"},
      {{{131, 5}, {131, 37}}, Mac{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}, "batch7/unit:12"},
  };
  for (const Curve curve : kAllCurves) {
    const auto key = KeyPair::generate(curve);
    for (const auto& c : cases) {
      UriFields f;
      f.channels = c.channels;
      f.mac = c.mac;
      f.info = c.info;
      f.version = 2;
      const auto ours = generate_uri(key.public_key(), f);

      std::string params = "type=qrcode";
      if (!c.channels.empty()) params += " chan=" + format_channel_list(c.channels);
      if (c.mac) params += " mac=" + format_mac(*c.mac);
      if (c.info) params += " info=" + *c.info;
      const SecretString command(params + " key=" + hex_encode(key.ec_private_key_der().bytes()));
      int id = 0;
      try {
        id = wpas->bootstrap_gen(command.str());
      } catch (const std::exception&) {
        FAIL() << "dpp_bootstrap_gen " << params << " key=<" << curve_name(curve) << " private key> failed";
      }
      EXPECT_EQ(wpas->bootstrap_get_uri(id), ours) << curve_name(curve) << " " << params;
      EXPECT_EQ(wpas->bootstrap_info(id).pkhash, hex_encode(key.public_key().key_hash()));
      wpas->bootstrap_remove(id);
    }
  }
}

TEST(StationReadsWpaSupplicantUris, ToTheSameFieldsOnEveryCurve) {
  STATION_START_WPAS_OR_SKIP(wpas);
  for (const Curve curve : kAllCurves) {
    const std::string params = "type=qrcode curve=" + std::string(curve_openssl_name(curve)) +
                               " chan=81/1,6,11,115/36,131/1 mac=2ccf67158817 info=SN-0001";
    const int id = wpas->bootstrap_gen(params);
    const auto uri = wpas->bootstrap_get_uri(id);
    const auto bi = wpas->bootstrap_info(id);
    const auto u = parse_uri(uri);
    SCOPED_TRACE(uri);
    EXPECT_EQ(u.curve, curve);
    EXPECT_EQ(curve_label(bi.curve), curve_name(curve));
    EXPECT_EQ(format_mac(*u.fields.mac), "2ccf67158817");
    EXPECT_EQ(u.fields.channels, (std::vector<Channel>{{81, 1}, {81, 6}, {81, 11}, {115, 36}, {131, 1}}));
    EXPECT_EQ(u.freqs, (std::vector<std::optional<unsigned>>{2412, 2437, 2462, 5180, 5955}));
    EXPECT_EQ(u.fields.info, "SN-0001");
    EXPECT_EQ(u.fields.version, 2);
    EXPECT_EQ(hex_encode(u.pkhash), bi.pkhash);
    EXPECT_TRUE(u.unknown_fields.empty());
    // And the station writes the same URI back for that public key.
    EXPECT_EQ(generate_uri(u.key(), u.fields), uri);
    wpas->bootstrap_remove(id);
  }
  // A bare one: no optional fields but V:.
  const int id = wpas->bootstrap_gen("type=qrcode");
  const auto u = parse_uri(wpas->bootstrap_get_uri(id));
  EXPECT_FALSE(u.fields.mac);
  EXPECT_TRUE(u.fields.channels.empty());
  EXPECT_EQ(hex_encode(u.pkhash), wpas->bootstrap_info(id).pkhash);
}

// The skip policy itself: this test binary run again with a daemon that cannot start.
TEST(InteropHarness, SkipsWhenItCannotRunButFailsUnderStationRequireInterop) {
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  const std::vector<std::string> argv{self, "--gtest_filter=WpaSupplicantReadsStationUris.CountsOnlyChannelsWithAKnownFrequency"};
  const auto skipped = test::run(argv, {{"STATION_WPA_SUPPLICANT", "/nonexistent/wpa_supplicant"},
                                        {"STATION_REQUIRE_INTEROP", ""}});
  EXPECT_EQ(skipped.exit_code, 0) << skipped.out;
  EXPECT_NE(skipped.out.find("[  SKIPPED ]"), std::string::npos) << skipped.out;
  EXPECT_NE(skipped.out.find("/nonexistent/wpa_supplicant is not an executable"), std::string::npos) << skipped.out;
  const auto failed = test::run(argv, {{"STATION_WPA_SUPPLICANT", "/nonexistent/wpa_supplicant"},
                                       {"STATION_REQUIRE_INTEROP", "1"}});
  EXPECT_NE(failed.exit_code, 0) << failed.out;
  EXPECT_NE(failed.out.find("cannot run and STATION_REQUIRE_INTEROP=1"), std::string::npos) << failed.out;
}

TEST(InteropHarness, LeavesNoNamespaceOrDaemonBehind) {
  std::string netns;
  pid_t pid = 0;
  {
    STATION_START_WPAS_OR_SKIP(wpas);
    netns = wpas->netns();
    EXPECT_EQ(wpas->request("PING"), "PONG");
    pid = wpas->pid();
  }
  EXPECT_NE(::kill(pid, 0), 0) << "wpa_supplicant " << pid << " still runs";
  if (!netns.empty()) {
    EXPECT_FALSE(std::filesystem::exists("/run/netns/" + netns)) << netns;
  }
}

}  // namespace
}  // namespace station::pki::dpp
