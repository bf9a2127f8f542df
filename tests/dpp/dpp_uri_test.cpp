// DPP URI generation and parsing. Reference values come from outside the station: the URI
// and pkhash of seed 004 as a Raspberry Pi's wpa_supplicant printed them, and keys made by
// the openssl command line.
#include <gtest/gtest.h>
#include <openssl/x509.h>

#include "common/bytes.hpp"
#include "pki/dpp.hpp"

namespace station::pki::dpp {
namespace {

// Seed 004: `dpp_bootstrap_gen type=qrcode mac=2ccf67158817 chan=81/1` on wpa_supplicant.
constexpr std::string_view kPiKey = "MDkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDIgACH/bVKOIqu6MdvjapELv4z/wiR72RLKVLzznKbEymx3c=";
constexpr std::string_view kPiUri =
    "DPP:C:81/1;M:2ccf67158817;V:2;K:MDkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDIgACH/bVKOIqu6MdvjapELv4z/wiR72RLKVLzznKbEymx3c=;;";
// What Debian's wpa_supplicant 2.10 reports as pkhash for that URI (dpp_bootstrap_info).
constexpr std::string_view kPiPkhash = "b1779e6811b03cab9091a367b10db6333ced150048832d3a8563dd34f32c6729";

// Public keys made with the openssl command line.
constexpr std::string_view kRsaKey =
    "MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAMYylAuC2Loit4KaMRxsC0Q8U/VN3A89Nc0s3/s/U/Qv+dvizvH3ySS+zk6N7qDi74apCt1ibPTcECnMBwJuKLECAwEAAQ==";
// `openssl ecparam -name prime256v1 -genkey -param_enc explicit`: P-256, but spelled out.
constexpr std::string_view kExplicitP256Key =
    "MIIBSzCCAQMGByqGSM49AgEwgfcCAQEwLAYHKoZIzj0BAQIhAP////8AAAABAAAAAAAAAAAAAAAA////////////////MFsEIP////8AAAABAAAAAAAAAAAAAAAA///////////////8BCBaxjXYqjqT57PrvVV2mIa8ZR0GsMxTsPY7zjw+J9JgSwMVAMSdNgiG5wSTamZ44ROdJreBn36QBEEEaxfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpZP40Li/hp/m47n60p8D54WK84zV2sxXs7LtkBoN79R9QIhAP////8AAAAA//////////+85vqtpxeehPO5ysL8YyVRAgEBA0IABJVU7Zzd7unVeuuQQt6QA1dKKk9uUwHhxAOsZpa3VRmdmxztCH+gi8VxnIhxZFFkyfMprCNwktnRnTACcvvRgHo=";
constexpr std::string_view kSecp256k1Key = "MDYwEAYHKoZIzj0CAQYFK4EEAAoDIgADgJzqTWJ9RQCsx+23cugPN0SH9zxxJ1E9uv7QY3ZPcVY=";

std::string with_key(std::string_view fields, std::string_view key = kPiKey) {
  return "DPP:" + std::string(fields) + "K:" + std::string(key) + ";;";
}

UriError error_of(std::string_view uri) {
  auto r = try_parse_uri(uri);
  if (std::holds_alternative<BootstrapUri>(r)) {
    ADD_FAILURE() << "accepted: " << uri;
    return UriError{UriErrc::bad_prefix, 0, 0, ""};
  }
  return std::get<UriError>(r);
}

PublicKey pi_key() { return PublicKey::from_spki_der(*base64_decode(kPiKey)); }

TEST(DppUriParse, ReadsTheRaspberryPiUriOfSeed004) {
  const auto u = parse_uri(kPiUri);
  EXPECT_EQ(u.curve, Curve::p256);
  ASSERT_TRUE(u.fields.mac);
  EXPECT_EQ(format_mac(*u.fields.mac), "2ccf67158817");
  ASSERT_EQ(u.fields.channels.size(), 1u);
  EXPECT_EQ(u.fields.channels[0], (Channel{81, 1}));
  EXPECT_EQ(u.freqs[0], 2412u);
  EXPECT_EQ(u.fields.version, 2);
  EXPECT_FALSE(u.fields.info);
  EXPECT_FALSE(u.fields.host);
  EXPECT_FALSE(u.fields.supported_curves);
  EXPECT_EQ(hex_encode(u.pkhash), kPiPkhash);
  Bytes chirp = Bytes{'c', 'h', 'i', 'r', 'p'};
  const Bytes der = *base64_decode(kPiKey);
  chirp.insert(chirp.end(), der.begin(), der.end());
  EXPECT_EQ(Bytes(u.chirp_hash.begin(), u.chirp_hash.end()), sha256(chirp));
  EXPECT_TRUE(u.terminated);
}

TEST(DppUriGenerate, ReproducesTheRaspberryPiUri) {
  UriFields f;
  f.channels = {{81, 1}};
  f.mac = parse_mac("2ccf67158817");
  EXPECT_EQ(generate_uri(pi_key(), f), kPiUri);
}

TEST(DppUriGenerate, WritesFieldsInHostapdOrder) {
  UriFields f;
  f.channels = {{81, 1}, {81, 6}, {81, 11}, {115, 36}};
  f.mac = parse_mac("2c:cf:67:15:88:17");
  f.info = "SN-0001 line 3";
  f.version = 3;
  f.supported_curves = std::vector<Curve>{Curve::bp512, Curve::p256};
  f.host = "192.0.2.7";
  EXPECT_EQ(generate_uri(pi_key(), f),
            with_key("C:81/1,6,11,115/36;M:2ccf67158817;I:SN-0001 line 3;V:3;B:12;H:192.0.2.7;"));
  f = UriFields{};
  f.version.reset();
  EXPECT_EQ(generate_uri(pi_key(), f), with_key(""));
  f.supported_curves = std::vector<Curve>{Curve::p256, Curve::bp256};
  EXPECT_EQ(generate_uri(pi_key(), f), with_key("B:9;"));
}

TEST(DppUriGenerate, RefusesValuesOutsideTheGrammar) {
  const auto key = pi_key();
  const auto refuses = [&](const UriFields& f, std::string_view needle) {
    try {
      generate_uri(key, f);
      ADD_FAILURE() << "generated despite " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::invalid_argument);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  UriFields f;
  f.channels = {{81, 14}};
  refuses(f, "channel 14 is not in global operating class 81");
  f.channels.assign(31, Channel{81, 1});
  refuses(f, "at most 30");
  f = UriFields{};
  f.info = "a;b";
  refuses(f, "';'");
  f.info = "tab\there";
  refuses(f, "0x09");
  f = UriFields{};
  f.version = 4;
  refuses(f, "version 4");
  f = UriFields{};
  f.supported_curves = std::vector<Curve>{};
  refuses(f, "B:");
  f = UriFields{};
  f.host = "bad/host";
  refuses(f, "'/'");
  f.host = std::string(256, 'a');
  refuses(f, "255");
}

class DppUriRoundTrip : public ::testing::TestWithParam<Curve> {};

TEST_P(DppUriRoundTrip, ParseOfGenerateGivesTheFieldsBack) {
  const auto key = KeyPair::generate(GetParam());
  UriFields f;
  f.channels = {{81, 1}, {115, 36}, {131, 233}, {81, 13}};
  f.mac = Mac{0x02, 0x00, 0x5e, 0x10, 0x00, 0x01};
  f.info = "~!\"#$%&'()*+,-./0123456789:<=>?@[\\]^_`{|}";
  f.version = 2;
  f.supported_curves = std::vector<Curve>(kAllCurves.begin(), kAllCurves.end());
  f.host = "[2001:db8::1]:8908";
  const auto uri = generate_uri(key.public_key(), f);
  const auto u = parse_uri(uri);
  EXPECT_EQ(u.fields, f);
  EXPECT_EQ(u.curve, GetParam());
  EXPECT_EQ(u.key(), key.public_key());
  EXPECT_EQ(u.key_der, key.public_key().spki_der());
  EXPECT_EQ(Bytes(u.pkhash.begin(), u.pkhash.end()), key.public_key().key_hash());
  EXPECT_EQ(u.freqs, (std::vector<std::optional<unsigned>>{2412, 5180, 7115, 2472}));
}

INSTANTIATE_TEST_SUITE_P(AllCurves, DppUriRoundTrip, ::testing::ValuesIn(kAllCurves),
                         [](const auto& param_info) {
                           std::string n(curve_name(param_info.param));
                           n.erase(std::remove(n.begin(), n.end(), '-'), n.end());
                           return n;
                         });

TEST(DppUriParse, KeepsThePkhashOfTheKeyBytesAsGivenEvenWhenUncompressed) {
  const auto key = KeyPair::generate(Curve::p384);
  // A freshly generated OpenSSL key encodes its point uncompressed: 04 || x || y.
  unsigned char* raw = nullptr;
  const int len = ::i2d_PUBKEY(key.evp(), &raw);
  ASSERT_GT(len, 0);
  const Bytes uncompressed_der(raw, raw + len);
  ::OPENSSL_free(raw);
  ASSERT_NE(uncompressed_der, key.public_key().spki_der());
  const auto u = parse_uri(with_key("V:2;", base64_encode(uncompressed_der)));
  EXPECT_EQ(u.key_der, uncompressed_der);
  EXPECT_EQ(hex_encode(u.pkhash), sha256_hex(uncompressed_der));
  EXPECT_EQ(u.key(), key.public_key());
}

struct Malformed {
  const char* name;
  std::string uri;
  UriErrc code;
  char field;
  std::size_t position;
  const char* needle;
};

// Test names show the case name, not the bytes.
void PrintTo(const Malformed& m, std::ostream* os) { *os << m.name; }

class DppUriMalformed : public ::testing::TestWithParam<Malformed> {};

TEST_P(DppUriMalformed, GivesItsSpecificError) {
  const auto& m = GetParam();
  const auto e = error_of(m.uri);
  EXPECT_EQ(uri_errc_name(e.code), uri_errc_name(m.code)) << e.message;
  EXPECT_EQ(e.field, m.field) << e.message;
  EXPECT_EQ(e.position, m.position) << e.message;
  EXPECT_NE(e.message.find(m.needle), std::string::npos) << e.message;
  try {
    parse_uri(m.uri);
    ADD_FAILURE() << "parse_uri accepted it";
  } catch (const Error& err) {
    EXPECT_EQ(err.code(), Errc::parse_error);
    EXPECT_EQ(err.what(), e.message);
  }
}

// Offsets: "DPP:" is 4 characters, so the first field's value starts at 6.
INSTANTIATE_TEST_SUITE_P(
    Cases, DppUriMalformed,
    ::testing::Values(
        Malformed{"BadPrefix", "DPX:" + with_key("").substr(4), UriErrc::bad_prefix, 0, 2, "starts with \"DPP:\""},
        Malformed{"LowercasePrefix", "dpp:" + with_key("").substr(4), UriErrc::bad_prefix, 0, 0, "DPP:"},
        Malformed{"Empty", "", UriErrc::bad_prefix, 0, 0, "DPP:"},
        Malformed{"MissingKey", "DPP:C:81/1;M:2ccf67158817;;", UriErrc::empty_field, 0, 26, "empty field"},
        Malformed{"NoKeyAtAll", "DPP:C:81/1;", UriErrc::missing_key, 0, 11, "no K:"},
        Malformed{"NoKeyNoSemicolon", "DPP:C:81/1", UriErrc::missing_key, 0, 4, "without a K:"},
        Malformed{"KeyWithoutTerminator", "DPP:K:" + std::string(kPiKey), UriErrc::missing_terminator, 'K', 86,
                  "not followed by \";;\""},
        Malformed{"BadBase64Character", with_key("", "MDkw*wYH"), UriErrc::bad_base64, 'K', 10,
                  "'*' is not a base64 character"},
        Malformed{"Base64WithoutPadding", with_key("", "MDkwEwY"), UriErrc::bad_base64, 'K', 13, "multiple of 4"},
        Malformed{"Base64NotAKey", with_key("", "AAAA"), UriErrc::bad_key, 'K', 6, "SubjectPublicKeyInfo"},
        Malformed{"RsaKey", with_key("", kRsaKey), UriErrc::unsupported_key, 'K', 6, "rsaEncryption"},
        Malformed{"KeyNotOnADppCurve", with_key("", kSecp256k1Key), UriErrc::unsupported_curve, 'K', 6,
                  "not a DPP curve"},
        Malformed{"KeyWithExplicitCurveParameters", with_key("", kExplicitP256Key), UriErrc::unsupported_curve, 'K',
                  6, "explicit or absent curve parameters"},
        // x = 1 has no y on P-256 (openssl pkey refuses it too).
        Malformed{"KeyPointOffTheCurve", with_key("", "MDkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDIgACAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE="),
                  UriErrc::bad_key, 'K', 6, "not a valid point on P-256"},
        Malformed{"MacWithBadDigit", with_key("M:2ccf6715881G;"), UriErrc::bad_mac, 'M', 17, "'G' is not a hex digit"},
        Malformed{"MacTooShort", with_key("M:2ccf671588;"), UriErrc::bad_mac, 'M', 16, "has 10 hex digits"},
        Malformed{"MacWithSeparators", with_key("M:2c:cf:67:15:88:17;"), UriErrc::bad_mac, 'M', 8,
                  "':' is not a hex digit"},
        Malformed{"ChannelLetter", with_key("C:81/x;"), UriErrc::bad_channel_list, 'C', 9, "'x'"},
        Malformed{"ChannelWithoutClass", with_key("C:6,11;"), UriErrc::bad_channel_list, 'C', 6, "class/channel"},
        Malformed{"ChannelFourDigits", with_key("C:81/1000;"), UriErrc::bad_channel_list, 'C', 9, "more than 3 digits"},
        Malformed{"ChannelZero", with_key("C:81/0;"), UriErrc::bad_channel_list, 'C', 9, "outside 1-255"},
        Malformed{"ClassOutOfRange", with_key("C:300/1;"), UriErrc::bad_channel_list, 'C', 6, "outside 1-255"},
        Malformed{"ChannelListTrailingComma", with_key("C:81/1,;"), UriErrc::bad_channel_list, 'C', 11, "ends"},
        Malformed{"ChannelListPastTheLimit",
                  with_key("C:81/1,2,3,4,5,6,7,8,9,10,11,12,13,1,2,3,4,5,6,7,8,9,10,11,12,13,1,2,3,4,5;"),
                  UriErrc::too_many_channels, 'C', 77, "more than 30 channels"},
        Malformed{"InfoWithControlCharacter", with_key("I:SN\x01" "42;"), UriErrc::bad_info, 'I', 8, "byte 0x01"},
        Malformed{"InfoWithNonAscii", with_key("I:caf\xc3\xa9;"), UriErrc::bad_info, 'I', 9, "byte 0xc3"},
        Malformed{"VersionNotANumber", with_key("V:2a;"), UriErrc::bad_version, 'V', 7, "'a'"},
        Malformed{"VersionEmpty", with_key("V:;"), UriErrc::bad_version, 'V', 6, "empty"},
        Malformed{"SupportedCurvesNotHex", with_key("B:xz;"), UriErrc::bad_supported_curves, 'B', 6, "'x'"},
        Malformed{"HostWithSlash", with_key("H:a/b;"), UriErrc::bad_host, 'H', 7, "'/'"},
        Malformed{"DuplicateMac", with_key("M:2ccf67158817;M:2ccf67158818;"), UriErrc::duplicate_field, 'M', 19,
                  "more than once"},
        Malformed{"DuplicateKey", "DPP:K:" + std::string(kPiKey) + ";K:" + std::string(kPiKey) + ";;",
                  UriErrc::field_after_key, 0, 87, "must be the last field"},
        Malformed{"FieldAfterKey", "DPP:K:" + std::string(kPiKey) + ";M:2ccf67158817;;", UriErrc::field_after_key, 0,
                  87, "last field"},
        Malformed{"TextAfterTerminator", with_key("") + "x", UriErrc::trailing_data, 0, 88, "after the closing"},
        Malformed{"EmptyFieldInTheMiddle", with_key("C:81/1;;"), UriErrc::empty_field, 0, 11, "empty field"},
        Malformed{"FieldWithoutColon", with_key("hello;"), UriErrc::bad_token, 0, 9, "<letters>:<value>"},
        Malformed{"TokenWithDigit", with_key("X1:y;"), UriErrc::bad_token, 0, 5, "'1'"},
        Malformed{"ExtensionWithControlCharacter", with_key("X:a\x7f;"), UriErrc::bad_token, 'X', 7,
                  "byte 0x7f"}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(DppUriLeniency, AcceptsASingleSemicolonAfterTheKeyAsHostapdDoes) {
  const auto u = parse_uri("DPP:V:2;K:" + std::string(kPiKey) + ";");
  EXPECT_FALSE(u.terminated);
  EXPECT_EQ(hex_encode(u.pkhash), sha256_hex(*base64_decode(kPiKey)));
}

TEST(DppUriLeniency, KeepsUnknownTokensAndOtherwiseIgnoresThem) {
  const auto u = parse_uri(with_key("C:81/1;Ext:some value;X:;V:2;"));
  ASSERT_EQ(u.unknown_fields.size(), 2u);
  EXPECT_EQ(u.unknown_fields[0], (std::pair<std::string, std::string>{"Ext", "some value"}));
  EXPECT_EQ(u.unknown_fields[1], (std::pair<std::string, std::string>{"X", ""}));
  EXPECT_EQ(u.fields.version, 2);
  // A lowercase token is an unknown token, not the known one.
  const auto v = parse_uri(with_key("m:2ccf67158817;"));
  EXPECT_FALSE(v.fields.mac);
  EXPECT_EQ(v.unknown_fields.size(), 1u);
}

TEST(DppUriLeniency, AcceptsAnyFieldOrderBeforeTheKeyAndUppercaseMac) {
  const auto u = parse_uri(with_key("V:3;I:x;M:2CCF67158817;C:115/36;"));
  EXPECT_EQ(format_mac(*u.fields.mac), "2ccf67158817");
  EXPECT_EQ(u.fields.version, 3);
  EXPECT_EQ(u.freqs[0], 5180u);
}

TEST(DppUriLeniency, IgnoresReservedBitsOfSupportedCurves) {
  // hostapd's nibble order: first digit bits 0-3, second bits 4-7.
  const auto u = parse_uri(with_key("B:1f;"));  // 0xf1: P-256, BP-384, BP-512 and reserved bits 6, 7
  EXPECT_EQ(u.fields.supported_curves, (std::vector<Curve>{Curve::p256, Curve::bp384, Curve::bp512}));
  EXPECT_EQ(parse_uri(with_key("B:0;")).fields.supported_curves, std::vector<Curve>{});
}

TEST(DppUriLeniency, KeepsChannelsTheTableDoesNotKnowWithoutAFrequency) {
  const auto u = parse_uri(with_key("C:81/14,115/37,180/1,82/14;"));
  EXPECT_EQ(u.freqs, (std::vector<std::optional<unsigned>>{std::nullopt, std::nullopt, std::nullopt, 2484}));
  EXPECT_EQ(parse_uri(with_key("C:81/1,2,3,4,5,6,7,8,9,10,11,12,13,1,2,3,4,5,6,7,8,9,10,11,12,13,1,2,3,4;"))
                .fields.channels.size(),
            30u);
}

TEST(DppOpclassTable, MapsAnnexEChannelsToFrequencies) {
  EXPECT_EQ(channel_frequency(81, 1), 2412u);
  EXPECT_EQ(channel_frequency(81, 13), 2472u);
  EXPECT_EQ(channel_frequency(82, 14), 2484u);
  EXPECT_EQ(channel_frequency(83, 9), 2452u);
  EXPECT_EQ(channel_frequency(84, 5), 2432u);
  EXPECT_EQ(channel_frequency(115, 36), 5180u);
  EXPECT_EQ(channel_frequency(118, 64), 5320u);
  EXPECT_EQ(channel_frequency(121, 144), 5720u);
  EXPECT_EQ(channel_frequency(124, 161), 5805u);
  EXPECT_EQ(channel_frequency(125, 177), 5885u);
  EXPECT_EQ(channel_frequency(128, 42), 5210u);
  EXPECT_EQ(channel_frequency(129, 163), 5815u);
  EXPECT_EQ(channel_frequency(131, 1), 5955u);
  EXPECT_EQ(channel_frequency(131, 233), 7115u);
  EXPECT_EQ(channel_frequency(133, 215), 7025u);
  EXPECT_EQ(channel_frequency(136, 2), 5935u);
  for (const auto& [cls, ch] : std::vector<std::pair<unsigned, unsigned>>{
           {81, 0}, {81, 14}, {82, 1}, {115, 37}, {116, 40}, {122, 104}, {131, 2}, {131, 237}, {180, 1}, {1, 1}})
    EXPECT_FALSE(channel_frequency(cls, ch).has_value()) << cls << "/" << ch;
}

TEST(DppChannelList, ParsesAndFormatsTheUriSyntax) {
  const auto l = parse_channel_list("81/1,6,11,115/36,81/13");
  EXPECT_EQ(l, (std::vector<Channel>{{81, 1}, {81, 6}, {81, 11}, {115, 36}, {81, 13}}));
  EXPECT_EQ(format_channel_list(l), "81/1,6,11,115/36,81/13");
  try {
    parse_channel_list("81/1;6");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("offset 4"), std::string::npos) << e.what();
  }
}

TEST(DppMac, ParsesWithAndWithoutSeparators) {
  EXPECT_EQ(parse_mac("2ccf67158817"), (Mac{0x2c, 0xcf, 0x67, 0x15, 0x88, 0x17}));
  EXPECT_EQ(parse_mac("2C:CF:67:15:88:17"), parse_mac("2c-cf-67-15-88-17"));
  EXPECT_FALSE(parse_mac("2c:cf-67:15:88:17"));
  EXPECT_FALSE(parse_mac("2ccf6715881"));
}

}  // namespace
}  // namespace station::pki::dpp
