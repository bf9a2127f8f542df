// station serve (the real line: every configured fixture, plus the HTTP API) and station
// demo (the same line on the embedded defaults with simulated devices).
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <functional>
#include <fstream>
#include <mutex>
#include <iostream>
#include <memory>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/cli.hpp"
#include "core/batches.hpp"
#include "core/ca_lifecycle.hpp"
#include "core/pipeline.hpp"
#include "core/station.hpp"
#include "db/journal.hpp"
#include "db/records.hpp"
#include "core/labelling.hpp"
#include "http/server.hpp"
#include "core/shared_push.hpp"
#include "labels/render.hpp"

namespace station::cli {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------
// Simulated devices for the demo

// The simulators never outlive the station: each is forked from the main thread (which
// lives as long as the station) with PR_SET_PDEATHSIG, checks getppid() after setting it,
// and all of them share one process group that is killed on every exit path.
class Simulators {
 public:
  Simulators() = default;
  Simulators(const Simulators&) = delete;
  Simulators& operator=(const Simulators&) = delete;
  ~Simulators() { kill_all(); }

  // The simulator's output goes to `log` (appended).
  void spawn(const fs::path& binary, const std::vector<std::string>& args, const fs::path& log) {
    const int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    std::vector<std::string> argv = {binary.string()};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    const pid_t parent = ::getpid();
    const pid_t group = pgid_.load();
    const pid_t pid = ::fork();
    if (pid < 0) {
      if (log_fd >= 0) ::close(log_fd);
      throw Error(Errc::io_error, "cannot start a simulator (fork failed)");
    }
    if (pid == 0) {
      // Child: async-signal-safe calls only.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(1);
      ::setpgid(0, group);
      // O_CLOEXEC on log_fd: dup2 makes 1 and 2 inheritable copies.
      const int null = ::open("/dev/null", O_RDWR);
      if (null >= 0) ::dup2(null, 0);
      if (log_fd >= 0) {
        ::dup2(log_fd, 1);
        ::dup2(log_fd, 2);
      }
      ::execv(cargv[0], cargv.data());
      ::_exit(127);
    }
    if (log_fd >= 0) ::close(log_fd);
    ::setpgid(pid, group == 0 ? pid : group);  // race-free: both sides set it
    if (group == 0) pgid_ = pid;
    pids_.push_back(pid);
    active_group() = pgid_.load();
  }

  void kill_all() noexcept {
    const pid_t g = pgid_.exchange(0);
    if (g > 0) ::kill(-g, SIGKILL);
    for (const pid_t p : pids_) ::waitpid(p, nullptr, 0);
    pids_.clear();
    active_group() = 0;
  }

  // For the signal handler: the group to kill when the station is interrupted.
  static std::atomic<pid_t>& active_group() {
    static std::atomic<pid_t> g{0};
    return g;
  }

