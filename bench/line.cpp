// Parts 2 and 3: the real line (ProvisioningLine: reserve, DPP key, certificate signed in
// the HSM, write/commit/read-back/challenge against the simulator's device logic, lock, ZPL
// label printed to a TCP label printer (a loopback listener speaking the raw port-9100
// protocol; `--printer dir`: the spool folder, written and fsynced per label), every state
// journaled durably) with K fixtures, over
// in-process zero-latency links (part 2) or over pseudo-terminals to `simdevice` processes
// emulating a baud rate (part 3). Measures devices per second, the time each device spends
// in its fixture, peak memory, and per device: HSM signatures, challenges verified, journal
// entries and link bytes.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <optional>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "bench.hpp"
#include "core/batches.hpp"
#include "core/ca_lifecycle.hpp"
#include "core/pipeline.hpp"
#include "db/journal.hpp"
#include "fixtures/fixture.hpp"
#include "printer_sink.hpp"
#include "simdevice/device.hpp"
#include "simdevice/inprocess_link.hpp"

namespace station::bench {
namespace {

namespace sim = fixtures::sim;

// simdevice processes, killed (by pid) and reaped when this goes.
class Simulators {
 public:
  Simulators() = default;
  Simulators(const Simulators&) = delete;
  Simulators& operator=(const Simulators&) = delete;
  ~Simulators() {
    for (const pid_t p : pids_) ::kill(p, SIGKILL);
    for (const pid_t p : pids_) ::waitpid(p, nullptr, 0);
  }
  void spawn(const fs::path& binary, std::vector<std::string> args, const fs::path& log) {
    args.insert(args.begin(), binary.string());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) throw Error(Errc::io_error, "bench: fork failed");
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(1);
      if (log_fd >= 0) {
        ::dup2(log_fd, 1);
        ::dup2(log_fd, 2);
      }
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    if (log_fd >= 0) ::close(log_fd);
    pids_.push_back(pid);
  }

 private:
  std::vector<pid_t> pids_;
};

std::uint64_t count_files(const fs::path& dir) {
  std::error_code ec;
  std::uint64_t n = 0;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file()) ++n;
  return n;
}

}  // namespace

