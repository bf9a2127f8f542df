// What we draw decodes, with decoders that are not ours, to the DPP URI byte for byte: PNG
// (libzbar), every PDF page (pdftoppm + zbarimg), and ZPL through an independent ZPL renderer
// (zebrash, npm zpl-renderer-js) when it can be installed; for URIs on every DPP curve at
// every supported resolution.
#include <gtest/gtest.h>

#include "label_fixtures.hpp"
#include "labels/qr.hpp"
#include "labels/render.hpp"
#include "labels/template_config.hpp"
#include "support.hpp"

namespace station::labels {
namespace {

using label_test::uris_on_every_curve;

LabelData data_for(const label_test::CurveUri& c, int i) {
  LabelData d;
  d.uri = c.uri;
  d.serial = "ACME-2026-" + std::to_string(100000 + i);
  d.mac = "02a0b1c2d30" + std::to_string(i);
  d.model = "Widget Pro";
  d.date = "2026-11-22";
  d.batch = "WO-17";
  d.fixture = std::to_string(i + 1);
  return d;
}

TEST(LabelDecode, UrisOnEveryCurveIncludeTheLongOnes) {
  const auto& uris = uris_on_every_curve();
  ASSERT_EQ(uris.size(), 6U);
  std::size_t longest = 0;
  for (const auto& u : uris) longest = std::max(longest, u.uri.size());
  EXPECT_GT(longest, 200U);  // brainpoolP512r1: a 124-character K: field
  EXPECT_LE(longest, builtin_template("default").spec().qr.max_data_bytes);
}

TEST(LabelDecode, QrMatrixIsByteModeAtTheRequestedEcc) {
  // A 114-byte URI is version 7 (45 modules) at ECC M, and larger at H.
  const std::string uri(114, 'a');
  EXPECT_EQ(encode_qr(uri, Ecc::M).width, 45);
  EXPECT_GT(encode_qr(uri, Ecc::H).width, 45);
}

class LabelDecodeAtDpi : public ::testing::TestWithParam<int> {};

TEST_P(LabelDecodeAtDpi, PngDecodesToTheUriOnEveryCurve) {
  const Template tpl = builtin_template("default").with_dpi(GetParam());
  const auto& uris = uris_on_every_curve();
  for (std::size_t i = 0; i < uris.size(); ++i) {
    const Bytes png = render_png(tpl, data_for(uris[i], static_cast<int>(i)));
    const auto found = label_test::zbar_decode_png(png);
    ASSERT_EQ(found.size(), 1U) << uris[i].curve << " at " << GetParam() << " dpi";
    EXPECT_EQ(found[0], uris[i].uri) << uris[i].curve << " at " << GetParam() << " dpi";
  }
}

TEST_P(LabelDecodeAtDpi, EveryPdfPageDecodesToItsUri) {
  const Template tpl = builtin_template("default").with_dpi(GetParam());
  const auto& uris = uris_on_every_curve();
  std::vector<LabelData> labels;
  for (std::size_t i = 0; i < uris.size(); ++i) labels.push_back(data_for(uris[i], static_cast<int>(i)));
  station::test::TempDir dir("labels-pdf");
  const auto pdf = dir / "labels.pdf";
  station::test::write_file(pdf, label_test::bytes_to_string(render_pdf(tpl, labels)));
  const auto pages = label_test::pdf_pages(pdf, GetParam(), dir.path());
  ASSERT_EQ(pages.size(), uris.size());
  for (std::size_t i = 0; i < pages.size(); ++i) {
    const auto found = label_test::zbarimg_decode(pages[i]);
    ASSERT_EQ(found.size(), 1U) << "page " << i + 1;
    EXPECT_EQ(found[0], uris[i].uri) << uris[i].curve << " page " << i + 1;
  }
}

INSTANTIATE_TEST_SUITE_P(Resolutions, LabelDecodeAtDpi, ::testing::Values(203, 300, 600),
                         [](const auto& p) { return std::to_string(p.param) + "dpi"; });

TEST(LabelDecode, PngIsOneBitAtThePrinterResolution) {
  const Template tpl = builtin_template("default").with_dpi(300);
  const Bytes png = render_png(tpl, data_for(uris_on_every_curve()[0], 0));
  ASSERT_GT(png.size(), 33U);
  auto be32 = [&](std::size_t at) {
    return static_cast<std::uint32_t>(png[at]) << 24 | static_cast<std::uint32_t>(png[at + 1]) << 16 |
           static_cast<std::uint32_t>(png[at + 2]) << 8 | png[at + 3];
  };
  EXPECT_EQ(be32(16), static_cast<std::uint32_t>(tpl.width_dots()));
  EXPECT_EQ(be32(20), static_cast<std::uint32_t>(tpl.height_dots()));
  EXPECT_EQ(png[24], 1);  // bit depth
  EXPECT_EQ(png[25], 0);  // grayscale
  const std::string s = label_test::bytes_to_string(png);
  const auto phys = s.find("pHYs");
  ASSERT_NE(phys, std::string::npos);
  EXPECT_EQ(be32(phys + 4), 11811U);  // 300 dpi in pixels per metre
}

TEST(LabelDecode, SecondCodesDecode) {
  // WIFI: QR with libzbar; DataMatrix with dmtxread (libdmtx's reader, dmtx-utils).
  LabelData d = data_for(uris_on_every_curve()[2], 2);
  d.softap = WifiCredentials{"acme;setup", "s3cr:t", "WPA", false};
  const auto found = label_test::zbar_decode_png(render_png(builtin_template("softap"), d));
  ASSERT_EQ(found.size(), 2U);
  EXPECT_TRUE(std::find(found.begin(), found.end(), d.uri) != found.end());
  EXPECT_TRUE(std::find(found.begin(), found.end(), "WIFI:T:WPA;S:acme\\;setup;P:s3cr\\:t;;") != found.end());

  if (!station::test::have_program("dmtxread")) GTEST_SKIP() << "dmtxread (dmtx-utils) not installed";
  const auto dm = load_template_file(std::filesystem::path(STATION_SOURCE_DIR) / "tests/labels/golden/datamatrix.toml");
  station::test::TempDir dir("labels-dm");
  station::test::write_file(dir / "dm.png", label_test::bytes_to_string(render_png(dm.at("datamatrix"), d)));
  const auto r = station::test::run({"dmtxread", "-n", "-N1", (dir / "dm.png").string()});
  EXPECT_EQ(r.out, d.serial + "\n") << r.err;
}

// zebrash (github.com/ingridhq/zebrash), compiled to WebAssembly in npm's zpl-renderer-js:
// a ZPL renderer written by others. Installed once into the build tree with npm (idempotent).
std::optional<std::filesystem::path> zebrash() {
  if (!station::test::have_program("node") || !station::test::have_program("npm")) return std::nullopt;
  const auto dir = std::filesystem::path(STATION_BINARY_DIR) / "tests/labels/npm";
  const auto pkg = dir / "node_modules/zpl-renderer-js/package.json";
  if (!std::filesystem::exists(pkg)) {
    std::filesystem::create_directories(dir);
    const auto r = station::test::run({"npm", "install", "--prefix", dir.string(), "--no-audit", "--no-fund",
                                       "--no-save", "zpl-renderer-js@3.4.0"});
    if (r.exit_code != 0 || !std::filesystem::exists(pkg)) return std::nullopt;
  }
  const auto script = dir / "render.cjs";
  // node render.cjs WIDTH_MM HEIGHT_MM DPMM in.zpl out.png [WIDTH_MM HEIGHT_MM DPMM in.zpl out.png ...]
  station::test::write_file(script, R"(
const { ready } = require("zpl-renderer-js");
const fs = require("node:fs");
(async () => {
  const { api } = await ready;
  const jobs = process.argv.slice(2);
  for (let i = 0; i < jobs.length; i += 5) {
    const [w, h, dpmm, zpl, out] = jobs.slice(i, i + 5);
    const png = await api.zplToBase64Async(fs.readFileSync(zpl, "latin1"), +w, +h, +dpmm);
    fs.writeFileSync(out, Buffer.from(png, "base64"));
  }
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
)");
  return script;
}

TEST(LabelDecode, ZplRenderedByAnIndependentRendererDecodesToTheUri) {
  const auto script = zebrash();
  if (!script) GTEST_SKIP() << "node/npm or zpl-renderer-js unavailable (offline?)";
  station::test::TempDir dir("labels-zebrash");
  const auto& uris = uris_on_every_curve();
  // Every curve at 203 dpi; the longest URI (brainpoolP512r1) also at 300 and 600 dpi (the
  // renderer takes about two seconds per 600 dpi label).
  struct Case {
    int dpi, dpmm;
    std::size_t uri;
  };
  std::vector<Case> cases;
  for (std::size_t i = 0; i < uris.size(); ++i) cases.push_back({203, 8, i});
  cases.push_back({300, 12, uris.size() - 1});
  cases.push_back({600, 24, uris.size() - 1});
  std::vector<std::string> argv = {"node", script->string()};
  auto add_job = [&](const Template& tpl, const LabelData& d, int dpmm, const std::string& name) {
    const auto base = dir / name;
    station::test::write_file(base.string() + ".zpl", render_zpl(tpl, d));
    argv.insert(argv.end(), {std::to_string(tpl.spec().width_mm), std::to_string(tpl.spec().height_mm),
                             std::to_string(dpmm), base.string() + ".zpl", base.string() + ".png"});
  };
  for (std::size_t k = 0; k < cases.size(); ++k) {
    const Case& c = cases[k];
    add_job(builtin_template("default").with_dpi(c.dpi), data_for(uris[c.uri], static_cast<int>(c.uri)), c.dpmm,
            std::to_string(k));
  }
  // The second codes as the printer would draw them: a WIFI: QR, and a DataMatrix.
  LabelData wifi = data_for(uris[0], 0);
  wifi.softap = WifiCredentials{"acme;setup_1", "p^a:s~s", "WPA", false};
  add_job(builtin_template("softap"), wifi, 8, "softap");
  const auto dm = load_template_file(std::filesystem::path(STATION_SOURCE_DIR) / "tests/labels/golden/datamatrix.toml");
  add_job(dm.at("datamatrix"), wifi, 12, "datamatrix");

  const auto r = station::test::run(argv);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (std::size_t k = 0; k < cases.size(); ++k) {
    const auto png = station::test::read_file(dir / (std::to_string(k) + ".png"));
    const auto found = label_test::zbar_decode_png(Bytes(png.begin(), png.end()));
    const auto& u = uris[cases[k].uri];
    ASSERT_EQ(found.size(), 1U) << u.curve << " at " << cases[k].dpi << " dpi";
    EXPECT_EQ(found[0], u.uri) << u.curve << " at " << cases[k].dpi << " dpi";
  }
  const auto softap_png = station::test::read_file(dir / "softap.png");
  auto found = label_test::zbar_decode_png(Bytes(softap_png.begin(), softap_png.end()));
  std::sort(found.begin(), found.end());
  EXPECT_EQ(found, (std::vector<std::string>{uris[0].uri, "WIFI:T:WPA;S:acme\\;setup_1;P:p^a\\:s~s;;"}));
  if (station::test::have_program("dmtxread")) {
    const auto dr = station::test::run({"dmtxread", "-n", "-N1", (dir / "datamatrix.png").string()});
    EXPECT_EQ(dr.out, wifi.serial + "\n") << dr.err;
  }
}

}  // namespace
}  // namespace station::labels
