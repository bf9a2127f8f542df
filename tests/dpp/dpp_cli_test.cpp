// `station dpp parse|gen` through the built binary: the exact forms and JSON shapes of
// issue 3, checked with the openssl command line where a second opinion exists.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "common/bytes.hpp"
#include "support.hpp"

namespace station {
namespace {

using nlohmann::json;

constexpr const char* kPiUri =
    "DPP:C:81/1;M:2ccf67158817;V:2;K:MDkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDIgACH/bVKOIqu6MdvjapELv4z/wiR72RLKVLzznKbEymx3c=;;";

test::RunResult station(const std::vector<std::string>& args) {
  std::vector<std::string> argv{test::built_binary("station").string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return test::run(argv);
}

std::string key_field(const std::string& uri) {
  const auto k = uri.find(";K:");
  const auto end = uri.find(";;", k);
  return uri.substr(k + 3, end - k - 3);
}

TEST(DppCli, ParseJsonHasExactlyTheDocumentedShape) {
  const auto r = station({"dpp", "parse", "--json", kPiUri});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Key order as documented; one object and a newline.
  EXPECT_EQ(r.out,
            "{\"curve\":\"P-256\",\"mac\":\"2ccf67158817\",\"channels\":[{\"opclass\":81,\"channel\":1,\"freq\":2412}],"
            "\"version\":2,\"info\":null,\"host\":null,\"supported_curves\":null,"
            "\"pkhash\":\"b1779e6811b03cab9091a367b10db6333ced150048832d3a8563dd34f32c6729\","
            "\"chirp_hash\":\"" +
                sha256_hex([] {
                  Bytes b{'c', 'h', 'i', 'r', 'p'};
                  const Bytes der = *base64_decode(
                      "MDkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDIgACH/bVKOIqu6MdvjapELv4z/wiR72RLKVLzznKbEymx3c=");
                  b.insert(b.end(), der.begin(), der.end());
                  return b;
                }()) +
                "\"}\n");
}

TEST(DppCli, ParseJsonShowsUnknownChannelsAsNullAndAbsentFieldsAsNull) {
  const std::string uri = "DPP:C:81/14,115/36;I:SN 42;B:9;H:10.0.0.1;K:" +
                          key_field(kPiUri) + ";;";
  const auto r = station({"dpp", "parse", "--json", uri});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = json::parse(r.out);
  EXPECT_EQ(j["mac"], nullptr);
  EXPECT_EQ(j["version"], nullptr);
  EXPECT_EQ(j["info"], "SN 42");
  EXPECT_EQ(j["host"], "10.0.0.1");
  EXPECT_EQ(j["supported_curves"], json::parse(R"(["P-256","BP-256"])"));
  EXPECT_EQ(j["channels"], json::parse(R"([{"opclass":81,"channel":14,"freq":null},
                                           {"opclass":115,"channel":36,"freq":5180}])"));
}

TEST(DppCli, ParseJsonOfAUriWithOnlyAKeyHasAnEmptyChannelListAndNulls) {
  const auto r = station({"dpp", "parse", "--json", "DPP:K:" + key_field(kPiUri) + ";;"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = json::parse(r.out);
  EXPECT_EQ(j["channels"], json::array());
  for (const char* k : {"mac", "version", "info", "host", "supported_curves"}) EXPECT_EQ(j[k], nullptr) << k;
  EXPECT_EQ(j["curve"], "P-256");
}

TEST(DppCli, ParseOfAMalformedUriExitsOneWithTheSpecificError) {
  const auto r = station({"dpp", "parse", "--json", "DPP:M:2ccf6715881G;K:AAAA;;"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_EQ(r.err, "station: DPP URI field M: (offset 17): 'G' is not a hex digit; M: is 12 hex digits "
                   "without separators (e.g. M:2ccf67158817)\n");
}

TEST(DppCli, ParseWithoutJsonPrintsReadableLines) {
  const auto r = station({"dpp", "parse", kPiUri});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("curve: P-256\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("channels: 81/1 (2412 MHz)\n"), std::string::npos) << r.out;
}

TEST(DppCli, GenWritesAKeyFileThatOpenSslReadsAndThatMatchesTheUri) {
  test::TempDir dir("dpp-cli");
  const auto key = (dir / "dev.pem").string();
  const auto r = station({"dpp", "gen", "--json", "--curve", "BP-384", "--mac", "2c:cf:67:15:88:17", "--chan",
                          "81/1,6,11,115/36", "--info", "SN-000042", "--version", "3", "--key-out", key});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = json::parse(r.out);
  ASSERT_EQ(j.size(), 2u);
  const std::string uri = j["uri"];
  EXPECT_EQ(uri.rfind("DPP:C:81/1,6,11,115/36;M:2ccf67158817;I:SN-000042;V:3;K:", 0), 0u) << uri;
  struct stat st {};
  ASSERT_EQ(::stat(key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(test::read_file(key).rfind("-----BEGIN EC PRIVATE KEY-----\n", 0), 0u);
  const auto pub = test::run({"openssl", "ec", "-in", key, "-pubout", "-outform", "DER", "-conv_form", "compressed",
                              "-out", (dir / "pub.der").string()});
  ASSERT_EQ(pub.exit_code, 0) << pub.err;
  const auto der = test::read_file(dir / "pub.der");
  EXPECT_EQ(base64_encode(as_bytes(der)), key_field(uri));
  EXPECT_EQ(j["pkhash"], sha256_hex(as_bytes(der)));
  const auto text = test::run({"openssl", "ec", "-in", key, "-noout", "-text"});
  EXPECT_NE(text.out.find("brainpoolP384r1"), std::string::npos) << text.out;
}

TEST(DppCli, GenRefusesToOverwriteAKeyFile) {
  test::TempDir dir("dpp-cli");
  test::write_file(dir / "k.pem", "keep me");
  const auto r = station({"dpp", "gen", "--key-out", (dir / "k.pem").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("already exists"), std::string::npos) << r.err;
  EXPECT_EQ(test::read_file(dir / "k.pem"), "keep me");
  EXPECT_TRUE(r.out.empty());
}

TEST(DppCli, GenDefaultsToP256AndVersion2) {
  const auto r = station({"dpp", "gen"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("DPP:V:2;K:MDkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDIgA", 0), 0u) << r.out;
  EXPECT_EQ(r.out.substr(r.out.size() - 3), ";;\n");
}

TEST(DppCli, GenUsesADeviceGeneratedPublicKey) {
  test::TempDir dir("dpp-cli");
  ASSERT_EQ(test::run({"openssl", "ecparam", "-name", "secp521r1", "-genkey", "-noout", "-out",
                       (dir / "k.pem").string()}).exit_code, 0);
  ASSERT_EQ(test::run({"openssl", "ec", "-in", (dir / "k.pem").string(), "-pubout", "-out",
                       (dir / "pub.pem").string()}).exit_code, 0);
  ASSERT_EQ(test::run({"openssl", "ec", "-in", (dir / "k.pem").string(), "-pubout", "-outform", "DER",
                       "-conv_form", "compressed", "-out", (dir / "pub.der").string()}).exit_code, 0);
  const auto r = station({"dpp", "gen", "--pubkey", (dir / "pub.pem").string(), "--chan", "131/5"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "DPP:C:131/5;V:2;K:" + base64_encode(as_bytes(test::read_file(dir / "pub.der"))) + ";;\n");
}

TEST(DppCli, GenGivesSpecificErrorsForBadArguments) {
  struct Case {
    std::vector<std::string> args;
    const char* needle;
  };
  for (const auto& c : std::vector<Case>{
           {{"--curve", "P-192"}, "--curve P-192 is not a DPP curve"},
           {{"--mac", "2ccf"}, "--mac 2ccf is not a MAC address"},
           {{"--chan", "81/1,x"}, "offset 5"},
           {{"--chan", "81/14"}, "channel 14 is not in global operating class 81"},
           {{"--info", "a;b"}, "';' is not allowed in I:"},
           {{"--version", "4"}, "--version"},
       }) {
    std::vector<std::string> args{"dpp", "gen"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    const auto r = station(args);
    EXPECT_NE(r.exit_code, 0) << c.needle;
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace station