nlohmann::json run_line(const fs::path& work, const LineBenchOptions& o) {
  if (o.devices < 1 || o.fixtures < 1) throw Error(Errc::invalid_argument, "bench: --devices and --fixtures >= 1");
  const bool serial = o.baud > 0;
  const fs::path dir = work / fmt::format("{}-{}", serial ? "serial" : "line", o.devices);
  make_station(dir, true);
  if (o.printer != "tcp" && o.printer != "dir")
    throw Error(Errc::invalid_argument, "bench: --printer tcp|dir, not " + o.printer);
  std::optional<PrinterSink> sink;
  if (o.printer == "tcp") {
    // The line's printer: ~HS answered ("require": a job goes out only after a ready
    // status), each job read to its end.
    sink.emplace();
    std::ofstream(dir / "station.conf", std::ios::app)
        << "\n[printers.bench]\nuri = '" << sink->uri() << "'\nstatus = 'require'\n";
  }
  core::Station station(dir, std::nullopt);
  const std::string actor = core::os_user();
  core::refresh_crls(station, actor, station.config().resolve(station.config().line.crl_dir));
  core::BatchSettings settings;
  settings.product = "Bench Widget";
  settings.quantity = o.devices;
  settings.serial_pattern = "BENCH-{seq:07}";
  settings.key_mode = "station";
  settings.lock = true;
  const auto batch = core::open_batch(station, "BENCH", settings, actor);

  // The devices: fixture k sees its share of the batch in turn (no swap delay).
  std::vector<std::unique_ptr<sim::Line>> lines;
  std::vector<std::unique_ptr<sim::Endpoint>> endpoints;
  Simulators sims;
  std::vector<core::FixtureSection> fixtures;
  for (int k = 1; k <= o.fixtures; ++k) {
    const std::int64_t share = o.devices / o.fixtures + (k <= o.devices % o.fixtures ? 1 : 0);
    if (share == 0) continue;
    core::FixtureSection f;
    f.number = k;
    if (sink) f.printer = "bench";
    f.link.name = fmt::format("fixture {}", k);
    f.link.transport = "serial";
    if (serial) {
      const fs::path sdir = dir / "sim" / fmt::format("fixture-{}", k);
      fs::create_directories(sdir);
      f.link.port = (sdir / "tty").string();
      f.link.baud = o.baud;
      sims.spawn(o.simdevice,
                 {"--pty", f.link.port, "--devices", std::to_string(share), "--flash-dir", sdir.string(), "--baud",
                  std::to_string(o.baud)},
                 sdir / "simdevice.log");
    } else {
      sim::LineOptions lo;
      lo.devices = static_cast<unsigned>(share);
      lines.push_back(std::make_unique<sim::Line>(lo));
      endpoints.push_back(std::make_unique<sim::Endpoint>(*lines.back()));
      f.link.port = "in-process";
    }
    fixtures.push_back(f);
  }
  if (serial) {
    for (const auto& f : fixtures) {
      const auto until = Clock::now() + std::chrono::seconds(10);
      while (!fs::exists(f.link.port) && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (!fs::exists(f.link.port)) throw Error(Errc::timeout, "bench: simdevice did not create " + f.link.port);
    }
  }

  auto counters = std::make_shared<LinkCounters>();
  const std::uint64_t signs0 = hsm_signatures();
  const std::int64_t seq0 = station.journal().last()->seq;
  const auto journal0 = station.journal().counters();

  // Each device's time in its fixture: from the previous device leaving it (or the start)
  // to this one leaving it.
  std::mutex mutex;
  std::map<int, Clock::time_point> last_left;
  std::vector<double> per_device;
  per_device.reserve(static_cast<std::size_t>(o.devices));
  std::int64_t failed = 0;

  core::LineOptions lo;
  lo.batch = batch.name;
  lo.fixtures = fixtures;
  lo.actor = actor;
  // Devices are presented the moment the previous one leaves, so the empty-fixture poll
  // interval (an operator swapping a device by hand takes seconds) is not part of it.
  lo.poll = std::chrono::milliseconds(0);
  lo.stop_when_complete = true;
  lo.stop_when_idle = std::chrono::milliseconds(5000);
  lo.open_link = [&](fixtures::asio::any_io_executor ex, const core::FixtureSection& f) -> std::unique_ptr<fixtures::Link> {
    std::unique_ptr<fixtures::Link> inner;
    if (serial) inner = fixtures::open_link(ex, f.link);
    else inner = std::make_unique<sim::InProcessLink>(ex, *endpoints[static_cast<std::size_t>(f.number - 1)]);
    return std::make_unique<CountingLink>(std::move(inner), counters);
  };
  Clock::time_point t0;
  lo.on_device = [&](const nlohmann::json& d) {
    const auto now = Clock::now();
    const std::lock_guard lock(mutex);
    const int k = d.value("fixture", 0);
    auto it = last_left.find(k);
    per_device.push_back(std::chrono::duration<double>(now - (it == last_left.end() ? t0 : it->second)).count());
    last_left[k] = now;
    if (d.value("state", "") != "done") ++failed;
  };
  core::ProvisioningLine line(station, lo);
  t0 = Clock::now();
  const auto summary = line.run();
  const double elapsed = summary.seconds;

  const std::int64_t done = summary.done;
  const double n = done > 0 ? static_cast<double>(done) : 1.0;
  const std::int64_t entries = station.journal().last()->seq - seq0;
  const std::uint64_t signs = hsm_signatures() - signs0;
  const auto journal1 = station.journal().counters();
  const auto journal_per_device = [&](std::uint64_t db::Journal::Counters::*field) {
    return static_cast<double>(journal1.*field - journal0.*field) / n;
  };
  const double rss = peak_rss_mb();
  double mean = 0;
  for (const double x : per_device) mean += x;
  mean = per_device.empty() ? 0 : mean / static_cast<double>(per_device.size());

  nlohmann::json out = {
      {"mode", serial ? "serial" : "in-process"},
      {"printer", sink ? "tcp" : "dir"},
      {"devices", o.devices},
      {"fixtures", static_cast<int>(fixtures.size())},
      {"done", done},
      {"failed", summary.failed + failed},
      {"seconds", elapsed},
      {"devices_per_s", static_cast<double>(done) / elapsed},
      {"s_per_device_mean", mean},
      {"s_per_device_p50", percentile(per_device, 50)},
      {"s_per_device_p99", percentile(per_device, 99)},
      {"peak_rss_mb", rss},
      {"per_device",
       {{"hsm_signatures", static_cast<double>(signs) / n},
        {"challenges_verified", static_cast<double>(counters->challenges.load()) / n},
        {"journal_entries", static_cast<double>(entries) / n},
        // How the journal wrote them: units (each waited for or queued by the pipeline),
        // transactions (one fsync each) and database pages written to the WAL.
        {"journal_units", journal_per_device(&db::Journal::Counters::units)},
        {"journal_transactions", journal_per_device(&db::Journal::Counters::transactions)},
        {"wal_pages", journal_per_device(&db::Journal::Counters::pages_written)},
        {"labels_printed",
         static_cast<double>(sink ? sink->jobs() : count_files(station.config().resolve("labels"))) / n},
        {"bytes_sent", static_cast<double>(counters->bytes_sent.load()) / n},
        {"bytes_received", static_cast<double>(counters->bytes_received.load()) / n}}}};
  if (serial) {
    out["baud"] = o.baud;
    const double bytes = static_cast<double>(counters->bytes_sent.load() + counters->bytes_received.load()) / n;
    out["wire_s_per_device"] = bytes * 10.0 / o.baud;
  }
  // The proof that nothing was skipped: every device done, and the journal verifies.
  {
    db::Connection conn(station.config().resolve(station.config().database), true);
    auto st = conn.prepare("SELECT count(*) FROM devices WHERE state = 'done'");
    st.step();
    out["devices_done_in_db"] = st.int64(0);
    const auto t = Clock::now();
    const auto report = db::verify_journal(conn);
    out["journal_verified"] = report.ok;
    out["verify_s"] = seconds_since(t);
  }
  return out;
}

}  // namespace station::bench
