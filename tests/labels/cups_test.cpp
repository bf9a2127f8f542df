// CUPS for real: a private cupsd (its own ServerRoot, spool, logs and socket in a temporary
// folder) with a raw queue whose device is the loopback printer; `lp -o raw` must deliver the
// ZPL job byte for byte, and print() returns only once CUPS reports the job completed.
#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "common/error.hpp"
#include "fake_printer.hpp"
#include "labels/printer.hpp"
#include "labels/render.hpp"
#include "support.hpp"

extern char** environ;

namespace station::labels {
namespace {

using label_test::FakePrinter;

class PrivateCupsd {
 public:
  PrivateCupsd() : dir_("labels-cups") {
    const auto d = dir_.path();
    for (const char* sub : {"spool", "cache", "state", "tmp", "ppd"}) std::filesystem::create_directories(d / sub);
    test::write_file(d / "cupsd.conf", "Listen " + (d / "cups.sock").string() +
                                           "\nLogLevel debug\nWebInterface No\nBrowsing No\nDefaultAuthType None\n"
                                           "<Location />\n  Order allow,deny\n  Allow all\n</Location>\n"
                                           "<Policy default>\n  <Limit All>\n    Order deny,allow\n  </Limit>\n</Policy>\n");
    test::write_file(d / "cups-files.conf",
                     "ServerRoot " + d.string() + "\nRequestRoot " + (d / "spool").string() + "\nCacheDir " +
                         (d / "cache").string() + "\nStateDir " + (d / "state").string() + "\nTempDir " +
                         (d / "tmp").string() + "\nErrorLog " + (d / "error_log").string() + "\nAccessLog " +
                         (d / "access_log").string() + "\nPageLog " + (d / "page_log").string() +
                         "\nUser lp\nGroup lp\nSystemGroup root\n");
    // cupsd refuses to run its helpers as root: the folder belongs to lp.
    const passwd* lp = ::getpwnam("lp");
    const group* lpg = ::getgrnam("lp");
    if (lp == nullptr || lpg == nullptr) throw std::runtime_error("no lp user/group (install cups)");
    for (const auto& e : std::filesystem::recursive_directory_iterator(d)) {
      (void)::chown(e.path().c_str(), lp->pw_uid, lpg->gr_gid);
    }
    (void)::chown(d.c_str(), lp->pw_uid, lpg->gr_gid);
    ::chmod(d.c_str(), 0755);

    const std::string conf = (d / "cupsd.conf").string();
    const std::string files = (d / "cups-files.conf").string();
    std::vector<std::string> args = {"/usr/sbin/cupsd", "-f", "-c", conf, "-s", files};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (::posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ) != 0) {
      throw std::runtime_error("cannot start cupsd");
    }
    server_ = (d / "cups.sock").string();
    for (int i = 0; i < 100; ++i) {
      if (run({"lpstat", "-r"}).out.find("scheduler is running") != std::string::npos) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    throw std::runtime_error("cupsd did not start; see " + (d / "error_log").string());
  }
  PrivateCupsd(const PrivateCupsd&) = delete;
  PrivateCupsd& operator=(const PrivateCupsd&) = delete;
  ~PrivateCupsd() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int st = 0;
      ::waitpid(pid_, &st, 0);
    }
  }

  test::RunResult run(const std::vector<std::string>& argv) const {
    return test::run(argv, {{"CUPS_SERVER", server_}});
  }
  const std::string& server() const { return server_; }
  std::string log() const { return test::read_file(dir_ / "error_log"); }

 private:
  test::TempDir dir_;
  pid_t pid_ = -1;
  std::string server_;
};

class label_cups : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!test::have_program("lp") || !std::filesystem::exists("/usr/sbin/cupsd")) return;
    cupsd_ = new PrivateCupsd();  // NOLINT: suite-lifetime fixture
    // Every lp/lpstat this process and its children run talks to the private scheduler.
    ::setenv("CUPS_SERVER", cupsd_->server().c_str(), 1);
  }
  static void TearDownTestSuite() {
    delete cupsd_;
    cupsd_ = nullptr;
    ::unsetenv("CUPS_SERVER");
  }
  void SetUp() override {
    if (cupsd_ == nullptr) GTEST_SKIP() << "CUPS (cups, cups-client) not installed: scripts/setup-deps";
  }
  static void add_raw_queue(const std::string& name, int port) {
    const auto r = cupsd_->run({"lpadmin", "-p", name, "-v", "socket://127.0.0.1:" + std::to_string(port), "-E"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static PrintJob job(const std::string& serial) {
    LabelData d;
    d.uri = "DPP:C:81/1;M:2ccf67158817;I:a_b^c~d;V:2;K:MDkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDIgACH/bVKOIqu6MdvjapELv4z/"
            "wiR72RLKVLzznKbEymx3c=;;";
    d.serial = serial;
    return PrintJob{serial, render_zpl(builtin_template("default"), d), "zpl"};
  }
  static PrivateCupsd* cupsd_;
};
PrivateCupsd* label_cups::cupsd_ = nullptr;

TEST_F(label_cups, RawQueueDeliversTheZplJobByteForByte) {
  FakePrinter fake;
  add_raw_queue("zebra", fake.port());
  const PrintJob j = job("ACME-1");
  open_printer("cups:zebra")->print(j);
  // print() returned: CUPS reports the job completed, so the printer has it already.
  const auto jobs = fake.jobs(1, 0);
  ASSERT_EQ(jobs.size(), 1U) << cupsd_->log();
  EXPECT_EQ(jobs[0], j.data);
}

TEST_F(label_cups, MissingQueueNamesTheQueueAndTheFix) {
  auto printer = open_printer("cups:nosuchqueue");
  try {
    printer->print(job("ACME-2"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::io_error);
    const std::string msg = e.what();
    EXPECT_NE(msg.find("printer cups:nosuchqueue: lp failed"), std::string::npos) << msg;
    EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;
    EXPECT_NE(msg.find("lpstat -p nosuchqueue"), std::string::npos) << msg;
  }
}

TEST_F(label_cups, UndeliverableJobTimesOutAndIsCancelled) {
  add_raw_queue("deadprinter", label_test::closed_port());
  PrinterOptions o;
  o.cups_timeout = std::chrono::milliseconds(1500);
  auto printer = open_printer("cups:deadprinter", o);
  try {
    printer->print(job("ACME-3"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::timeout);
    EXPECT_NE(std::string(e.what()).find("so it was cancelled"), std::string::npos) << e.what();
  }
  EXPECT_EQ(cupsd_->run({"lpstat", "-o", "deadprinter"}).out, "");
}

TEST_F(label_cups, StationLabelPrintThroughCups) {
  FakePrinter fake;
  add_raw_queue("line1", fake.port());
  const auto r = test::run({test::built_binary("station").string(), "label", "print", "--uri",
                            "DPP:M:2ccf67158817;K:MDkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDIgACH/bVKOIqu6MdvjapELv4z/"
                            "wiR72RLKVLzznKbEymx3c=;;",
                            "--serial", "ACME-4", "--printer", "cups:line1", "--date", "2026-11-22"},
                           {{"CUPS_SERVER", cupsd_->server()}});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "printed label ACME-4 on cups:line1 (" + std::to_string(fake.jobs(1, 0).at(0).size()) + " bytes)\n");
  EXPECT_NE(fake.jobs(1, 0).at(0).find("^FDSN ACME-4^FS"), std::string::npos);
}

}  // namespace
}  // namespace station::labels
