// Templates: built-ins, TOML loading, and every "does not fit" refused at load time.
#include <gtest/gtest.h>

#include <toml++/toml.h>

#include "common/error.hpp"
#include "labels/template.hpp"
#include "labels/template_config.hpp"
#include "support.hpp"

namespace station::labels {
namespace {

toml::table parse(std::string_view text) { return toml::parse(text); }

Errc load_error(std::string_view text, std::string* message = nullptr) {
  try {
    templates_from_toml(parse(text), "templates");
  } catch (const Error& e) {
    if (message != nullptr) *message = e.what();
    return e.code();
  }
  return Errc::ok;
}

TEST(LabelTemplate, BuiltInTemplatesAreValidAtEverySupportedResolution) {
  for (const auto& name : builtin_template_names()) {
    for (int dpi : supported_dpis) {
      const Template t = builtin_template(name).with_dpi(dpi);
      EXPECT_EQ(t.dpi(), dpi);
      EXPECT_GE(t.qr().module * 25.4 / dpi, 0.33 - 1e-9) << name << " at " << dpi;
      EXPECT_LE(t.qr().module, 10);
    }
  }
}

TEST(LabelTemplate, DefaultQrHoldsAP521UriAsVersion11AtEccM) {
  const Template t = builtin_template("default");
  EXPECT_EQ(t.qr().max_modules, 61);  // version 11: 17 + 4 * 11
  EXPECT_EQ(t.qr().module, 3);        // 203 dpi: 3 dots per module
  EXPECT_EQ(t.qr().quiet_modules, 4);
  EXPECT_EQ(t.width_dots(), 607);  // 76 mm at 8 dots/mm, rounded
  EXPECT_EQ(t.height_dots(), 256);
}

TEST(LabelTemplate, UnknownBuiltInIsNotFound) {
  try {
    builtin_template("nope");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::not_found);
  }
}

TEST(LabelTemplate, LoadsEveryKeyFromToml) {
  const auto all = templates_from_toml(parse(R"(
    [acme]
    width_mm = 80
    height_mm = 40
    dpi = 300
    font = "DejaVu Sans"
    [acme.qr]
    x_mm = 2
    y_mm = 2.5
    size_mm = 30
    max_data_bytes = 200
    ecc = "Q"
    [[acme.text]]
    field = "serial"
    x_mm = 35
    y_mm = 3
    height_mm = 3
    max_chars = 16
    prefix = "S/N "
    [[acme.text]]
    field = "text"
    x_mm = 35
    y_mm = 10
    height_mm = 2
    value = "Made in Testland"
    [acme.second_code]
    kind = "datamatrix"
    x_mm = 60
    y_mm = 20
    size_mm = 12
    max_data_bytes = 24
  )"));
  ASSERT_EQ(all.size(), 1U);
  const Template& t = all.at("acme");
  EXPECT_EQ(t.dpi(), 300);
  EXPECT_EQ(t.spec().font, "DejaVu Sans");
  EXPECT_EQ(t.spec().qr.ecc, Ecc::Q);
  EXPECT_EQ(t.spec().qr.max_data_bytes, 200U);
  ASSERT_EQ(t.spec().texts.size(), 2U);
  EXPECT_EQ(t.spec().texts[0].prefix, "S/N ");
  EXPECT_EQ(t.spec().texts[1].value, "Made in Testland");
  ASSERT_TRUE(t.second_code().has_value());
  EXPECT_EQ(t.spec().second_code->kind, SecondCodeKind::datamatrix);
  EXPECT_EQ(t.dots(2.5), 30);
}

TEST(LabelTemplate, UnknownKeyIsRefusedWithItsFullName) {
  std::string msg;
  EXPECT_EQ(load_error("[a]\n[[a.text]]\nfield = \"serial\"\nmax_char = 3\n", &msg), Errc::config_error);
  EXPECT_NE(msg.find("templates.a.text[0].max_char: unknown key"), std::string::npos) << msg;
  EXPECT_EQ(load_error("[a]\nwidth = 3\n", &msg), Errc::config_error);
  EXPECT_NE(msg.find("templates.a.width"), std::string::npos) << msg;
}

TEST(LabelTemplate, WrongTypesAndValuesAreRefusedByKey) {
  std::string msg;
  EXPECT_EQ(load_error("[a]\ndpi = \"203\"\n", &msg), Errc::config_error);
  EXPECT_NE(msg.find("templates.a.dpi: expected an integer"), std::string::npos) << msg;
  EXPECT_EQ(load_error("[a]\ndpi = 150\n", &msg), Errc::config_error);
  EXPECT_NE(msg.find("dpi = 150 is not supported"), std::string::npos) << msg;
  EXPECT_EQ(load_error("[a.qr]\necc = \"X\"\n", &msg), Errc::config_error);
  EXPECT_NE(msg.find("templates.a.qr.ecc"), std::string::npos) << msg;
  EXPECT_EQ(load_error("[[a.text]]\nfield = \"colour\"\n", &msg), Errc::config_error);
  EXPECT_NE(msg.find("'colour' is not a field"), std::string::npos) << msg;
  EXPECT_EQ(load_error("[a.second_code]\nkind = \"pdf417\"\n", &msg), Errc::config_error);
}

TEST(LabelTemplate, TextThatDoesNotFitIsRefusedAtLoad) {
  std::string msg;
  // 40 characters at 3 mm need 40 * 1.9 mm = 76 mm from x = 30 mm on a 76 mm label.
  EXPECT_EQ(load_error("[a]\n[[a.text]]\nfield = \"serial\"\nx_mm = 30\ny_mm = 1\nheight_mm = 3\nmax_chars = 40\n",
                       &msg),
            Errc::config_error);
  EXPECT_NE(msg.find("template 'a': text[0] (serial): 40 characters"), std::string::npos) << msg;
  EXPECT_NE(msg.find("lower max_chars"), std::string::npos) << msg;
  // Text below the bottom edge.
  EXPECT_EQ(load_error("[a]\n[[a.text]]\nfield = \"batch\"\nx_mm = 30\ny_mm = 31\nheight_mm = 3\nmax_chars = 4\n",
                       &msg),
            Errc::config_error);
  EXPECT_NE(msg.find("text[0] (batch) needs"), std::string::npos) << msg;
  // A MAC always shows 17 characters.
  EXPECT_EQ(load_error("[a]\n[[a.text]]\nfield = \"mac\"\nx_mm = 30\nmax_chars = 12\n", &msg), Errc::config_error);
  EXPECT_NE(msg.find("at least 17"), std::string::npos) << msg;
}

TEST(LabelTemplate, OverlappingElementsAreRefused) {
  std::string msg;
  EXPECT_EQ(load_error("[a]\n[[a.text]]\nfield = \"serial\"\nx_mm = 10\ny_mm = 10\nmax_chars = 5\n", &msg),
            Errc::config_error);
  EXPECT_NE(msg.find("qr and text[0] (serial) overlap"), std::string::npos) << msg;
}

TEST(LabelTemplate, QrBoxTooSmallForTheLongestUriIsRefusedWithWhatItNeeds) {
  std::string msg;
  EXPECT_EQ(load_error("[a.qr]\nsize_mm = 20\nmax_data_bytes = 250\n", &msg), Errc::config_error);
  EXPECT_NE(msg.find("qr box of 20.0 mm cannot hold 250 bytes"), std::string::npos) << msg;
  EXPECT_NE(msg.find("it needs 25.9 mm"), std::string::npos) << msg;
  // The same box holds a short URI.
  EXPECT_EQ(load_error("[a.qr]\nsize_mm = 20\nmax_data_bytes = 120\n"), Errc::ok);
}

TEST(LabelTemplate, ABoxThatFitsAt600DpiMayNotAt203) {
  // 24 mm: version 11 with its quiet zone is 69 modules; 8-dot modules at 600 dpi make
  // 23.4 mm (fits), 3-dot modules at 203 dpi make 25.9 mm (does not); the error names the dpi.
  TemplateSpec s = builtin_template_spec("default");
  s.qr.size_mm = 24;
  s.dpi = 600;
  EXPECT_NO_THROW(Template{s});
  s.dpi = 203;
  try {
    Template{s};
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::config_error);
    EXPECT_NE(std::string(e.what()).find("at 203 dpi"), std::string::npos) << e.what();
  }
}

TEST(LabelTemplate, TemplateFileHoldsOneTemplateOrACollection) {
  test::TempDir dir("labels");
  test::write_file(dir / "narrow.toml", "width_mm = 60\n[[text]]\nfield = \"serial\"\nx_mm = 30\nmax_chars = 10\n");
  auto one = load_template_file(dir / "narrow.toml");
  ASSERT_EQ(one.count("narrow"), 1U);
  EXPECT_EQ(one.at("narrow").spec().width_mm, 60);
  test::write_file(dir / "many.toml", "[templates.x]\n[templates.y]\ndpi = 600\n");
  auto many = load_template_file(dir / "many.toml");
  EXPECT_EQ(many.size(), 2U);
  EXPECT_EQ(many.at("y").dpi(), 600);
  test::write_file(dir / "broken.toml", "width_mm = \n");
  try {
    load_template_file(dir / "broken.toml");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::config_error);
    EXPECT_NE(std::string(e.what()).find("broken.toml:1"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace station::labels
