// ZPL: the exact command stream of reference labels (golden files), escaping of every
// special character in every field, data checks, and the second codes.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>

#include "common/error.hpp"
#include "label_fixtures.hpp"
#include "labels/render.hpp"
#include "labels/template_config.hpp"
#include "support.hpp"

namespace station::labels {
namespace {

const std::string kP256Uri =
    "DPP:C:81/1;M:2ccf67158817;V:2;K:MDkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDIgACH/bVKOIqu6MdvjapELv4z/wiR72RLKVLzznKbEymx3c=;;";

LabelData reference_data() {
  LabelData d;
  d.uri = "DPP:C:81/1;M:2ccf67158817;I:ACME_W^1~x;V:2;K:MDkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDIgACH/bVKOIqu6MdvjapELv4z/"
          "wiR72RLKVLzznKbEymx3c=;;";
  d.serial = "ACME-2026-000042";
  d.mac = "2ccf67158817";
  d.model = "Widget_Pro^2~";
  d.date = "2026-11-22";
  d.batch = "WO-17";
  d.fixture = "3";
  return d;
}

std::filesystem::path golden(const std::string& name) {
  return std::filesystem::path(STATION_SOURCE_DIR) / "tests/labels/golden" / name;
}

// Compares with a golden file; STATION_UPDATE_GOLDEN=1 rewrites it (then review the diff).
void expect_golden(const std::string& name, const std::string& actual) {
  if (std::getenv("STATION_UPDATE_GOLDEN") != nullptr) test::write_file(golden(name), actual);
  EXPECT_EQ(actual, test::read_file(golden(name))) << "golden " << name;
}

// Undoes ^FH escapes (_XX).
std::string unescape(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_') {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// The field data of every ^FD...^FS, as written (still escaped).
std::vector<std::string> field_data(const std::string& zpl) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while ((pos = zpl.find("^FD", pos)) != std::string::npos) {
    const std::size_t end = zpl.find("^FS", pos);
    out.push_back(zpl.substr(pos + 3, end - pos - 3));
    pos = end;
  }
  return out;
}

TEST(LabelZpl, ReferenceLabelMatchesGoldenCommandStream) {
  expect_golden("reference-203.zpl", render_zpl(builtin_template("default"), reference_data()));
  expect_golden("reference-600.zpl", render_zpl(builtin_template("default").with_dpi(600), reference_data()));
}

TEST(LabelZpl, SecondCodesMatchGolden) {
  LabelData d = reference_data();
  d.softap = WifiCredentials{"acme-setup;1", "pa:ss\\word", "WPA", false};
  expect_golden("softap-203.zpl", render_zpl(builtin_template("softap"), d));
  const auto dm = load_template_file(golden("datamatrix.toml"));
  expect_golden("datamatrix-300.zpl", render_zpl(dm.at("datamatrix"), d));
}

TEST(LabelZpl, QrUsesManualByteModeWithTheExactByteCount) {
  const std::string zpl = render_zpl(builtin_template("default"), reference_data());
  const auto fields = field_data(zpl);
  ASSERT_FALSE(fields.empty());
  const std::string uri = reference_data().uri;
  char expected_prefix[16];
  std::snprintf(expected_prefix, sizeof expected_prefix, "MM,B%04zu", uri.size());
  ASSERT_EQ(fields[0].substr(0, 8), expected_prefix);
  EXPECT_EQ(unescape(fields[0].substr(8)), uri);
  EXPECT_NE(zpl.find("^BQN,2,3^FH^FD"), std::string::npos);
}

TEST(LabelZpl, EverySpecialCharacterInEveryFieldIsEscaped) {
  TemplateSpec s = builtin_template_spec("default");
  for (auto& t : s.texts) {
    t.max_chars = std::max<std::size_t>(t.max_chars, 17);
    t.height_mm = 2.0;
    t.prefix = "^_~";
  }
  const Template tpl(s);
  // Every character ZPL could read as a command prefix or hex indicator, others that other
  // commands treat specially (\ in ^FB, the comma), and UTF-8.
  const std::string nasty = "a^b~c_d\\e,f\"\xc3\xa9";
  LabelData d;
  d.uri = "DPP:I:" + label_test::kNastyInfo + ";K:AAAA;;";
  d.serial = d.model = d.date = d.batch = d.fixture = nasty;
  d.mac = "02-a0-b1-c2-d3-e4";
  const std::string zpl = render_zpl(tpl, d);
  const auto fields = field_data(zpl);
  ASSERT_EQ(fields.size(), 7U);
  for (std::size_t i = 0; i < fields.size(); ++i) {
    const std::string& f = fields[i];
    EXPECT_EQ(f.find('^'), std::string::npos) << f;
    EXPECT_EQ(f.find('~'), std::string::npos) << f;
    for (std::size_t k = 0; k < f.size(); ++k) {
      EXPECT_GE(static_cast<unsigned char>(f[k]), 0x20) << f;
      EXPECT_LT(static_cast<unsigned char>(f[k]), 0x7f) << f;
      if (f[k] == '_') {
        ASSERT_LE(k + 2, f.size() - 1) << f;
        EXPECT_TRUE(std::isxdigit(static_cast<unsigned char>(f[k + 1])) &&
                    std::isxdigit(static_cast<unsigned char>(f[k + 2])))
            << f;
        k += 2;
      }
    }
  }
  EXPECT_EQ(unescape(fields[0].substr(8)), d.uri);
  EXPECT_EQ(unescape(fields[1]), "^_~" + nasty);                // serial
  EXPECT_EQ(unescape(fields[2]), "^_~02:A0:B1:C2:D3:E4");        // MAC, formatted
  for (std::size_t i = 3; i < 7; ++i) EXPECT_EQ(unescape(fields[i]), "^_~" + nasty);
  // The only unescaped ^ and ~ in the job are commands.
  EXPECT_EQ(zpl.find('~'), std::string::npos);
  EXPECT_NE(zpl.find("_5E_5F_7E"), std::string::npos);
}

TEST(LabelZpl, EmptyFieldsAreLeftOut) {
  LabelData d;
  d.uri = kP256Uri;
  d.serial = "SN1";
  const std::string zpl = render_zpl(builtin_template("default"), d);
  EXPECT_EQ(field_data(zpl).size(), 2U);  // the QR and the serial
  EXPECT_EQ(zpl.find("MAC"), std::string::npos);
}

TEST(LabelZpl, DataLongerThanTheTemplateAllowsIsAnErrorNotAClippedLabel) {
  const Template tpl = builtin_template("default");
  LabelData d = reference_data();
  d.serial = std::string(21, 'X');
  try {
    render_zpl(tpl, d);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("serial 'XXXXXXXXXXXXXXXXXXXXX' is 21 characters; the template allows 20"),
              std::string::npos)
        << e.what();
  }
  d = reference_data();
  d.uri = "DPP:K:" + std::string(250, 'A') + ";;";
  EXPECT_THROW(render_zpl(tpl, d), Error);
  EXPECT_THROW(render_png(tpl, d), Error);
  d = reference_data();
  d.mac = "not-a-mac";
  EXPECT_THROW(render_zpl(tpl, d), Error);
  d = reference_data();
  d.uri.clear();
  EXPECT_THROW(render_zpl(tpl, d), Error);
  d = reference_data();
  d.model = "bad\x01";
  EXPECT_THROW(render_zpl(tpl, d), Error);
  // The softap template needs SoftAP credentials.
  EXPECT_THROW(render_zpl(builtin_template("softap"), reference_data()), Error);
}

TEST(LabelZpl, WifiPayloadEscapesItsSpecialCharacters) {
  EXPECT_EQ(wifi_payload({"acme;1", "p:a,s\"s\\", "WPA", false}), "WIFI:T:WPA;S:acme\\;1;P:p\\:a\\,s\\\"s\\\\;;");
  EXPECT_EQ(wifi_payload({"open", "", "nopass", true}), "WIFI:T:nopass;S:open;H:true;;");
  EXPECT_THROW(wifi_payload({"", "x", "WPA", false}), Error);
  EXPECT_THROW(wifi_payload({"x", "x", "WPA3", false}), Error);
}

TEST(LabelZpl, RenderingIsCheapEnoughForTheHotPath) {
  // Issue 11: the ZPL job is rendered per device at thousands of devices per second. Even a
  // sanitized debug build must manage 5,000/s (no QR encoding, no layout work per label:
  // the printer encodes the QR); the figure goes to the log.
  const ZplRenderer r(builtin_template("default"));
  LabelData d = reference_data();
  std::string out;
  const int n = 20000;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    d.serial[d.serial.size() - 1] = static_cast<char>('0' + i % 10);
    r.render(d, out);
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "ZPL renders per second: " << static_cast<long>(n / s) << "\n";
  EXPECT_GT(n / s, 5000.0);
}

TEST(LabelZpl, EscapeLeavesOrdinaryTextAlone) {
  EXPECT_EQ(zpl_escape("ACME-2026 000042/x,y"), "ACME-2026 000042/x,y");
  EXPECT_EQ(zpl_escape("_^~"), "_5F_5E_7E");
  EXPECT_EQ(zpl_escape(std::string("\n\x7f\xff", 3)), "_0A_7F_FF");
}

}  // namespace
}  // namespace station::labels
