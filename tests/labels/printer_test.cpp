// Printer back ends against real sockets and folders: a loopback listener stands in for the
// line printer and receives exactly the ZPL job, or misbehaves in each way a printer can.
#include <gtest/gtest.h>

#include <chrono>
#include <sstream>

#include "common/error.hpp"
#include "fake_printer.hpp"
#include "labels/printer.hpp"
#include "labels/printer_config.hpp"
#include "labels/render.hpp"
#include "labels/report.hpp"
#include "support.hpp"

namespace station::labels {
namespace {

using label_test::FakePrinter;
using std::chrono::milliseconds;

PrintJob reference_job() {
  LabelData d;
  d.uri = "DPP:C:81/1;M:2ccf67158817;I:x_^~;V:2;K:MDkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDIgACH/bVKOIqu6MdvjapELv4z/"
          "wiR72RLKVLzznKbEymx3c=;;";
  d.serial = "ACME-2026-000042";
  d.mac = "2ccf67158817";
  d.date = "2026-11-22";
  return PrintJob{d.serial, render_zpl(builtin_template("default"), d), "zpl"};
}

class RecordingReporter final : public PrintReporter {
 public:
  void report(const PrintReport& r) override { reports.push_back(r); }
  std::vector<PrintReport> reports;
};

Error print_error(Printer& p, const PrintJob& job) {
  try {
    p.print(job);
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "print succeeded";
  return Error(Errc::ok, "");
}

TEST(LabelPrinter, TcpPrinterReceivesExactlyTheZplJob) {
  FakePrinter fake;
  const PrintJob job = reference_job();
  auto printer = open_printer(fake.spec());
  printer->print(job);
  const auto jobs = fake.jobs(1);
  ASSERT_EQ(jobs.size(), 1U);
  EXPECT_EQ(jobs[0], job.data);
  EXPECT_EQ(fake.status_queries(), 1);
}

TEST(LabelPrinter, StatusCheckOffSendsNothingButTheJob) {
  FakePrinter fake(FakePrinter::Mode::silent);
  PrinterOptions o;
  o.status = StatusCheck::off;
  open_printer(fake.spec(), o)->print(reference_job());
  const auto jobs = fake.jobs(1);
  ASSERT_EQ(jobs.size(), 1U);
  EXPECT_EQ(jobs[0], reference_job().data);
  EXPECT_EQ(fake.status_queries(), 0);
}

TEST(LabelPrinter, PrinterThatDoesNotAnswerStatusIsPrintedToInAutoModeAndRefusedInRequire) {
  FakePrinter fake(FakePrinter::Mode::silent);
  PrinterOptions o;
  o.status_timeout = milliseconds(300);
  open_printer(fake.spec(), o)->print(reference_job());
  EXPECT_EQ(fake.jobs(1).at(0), reference_job().data);
  o.status = StatusCheck::require;
  auto strict = open_printer(fake.spec(), o);
  const Error e = print_error(*strict, reference_job());
  EXPECT_EQ(e.code(), Errc::timeout);
  EXPECT_NE(std::string(e.what()).find("no ~HS status answer"), std::string::npos) << e.what();
}

TEST(LabelPrinter, PaperOutHeadOpenAndPausedStopPrintingWithTheirReason) {
  struct Case {
    FakePrinter::Mode mode;
    std::string problem, fix;
  };
  for (const auto& c : {Case{FakePrinter::Mode::paper_out, "not ready (paper out)", "load labels"},
                        Case{FakePrinter::Mode::head_open, "not ready (head open, paused)", "close the print head"},
                        Case{FakePrinter::Mode::paused, "not ready (paused)", "resume the printer"}}) {
    FakePrinter fake(c.mode);
    auto printer = open_printer(fake.spec());
    const Error e = print_error(*printer, reference_job());
    EXPECT_EQ(e.code(), Errc::device_error);
    const std::string msg = e.what();
    EXPECT_NE(msg.find("printer " + fake.spec() + ": " + c.problem), std::string::npos) << msg;
    EXPECT_NE(msg.find(c.fix), std::string::npos) << msg;
    // Nothing but the status query reached the printer.
    const auto jobs = fake.jobs(1);
    ASSERT_EQ(jobs.size(), 1U);
    EXPECT_EQ(jobs[0], "");
  }
}

TEST(LabelPrinter, PrinterClosingMidJobIsAnError) {
  FakePrinter fake(FakePrinter::Mode::close_mid_job, 100);
  PrinterOptions o;
  o.status = StatusCheck::off;
  auto printer = open_printer(fake.spec(), o);
  const Error e = print_error(*printer, reference_job());
  EXPECT_EQ(e.code(), Errc::io_error);
  EXPECT_NE(std::string(e.what()).find("printer " + fake.spec() + ": the printer closed the connection"),
            std::string::npos)
      << e.what();
  EXPECT_TRUE(fake.jobs(0, 100).empty());  // the fake never saw the job complete
}

TEST(LabelPrinter, RefusedConnectionNamesThePrinterAndTheFix) {
  const std::string spec = "tcp://127.0.0.1:" + std::to_string(label_test::closed_port());
  auto printer = open_printer(spec);
  const Error e = print_error(*printer, reference_job());
  EXPECT_EQ(e.code(), Errc::io_error);
  EXPECT_NE(std::string(e.what()).find("printer " + spec + ": connection refused"), std::string::npos) << e.what();
}

TEST(LabelPrinter, UnreachablePrinterFailsWithinTheConnectTimeout) {
  label_test::BlackholePort hole;
  PrinterOptions o;
  o.connect_timeout = milliseconds(700);
  const std::string spec = "tcp://127.0.0.1:" + std::to_string(hole.port());
  auto printer = open_printer(spec, o);
  const auto t0 = std::chrono::steady_clock::now();
  const Error e = print_error(*printer, reference_job());
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(e.code(), Errc::timeout);
  EXPECT_NE(std::string(e.what()).find("no connection within 700 ms"), std::string::npos) << e.what();
  EXPECT_GE(took, milliseconds(600));
  EXPECT_LT(took, milliseconds(1500));
}

TEST(LabelPrinter, DirPrinterWritesOneFilePerLabel) {
  test::TempDir dir("labels-dir");
  PrintJob job = reference_job();
  open_printer("dir:" + dir.path().string())->print(job);
  EXPECT_EQ(test::read_file(dir / "ACME-2026-000042.zpl"), job.data);
  job.label = "../evil/../x";
  open_printer("dir:" + dir.path().string())->print(job);
  EXPECT_TRUE(std::filesystem::exists(dir / ".._evil_.._x.zpl"));
  auto missing = open_printer("dir:" + (dir / "nope").string());
  const Error e = print_error(*missing, job);
  EXPECT_EQ(e.code(), Errc::not_found);
  EXPECT_NE(std::string(e.what()).find("does not exist; create it"), std::string::npos) << e.what();
}

TEST(LabelPrinter, MalformedSpecsAreRefused) {
  for (const char* bad : {"tcp://host", "tcp://:9100", "tcp://h:99999", "tcp://h:x", "lpt:1", "cups:", "cups:a b"}) {
    try {
      open_printer(bad);
      ADD_FAILURE() << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::invalid_argument) << bad;
      EXPECT_NE(std::string(e.what()).find("tcp://HOST:PORT, dir:PATH or cups:QUEUE"), std::string::npos);
    }
  }
  EXPECT_NO_THROW(open_printer("tcp://[::1]:9100"));
}

TEST(LabelPrinter, EveryPrintIsReportedSuccessOrFailure) {
  FakePrinter ok;
  FakePrinter paper(FakePrinter::Mode::paper_out);
  RecordingReporter rec;
  const auto fixed = std::chrono::system_clock::time_point(std::chrono::seconds(1795305600));
  auto clock = [&] { return fixed; };
  const PrintJob job = reference_job();
  auto p1 = open_printer(ok.spec());
  print_and_report(*p1, job, rec, clock);
  auto p2 = open_printer(paper.spec());
  EXPECT_THROW(print_and_report(*p2, job, rec, clock), Error);
  ASSERT_EQ(rec.reports.size(), 2U);
  EXPECT_TRUE(rec.reports[0].ok);
  EXPECT_EQ(rec.reports[0].label, "ACME-2026-000042");
  EXPECT_EQ(rec.reports[0].printer, ok.spec());
  EXPECT_EQ(rec.reports[0].result, "printed");
  EXPECT_EQ(rec.reports[0].bytes, job.data.size());
  EXPECT_FALSE(rec.reports[1].ok);
  EXPECT_EQ(rec.reports[1].code, Errc::device_error);
  EXPECT_NE(rec.reports[1].result.find("paper out"), std::string::npos);

  std::ostringstream out;
  JsonLinesReporter json(out);
  json.report(rec.reports[1]);
  const std::string expected = "{\"label\":\"ACME-2026-000042\",\"printer\":\"" + paper.spec() +
                               "\",\"time\":\"2026-11-22T00:00:00Z\",\"ok\":false,\"code\":\"device error\"";
  EXPECT_EQ(out.str().rfind(expected, 0), 0U) << out.str();
}

TEST(LabelPrinter, HostStatusParsesTheFlagsThatStopPrinting) {
  auto st = parse_host_status(FakePrinter::status_reply(true, false, true));
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(st->paper_out);
  EXPECT_TRUE(st->head_open);
  EXPECT_FALSE(st->paused);
  EXPECT_FALSE(st->ready());
  EXPECT_EQ(st->problems(), "paper out, head open");
  auto ready = parse_host_status(FakePrinter::status_reply(false, false, false));
  ASSERT_TRUE(ready.has_value());
  EXPECT_TRUE(ready->ready());
  EXPECT_FALSE(parse_host_status("\x02" "030,1\x03").has_value());
  EXPECT_FALSE(parse_host_status("garbage").has_value());
}

}  // namespace
}  // namespace station::labels