 private:
  std::atomic<pid_t> pgid_{0};
  std::vector<pid_t> pids_;
};

fs::path find_simdevice() {
  if (const char* env = std::getenv("STATION_SIMDEVICE")) return env;
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  for (const fs::path& candidate : {self.parent_path() / "simdevice", self.parent_path().parent_path() / "fixtures" / "simdevice"})
    if (fs::exists(candidate, ec)) return candidate;
  throw Error(Errc::not_found, "cannot find the simdevice program next to the station (set STATION_SIMDEVICE=PATH)");
}

bool wait_for(const fs::path& p, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    std::error_code ec;
    if (fs::exists(p, ec)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// ---------------------------------------------------------------------------------------
// Signals: SIGINT/SIGTERM stop the line in order (devices in flight finish their step or
// are recovered at the next start); a second one ends the process at once.

void block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before any thread starts: all inherit it
}

class LineSignals {
 public:
  explicit LineSignals(core::ProvisioningLine& line) : LineSignals([&line] { line.stop(); }) {}
  explicit LineSignals(std::function<void()> on_stop)
      : thread_([this, on_stop = std::move(on_stop)] {
          sigset_t set;
          sigemptyset(&set);
          sigaddset(&set, SIGINT);
          sigaddset(&set, SIGTERM);
          const timespec tick{0, 200 * 1000 * 1000};
          while (!done_) {
            const int sig = ::sigtimedwait(&set, nullptr, &tick);
            if (sig <= 0) continue;
            if (interrupted_.exchange(true)) {
              if (const pid_t g = Simulators::active_group().load(); g > 0) ::kill(-g, SIGKILL);
              ::_exit(130);
            }
            std::fprintf(stderr, "\nstation: stopping (devices in flight finish their step; again to quit now)\n");
            on_stop();
          }
        }) {}
  ~LineSignals() {
    done_ = true;
    thread_.join();
  }
  bool interrupted() const noexcept { return interrupted_; }

 private:
  std::atomic<bool> done_{false};
  std::atomic<bool> interrupted_{false};
  std::thread thread_;
};

void write_label_pngs(core::Station& station, const core::Batch& batch) {
  const auto dir = station.config().resolve("labels");
  fs::create_directories(dir);
  const auto tpl = station.config().label_template(batch.settings.label_template);
  std::vector<std::string> serials;
  {
    const std::lock_guard lock(station.mutex());
    auto st = station.records().connection().prepare("SELECT serial FROM devices WHERE batch_id = ? AND state = 'done'");
    st.bind(1, batch.id);
    while (st.step()) serials.push_back(st.text(0));
  }
  for (const auto& serial : serials) {
    const fs::path png = dir / (serial + ".png");
    if (fs::exists(png)) continue;
    const Bytes bytes = labels::render_png(tpl, core::device_label_data(station, serial));
    std::ofstream out(png, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
}

// ---------------------------------------------------------------------------------------
// Progress

class ProgressBar {
 public:
  ProgressBar(std::int64_t total, std::int64_t already, bool quiet)
      : total_(total), done_(already), tty_(::isatty(2) != 0), quiet_(quiet) {}
  void device(const nlohmann::json& d) {
    const std::lock_guard lock(mutex_);
    if (d.value("state", "") == "done") ++done_; else ++failed_;
    if (quiet_) return;
    const std::int64_t pct = total_ > 0 ? (done_ + failed_) * 100 / total_ : 100;
    if (tty_) {
      const int width = 30;
      const int filled = static_cast<int>(pct * width / 100);
      std::fprintf(stderr, "\r[%s%s] %lld/%lld done, %lld failed ", std::string(static_cast<std::size_t>(filled), '#').c_str(),
                   std::string(static_cast<std::size_t>(width - filled), ' ').c_str(), static_cast<long long>(done_),
                   static_cast<long long>(total_), static_cast<long long>(failed_));
    } else if (pct / 10 != last_decile_) {
      last_decile_ = pct / 10;
      std::fprintf(stderr, "progress: %lld/%lld done, %lld failed\n", static_cast<long long>(done_),
                   static_cast<long long>(total_), static_cast<long long>(failed_));
    }
  }
  void finish() {
    if (tty_ && !quiet_) std::fprintf(stderr, "\n");
  }

 private:
  std::mutex mutex_;
  std::int64_t total_, done_, failed_ = 0;
  std::int64_t last_decile_ = -1;
  bool tty_, quiet_;
};

// What the HTTP API sees of the line: the line working on the open batch, or, between
// batches, the configured fixtures waiting for one.
class CurrentLine final : public core::LineView {
 public:
  explicit CurrentLine(std::vector<core::FixtureSection> fixtures) : fixtures_(std::move(fixtures)) {}
  void set(core::ProvisioningLine* line) {
    const std::lock_guard lock(mutex_);
    line_ = line;
  }
  std::vector<core::FixtureView> fixtures() const override {
    const std::lock_guard lock(mutex_);
    if (line_ != nullptr) return line_->fixtures();
    std::vector<core::FixtureView> out;
    for (const auto& f : fixtures_) {
      core::FixtureView v;
      v.number = f.number;
      v.name = f.link.name;
      v.port = f.link.transport == "usb" ? "usb " + f.link.port : f.link.port;
      v.status = "paused";
      v.reason = "no open batch";
      v.hint = "open a batch to start the line";
      out.push_back(v);
    }
    return out;
  }
  nlohmann::json progress() const override {
    const std::lock_guard lock(mutex_);
    if (line_ != nullptr) return line_->progress();
    return {{"batch", nullptr}, {"state", "none"}, {"done", 0}, {"failed", 0}, {"in_flight", 0},
            {"devices_per_min", 0.0}, {"hsm", "ok"}};
  }

 private:
  mutable std::mutex mutex_;
  std::vector<core::FixtureSection> fixtures_;
  core::ProvisioningLine* line_ = nullptr;
};

// ---------------------------------------------------------------------------------------
// station demo

struct DemoOptions {
  fs::path data;
  std::int64_t devices = 200;
  int fixtures = 4;
  bool json = false;
  std::string key_mode = "station";
  bool lock = true;
  bool no_png = false;
  std::vector<std::string> sim_faults;  // "K:--flag[=value]": extra simdevice options for fixture K
  bool serve = false;                    // keep the API and page up after the batch
  std::optional<std::string> listen;
};

nlohmann::json batch_summary(core::Station& station, const core::Batch& b, double devices_per_s, bool verified) {
  nlohmann::json failures = nlohmann::json::array();
  std::int64_t done = 0, failed = 0;
  {
    const std::lock_guard lock(station.mutex());
    auto st = station.records().connection().prepare(
        "SELECT serial, fixture, state, reason FROM devices WHERE batch_id = ? ORDER BY id");
    st.bind(1, b.id);
    while (st.step()) {
      const std::string state = st.text(2);
      if (state == "done") {
        ++done;
      } else {
        if (state == "failed") ++failed;
        failures.push_back({{"serial", st.text(0)},
                            {"fixture", st.is_null(1) ? nlohmann::json(nullptr) : nlohmann::json(st.text(1))},
                            {"state", state},
                            {"reason", st.is_null(3) ? nlohmann::json(nullptr) : nlohmann::json(st.text(3))}});
      }
    }
  }
  return {{"batch", b.name},           {"devices_done", done},
          {"devices_failed", failed},  {"failures", failures},
          {"devices_per_s", devices_per_s}, {"journal_verified", verified}};
}

void demo(const DemoOptions& o) {
  if (o.devices < 1) throw Error(Errc::invalid_argument, "--devices must be at least 1");
  if (o.fixtures < 1 || o.fixtures > 64) throw Error(Errc::invalid_argument, "--fixtures must be 1 to 64");
  block_stop_signals();
  const bool fresh = !fs::exists(o.data / "station.conf");
  if (fresh) {
    core::InitOptions init;
    init.data_dir = o.data;
    core::init_station(init);
    if (!o.json)
      std::cout << "created a station in " << o.data.string() << " (SoftHSM2 token, root/issuing/audit keys)" << std::endl;
  }
  core::Station station(o.data, std::nullopt);
  const std::string actor = core::os_user();
  if (fresh) core::refresh_crls(station, actor, station.config().resolve(station.config().line.crl_dir));

  // The batch: the open demo batch (resume after a power cut), or a new one.
  std::optional<core::Batch> batch;
  for (auto& b : core::list_batches(station))
    if (b.state != "closed" && b.name.rfind("DEMO-", 0) == 0) batch = b;
  const bool resumed = batch.has_value();
  if (!batch) {
    char stamp[32];
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    ::gmtime_r(&now, &tm);
    std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    core::BatchSettings s;
    s.product = "Demo Widget";
    s.quantity = o.devices;
    s.serial_pattern = "DEMO-{yyyy}-{seq:06}";
    s.key_mode = o.key_mode;
    s.lock = o.lock;
    batch = core::open_batch(station, std::string("DEMO-") + stamp, s, actor);
  } else if (batch->state == "paused") {
    batch = core::set_batch_state(station, batch->name, "open", actor);
  }
  const std::int64_t quantity = batch->settings.quantity;
  if (!o.json)
    std::cout << (resumed ? "resuming batch " : "opened batch ") << batch->name << ": " << quantity << " devices, "
              << o.fixtures << " fixtures, keys " << batch->settings.key_mode << std::endl;

  // Simulated fixtures: fixture k presents its share of the batch's chips in turn. Their
  // flash and position live under DIR/sim, so a restarted demo continues where it stopped.
  const auto simdevice = find_simdevice();
  const fs::path sim_root = o.data / "sim" / batch->name;
  Simulators sims;
  std::vector<core::FixtureSection> fixtures;
  for (int k = 1; k <= o.fixtures; ++k) {
    const std::int64_t share = quantity / o.fixtures + (k <= quantity % o.fixtures ? 1 : 0);
    if (share == 0) continue;
    const fs::path dir = sim_root / fmt::format("fixture-{}", k);
    fs::create_directories(dir);
    const fs::path pty = dir / "tty";
    std::error_code ec;
    fs::remove(pty, ec);
    std::vector<std::string> args = {"--pty", pty.string(), "--devices", std::to_string(share), "--flash-dir", dir.string()};
    for (const auto& f : o.sim_faults) {
      const auto colon = f.find(':');
      if (colon != std::string::npos && f.substr(0, colon) == std::to_string(k)) {
        const std::string opt = f.substr(colon + 1);
        const auto eq = opt.find('=');
        args.push_back(opt.substr(0, eq));
        if (eq != std::string::npos) args.push_back(opt.substr(eq + 1));
      }
    }
    sims.spawn(simdevice, args, dir / "simdevice.log");
    core::FixtureSection fx;
    fx.number = k;
    fx.link.name = fmt::format("fixture {}", k);
    fx.link.transport = "serial";
    fx.link.port = pty.string();
    fixtures.push_back(fx);
  }
  for (const auto& f : fixtures)
    if (!wait_for(f.link.port, std::chrono::seconds(10)))
      throw Error(Errc::timeout, fmt::format("the simulator of {} did not create {}", f.link.name, f.link.port));

  for (const auto& line : core::recover_in_flight(station, actor))
    if (!o.json) std::cout << "recovered " << line << "\n";

  ProgressBar bar(quantity, batch->counts.done, o.json);
  core::LineOptions lo;
  lo.batch = batch->name;
  lo.fixtures = fixtures;
  lo.actor = actor;
  lo.poll = std::chrono::milliseconds(50);
  lo.stop_when_complete = true;
  lo.stop_when_idle = std::chrono::milliseconds(3000);
  lo.on_device = [&](const nlohmann::json& d) { bar.device(d); };
  core::EventBus bus;
  CurrentLine current(fixtures);
  std::unique_ptr<boost::asio::io_context> http_io;
  std::unique_ptr<http::Server> server;
  std::thread http_thread;
  if (o.serve) {
    http_io = std::make_unique<boost::asio::io_context>();
    auto http_options = http::options_from_config(station.config().http);
    if (o.listen) http_options.listen = *o.listen;
    server = std::make_unique<http::Server>(*http_io, http_options, http::Context{station, bus, &current});
    server->start();
    std::cout << "station listening on " << (http_options.tls ? "https://" : "http://") << server->address()
              << std::endl;
    http_thread = std::thread([&] { http_io->run(); });
  }
  core::ProvisioningLine line(station, lo, &bus);
  current.set(&line);
  std::atomic<bool> interrupted{false};
  std::atomic<bool> stop_serving{false};
  LineSignals signals([&] {
    interrupted = true;
    stop_serving = true;
    line.stop();
  });
  const auto summary = line.run();
  current.set(nullptr);
  bar.finish();
  sims.kill_all();
  // Ends the page on every exit path below (and after --serve's wait).
  struct StopServer {
    std::unique_ptr<http::Server>& server;
    std::thread& thread;
    ~StopServer() {
      if (server) server->stop();
      if (thread.joinable()) thread.join();
    }
  } stop_server{server, http_thread};

  // PNG previews of the labels (ZPL went to DIR/labels as each device left its fixture).
  if (!o.no_png) write_label_pngs(station, *batch);

  bool verified = false;
  {
    db::Connection conn(station.config().resolve(station.config().database), true);
    verified = db::verify_journal(conn).ok;
  }
  auto after = core::find_batch(station, batch->name);
  const bool complete = after && after->counts.in_flight == 0 &&
                        after->counts.done + after->counts.failed >= quantity;
  fs::path manifest;
  if (complete && !interrupted) {
    fs::create_directories(o.data / "manifests");
    manifest = o.data / "manifests" / (batch->name + ".manifest.jsonl");
    core::close_batch(station, batch->name, manifest, actor);
  }
  const double rate = summary.seconds > 0 ? static_cast<double>(summary.done) / summary.seconds : 0.0;
  auto j = batch_summary(station, *batch, rate, verified);
  auto keep_serving = [&] {
    if (!o.serve) return;
    std::cerr << "serving the page until Ctrl-C" << std::endl;
    while (!stop_serving) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  };
  if (o.json) {
    std::cout << j.dump() << std::endl;
    keep_serving();
    return;
  }
  std::cout << fmt::format("batch {}: {} done, {} failed in this batch; {} devices in {:.1f} s this run ({:.1f}/s)\n",
                           batch->name, j["devices_done"].get<std::int64_t>(), j["devices_failed"].get<std::int64_t>(),
                           summary.done, summary.seconds, rate);
  for (const auto& f : j["failures"])
    std::cout << fmt::format("  {} on fixture {}: {} ({})\n", f["serial"].get<std::string>(),
                             f["fixture"].is_null() ? "?" : f["fixture"].get<std::string>(), f["state"].get<std::string>(),
                             f["reason"].is_null() ? "" : f["reason"].get<std::string>());
  std::cout << "labels: " << (o.data / "labels").string() << (o.no_png ? " (ZPL)\n" : " (ZPL and PNG)\n");
  if (!manifest.empty()) std::cout << "closed; customer manifest: " << manifest.string() << "\n";
  std::cout << "journal " << (verified ? "verified" : "FAILED verification") << std::endl;
  keep_serving();
}

// ---------------------------------------------------------------------------------------
// station serve

struct ServeOptions {
  fs::path data;
  std::optional<fs::path> config;
  std::optional<std::string> listen;
  std::optional<std::string> batch;
};

void serve(const ServeOptions& o) {
  block_stop_signals();
  core::Station station(o.data, o.config);
  const std::string actor = core::os_user();
  for (const auto& line : core::recover_in_flight(station, actor)) std::cout << "recovered " << line << "\n";
  // Shared records: pushed on a thread of their own, and once more when serve stops.
  std::unique_ptr<core::SharedPusher> pusher;
  if (!station.config().shared.url.empty() && station.config().shared.push_every_s > 0) {
    pusher = std::make_unique<core::SharedPusher>(station, std::chrono::seconds(station.config().shared.push_every_s));
    std::cout << "pushing records to the shared database every " << station.config().shared.push_every_s << " s"
              << std::endl;
  }

  core::EventBus bus;
  CurrentLine current(station.config().fixtures);
  boost::asio::io_context http_io;
  auto http_options = http::options_from_config(station.config().http);
  if (o.listen) http_options.listen = *o.listen;
  http::Server server(http_io, http_options, {station, bus, &current});
  server.start();
  std::cout << "station listening on " << (http_options.tls ? "https://" : "http://") << server.address() << std::endl;
  std::thread http_thread([&] { http_io.run(); });

  std::atomic<bool> stopping{false};
  std::mutex line_mutex;
  core::ProvisioningLine* running = nullptr;
  LineSignals signals([&] {
    stopping = true;
    const std::lock_guard lock(line_mutex);
    if (running != nullptr) running->stop();
  });
  std::int64_t done = 0, failed = 0;
  double seconds = 0;
  std::string waiting_for;
  while (!stopping) {
    if (station.config().fixtures.empty()) {
      if (waiting_for != "fixtures") std::cout << "no [fixtures] in station.conf: serving the API only" << std::endl;
      waiting_for = "fixtures";
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    // The line works on one batch; between batches it waits for one to be opened (from the
    // page, the API or `station batch open`).
    core::LineOptions lo;
    lo.batch = o.batch.value_or(station.config().line.batch);
    lo.actor = actor;
    lo.poll = std::chrono::milliseconds(station.config().line.poll_ms);
    lo.stop_when_closed = true;
    std::unique_ptr<core::ProvisioningLine> line;
    try {
      line = std::make_unique<core::ProvisioningLine>(station, lo, &bus);
    } catch (const Error& e) {
      if (e.code() != Errc::invalid_argument && e.code() != Errc::not_found) throw;
      if (waiting_for != e.what()) std::cout << "waiting: " << e.what() << std::endl;
      waiting_for = e.what();
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      continue;
    }
    waiting_for.clear();
    {
      const std::lock_guard lock(line_mutex);
      running = line.get();
      if (stopping) line->stop();
    }
    current.set(line.get());
    std::cout << "line running batch " << line->progress().value("batch", std::string()) << " on "
              << station.config().fixtures.size() << " fixtures" << std::endl;
    const auto summary = line->run();
    current.set(nullptr);
    {
      const std::lock_guard lock(line_mutex);
      running = nullptr;
    }
    done += summary.done;
    failed += summary.failed;
    seconds += summary.seconds;
  }
  server.stop();
  http_thread.join();
  std::cout << fmt::format("stopped: {} devices done, {} failed in {:.1f} s\n", done, failed, seconds);
}

}  // namespace

void register_line(CLI::App& app, Context& /*ctx*/) {
  auto d = std::make_shared<DemoOptions>();
  auto* demo_cmd = app.add_subcommand("demo", "Run the station on the embedded defaults with simulated devices: init, "
                                              "a batch of N over K fixtures, labels, manifest, summary");
  demo_cmd->add_option("--data", d->data, "Station data folder (created when new; resumed when it has an open demo batch)")
      ->required();
  demo_cmd->add_option("--devices", d->devices, "Devices in the batch (default 200)");
  demo_cmd->add_option("--fixtures", d->fixtures, "Simulated fixtures (default 4)");
  demo_cmd->add_flag("--json", d->json, "Print the summary as JSON");
  demo_cmd->add_option("--key-mode", d->key_mode, "station (generated and injected) or on-device");
  demo_cmd->add_flag("!--no-lock", d->lock, "Do not lock the devices after verification");
  demo_cmd->add_flag("--no-png", d->no_png, "Skip the PNG label previews");
  demo_cmd->add_option("--sim-fault", d->sim_faults,
                       "K:--option[=value] for fixture K's simulator (e.g. 2:--fail-commit, 3:--corrupt-frame=5)");
  demo_cmd->add_flag("--serve", d->serve, "Serve the API and the operator's page during and after the batch");
  demo_cmd->add_option("--listen", d->listen, "HTTP address with --serve (default from [http] listen)");
  demo_cmd->callback([d] { demo(*d); });

  auto s = std::make_shared<ServeOptions>();
  auto* serve_cmd = app.add_subcommand("serve", "Run the line: every fixture in station.conf, the HTTP API and page");
  serve_cmd->add_option("--data", s->data, "Station data folder");
  serve_cmd->add_option("--config", s->config, "Config file (default: DIR/station.conf)");
  serve_cmd->add_option("--listen", s->listen, "HTTP address (default from [http] listen, 127.0.0.1:8080)");
  serve_cmd->add_option("--batch", s->batch, "The batch to work on (default: [line] batch, or the only open one)");
  serve_cmd->callback([s] { serve(*s); });
}

}  // namespace station::cli
