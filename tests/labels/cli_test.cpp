// `station label render|print` through the real binary, in the exact forms scripts use.
#include <gtest/gtest.h>

#include <chrono>

#include "fake_printer.hpp"
#include "label_fixtures.hpp"
#include "support.hpp"

namespace station::labels {
namespace {

using station::test::run;
using station::test::RunResult;

const std::string kUri =
    "DPP:C:81/1;M:2ccf67158817;I:ACME_W^1~x;V:2;K:MDkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDIgACH/bVKOIqu6MdvjapELv4z/"
    "wiR72RLKVLzznKbEymx3c=;;";

RunResult station_cmd(std::vector<std::string> args) {
  args.insert(args.begin(), station::test::built_binary("station").string());
  return run(args);
}

TEST(LabelCli, RenderZplMatchesTheGoldenReference) {
  station::test::TempDir dir("labels-cli");
  const auto out = dir / "l.zpl";
  const auto r = station_cmd({"label", "render", "--uri", kUri, "--serial", "ACME-2026-000042", "--format", "zpl",
                              "--out", out.string(), "--model", "Widget_Pro^2~", "--date", "2026-11-22", "--batch",
                              "WO-17", "--fixture", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The MAC comes from the URI's M: field.
  EXPECT_EQ(station::test::read_file(out),
            station::test::read_file(std::filesystem::path(STATION_SOURCE_DIR) / "tests/labels/golden/reference-203.zpl"));
}

TEST(LabelCli, RenderPngAndPdfDecodeToTheUriAtEachDpi) {
  station::test::TempDir dir("labels-cli");
  const auto& curves = label_test::uris_on_every_curve();
  const std::string uri = curves.back().uri;  // brainpoolP512r1: the longest
  for (const char* dpi : {"203", "300", "600"}) {
    const auto png = dir / (std::string(dpi) + ".png");
    auto r = station_cmd({"label", "render", "--uri", uri, "--serial", "SN-1", "--template", "default", "--dpi", dpi,
                          "--format", "png", "--out", png.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(label_test::zbarimg_decode(png), std::vector<std::string>{uri}) << dpi;
    const auto pdf = dir / (std::string(dpi) + ".pdf");
    r = station_cmd({"label", "render", "--uri", uri, "--serial", "SN-1", "--dpi", dpi, "--format", "pdf", "--out",
                     pdf.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto pages = label_test::pdf_pages(pdf, std::stoi(dpi), dir.path());
    ASSERT_EQ(pages.size(), 1U);
    EXPECT_EQ(label_test::zbarimg_decode(pages[0]), std::vector<std::string>{uri}) << dpi;
    for (const auto& p : pages) std::filesystem::remove(p);
  }
}

TEST(LabelCli, RenderWithATemplateFile) {
  station::test::TempDir dir("labels-cli");
  station::test::write_file(dir / "small.toml",
                            "width_mm = 50\nheight_mm = 30\n[qr]\nsize_mm = 27\nmax_data_bytes = 150\n"
                            "[[text]]\nfield = \"serial\"\nx_mm = 29\ny_mm = 2\nheight_mm = 2\nmax_chars = 12\n");
  const auto out = dir / "l.zpl";
  auto r = station_cmd({"label", "render", "--uri", kUri, "--serial", "SN-1", "--template",
                        (dir / "small.toml").string(), "--format", "zpl", "--out", out.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(station::test::read_file(out).find("^PW400\n^LL240\n"), std::string::npos);
  // A template that does not fit is refused with the key and the fix.
  station::test::write_file(dir / "bad.toml", "width_mm = 50\n[[text]]\nfield = \"serial\"\nx_mm = 30\nmax_chars = 30\n");
  r = station_cmd({"label", "render", "--uri", kUri, "--serial", "SN-1", "--template", (dir / "bad.toml").string(),
                   "--format", "zpl", "--out", out.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("station: template 'bad': text[0] (serial): 30 characters"), std::string::npos) << r.err;
}

TEST(LabelCli, BadInputsFailWithOneClearLine) {
  station::test::TempDir dir("labels-cli");
  const auto out = (dir / "x").string();
  auto r = station_cmd({"label", "render", "--uri", kUri, "--serial", std::string(30, 'S'), "--format", "zpl", "--out", out});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("serial '" + std::string(30, 'S') + "' is 30 characters; the template allows 20"),
            std::string::npos)
      << r.err;
  r = station_cmd({"label", "render", "--uri", kUri, "--serial", "S", "--format", "gif", "--out", out});
  EXPECT_NE(r.exit_code, 0);
  r = station_cmd({"label", "render", "--uri", kUri, "--serial", "S", "--dpi", "150", "--format", "zpl", "--out", out});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("dpi = 150 is not supported"), std::string::npos) << r.err;
  r = station_cmd({"label", "render", "--uri", kUri, "--serial", "S", "--template", "nope", "--format", "zpl", "--out", out});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("label template 'nope'"), std::string::npos) << r.err;
}

TEST(LabelCli, PrintSendsTheJobAndExitsZeroOnlyWhenThePrinterTookIt) {
  label_test::FakePrinter fake;
  auto r = station_cmd({"label", "print", "--uri", kUri, "--serial", "ACME-9", "--printer", fake.spec(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto jobs = fake.jobs(1);
  ASSERT_EQ(jobs.size(), 1U);
  EXPECT_NE(jobs[0].find("^FDSN ACME-9^FS"), std::string::npos);
  EXPECT_NE(r.out.find("\"label\":\"ACME-9\",\"printer\":\"" + fake.spec() + "\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"ok\":true"), std::string::npos) << r.out;

  label_test::FakePrinter paper(label_test::FakePrinter::Mode::paper_out);
  r = station_cmd({"label", "print", "--uri", kUri, "--serial", "ACME-9", "--printer", paper.spec()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("station: printer " + paper.spec() + ": not ready (paper out): load labels"), std::string::npos)
      << r.err;

  label_test::FakePrinter rude(label_test::FakePrinter::Mode::close_mid_job, 50);
  r = station_cmd({"label", "print", "--uri", kUri, "--serial", "ACME-9", "--printer", rude.spec()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("closed the connection"), std::string::npos) << r.err;

  station::test::TempDir dir("labels-cli");
  r = station_cmd({"label", "print", "--uri", kUri, "--serial", "ACME-9", "--printer", "dir:" + dir.path().string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(dir / "ACME-9.zpl"));
}

TEST(LabelCli, UnreachablePrinterFailsWithinTheDefaultConnectTimeout) {
  label_test::BlackholePort hole;
  const std::string spec = "tcp://127.0.0.1:" + std::to_string(hole.port());
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = station_cmd({"label", "print", "--uri", kUri, "--serial", "ACME-9", "--printer", spec});
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "station: printer " + spec +
                       ": no connection within 3 s; check that the printer is on, cabled and at this address\n");
  EXPECT_LT(took, std::chrono::milliseconds(4500));
  EXPECT_GE(took, std::chrono::milliseconds(2900));
}

}  // namespace
}  // namespace station::labels

namespace station::labels {
namespace {

TEST(LabelCli, TemplatesAndPrintersByNameFromTheStationConfig) {
  label_test::FakePrinter fake;
  station::test::TempDir dir("labels-cli");
  station::test::write_file(dir / "station.conf",
                            "[templates.narrow]\nwidth_mm = 60\n[[templates.narrow.text]]\nfield = \"serial\"\n"
                            "x_mm = 30\ny_mm = 2\nheight_mm = 2.5\nmax_chars = 12\n"
                            "[printers.line1]\nuri = \"" + fake.spec() + "\"\nstatus = \"off\"\n");
  auto r = station_cmd({"label", "print", "--uri", kUri, "--serial", "ACME-7", "--config", (dir / "station.conf").string(),
                        "--template", "narrow", "--printer", "line1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto jobs = fake.jobs(1);
  ASSERT_EQ(jobs.size(), 1U);
  EXPECT_EQ(jobs[0].rfind("^XA\n^CI28\n^PW480\n", 0), 0U) << jobs[0];  // 60 mm, no ~HS sent
  r = station_cmd({"label", "print", "--uri", kUri, "--serial", "ACME-7", "--config", (dir / "station.conf").string(),
                   "--printer", "line2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no printer 'line2' in"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace station::labels