namespace station::labels {
namespace {

TEST(LabelPrinterConfig, LoadsPrintersFromTheConfigSection) {
  const auto all = printers_from_toml(toml::parse(R"(
    [line1]
    uri = "tcp://10.0.0.7:9100"
    connect_timeout_ms = 1500
    status = "require"
    [spool]
    uri = "dir:/var/lib/station/labels"
  )"));
  ASSERT_EQ(all.size(), 2U);
  EXPECT_EQ(all.at("line1").uri, "tcp://10.0.0.7:9100");
  EXPECT_EQ(all.at("line1").options.connect_timeout, std::chrono::milliseconds(1500));
  EXPECT_EQ(all.at("line1").options.status, StatusCheck::require);
  EXPECT_EQ(all.at("spool").options.io_timeout, PrinterOptions{}.io_timeout);
  EXPECT_EQ(all.at("spool").open()->name(), "dir:/var/lib/station/labels");
}

TEST(LabelPrinterConfig, RefusesBadEntriesByKey) {
  auto error_of = [](std::string_view text) -> std::string {
    try {
      printers_from_toml(toml::parse(text));
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::config_error);
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(error_of("[p]\nconnect_timeout_ms = 5\n").find("printers.p.uri: missing"), std::string::npos);
  EXPECT_NE(error_of("[p]\nuri = \"lpt:1\"\n").find("printers.p.uri: printer 'lpt:1': unknown kind"), std::string::npos);
  EXPECT_NE(error_of("[p]\nuri = \"dir:/x\"\nspeed = 3\n").find("printers.p.speed: unknown key"), std::string::npos);
  EXPECT_NE(error_of("[p]\nuri = \"dir:/x\"\nconnect_timeout_ms = 0\n").find("printers.p.connect_timeout_ms: 0 is out of range"),
            std::string::npos);
  EXPECT_NE(error_of("[p]\nuri = \"dir:/x\"\nstatus = \"maybe\"\n").find("printers.p.status"), std::string::npos);
}

}  // namespace
}  // namespace station::labels

namespace station::labels {
namespace {

TEST(LabelPrinter, APrinterThatResetsAfterAnyNumberOfBytesIsNeverReportedAsPrinted) {
  // Sweep where the printer gives up, from before the status answer to one byte short.
  const PrintJob job = reference_job();
  for (const std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{10}, std::size_t{100}, job.data.size() / 2,
                              job.data.size() - 1}) {
    FakePrinter fake(FakePrinter::Mode::close_mid_job, n);
    auto printer = open_printer(fake.spec());
    try {
      printer->print(job);
      ADD_FAILURE() << "printed although the printer reset after " << n << " bytes";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::io_error) << n << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find("printer " + fake.spec() + ": the printer closed the connection"),
                std::string::npos)
          << e.what();
    }
  }
}

TEST(LabelPrinter, AReporterThatCannotRecordFailsThePrint) {
  class Broken final : public PrintReporter {
   public:
    void report(const PrintReport&) override { throw Error(Errc::db_error, "journal: disk full"); }
  };
  FakePrinter fake;
  Broken broken;
  auto printer = open_printer(fake.spec());
  try {
    print_and_report(*printer, reference_job(), broken);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::db_error);
  }
}

}  // namespace
}  // namespace station::labels

namespace station::labels {
namespace {

TEST(LabelPrinter, StatusReadsTheHostStatusWithoutPrinting) {
  FakePrinter paper(FakePrinter::Mode::paper_out);
  const auto st = open_printer(paper.spec())->status();
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(st->paper_out);
  EXPECT_EQ(st->problems(), "paper out");
  EXPECT_EQ(paper.jobs(1).at(0), "");  // nothing printed
  FakePrinter silent(FakePrinter::Mode::silent);
  PrinterOptions o;
  o.status_timeout = std::chrono::milliseconds(200);
  EXPECT_FALSE(open_printer(silent.spec(), o)->status().has_value());
  test::TempDir dir("labels-dir");
  EXPECT_FALSE(open_printer("dir:" + dir.path().string())->status().has_value());
}

}  // namespace
}  // namespace station::labels
