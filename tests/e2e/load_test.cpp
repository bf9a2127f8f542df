// `station serve` under a loopback load: the same batch is provisioned twice over simulated
// fixtures at 115200 baud, once with a single light probe and once while 50 clients poll the
// API over keep-alive connections and 50 more hold event streams open. Every request must be
// answered (2xx), every stream must see every device finish, the loaded line must keep (within
// a margin for a shared machine) the unloaded line's pace, and SIGTERM must still stop the
// server in order with the streams open.
//
// Sizes (environment): STATION_LOAD_CLIENTS (default 50), STATION_LOAD_DEVICES (per fixture,
// default 24), STATION_LOAD_POLL_MS (per polling client, default 250).
#include <gtest/gtest.h>

#include <sys/socket.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <atomic>
#include <iterator>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "line_checks.hpp"

namespace station::test {
namespace {

namespace fs = std::filesystem;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = boost::asio::ip::tcp;
using Clock = std::chrono::steady_clock;

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

tcp::endpoint endpoint_of(const std::string& address) {
  const auto colon = address.rfind(':');
  return {boost::asio::ip::make_address(address.substr(0, colon)),
          static_cast<unsigned short>(std::stoi(address.substr(colon + 1)))};
}

// A keep-alive HTTP/1.1 client: reconnects only when the server closed the connection.
class Client {
 public:
  Client(std::string address, std::string token) : address_(std::move(address)), token_(std::move(token)) {}

  // The status, or 0 when the request could not be made or answered.
  int get(const std::string& target, std::string* body = nullptr) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      beast::error_code ec;
      if (!stream_) {
        stream_ = std::make_unique<beast::tcp_stream>(io_);
        stream_->expires_after(std::chrono::seconds(30));
        stream_->connect(endpoint_of(address_), ec);
        if (ec) return 0;
        ++connects;
      }
      bhttp::request<bhttp::empty_body> req{bhttp::verb::get, target, 11};
      req.set(bhttp::field::host, "localhost");
      req.set(bhttp::field::authorization, "Bearer " + token_);
      stream_->expires_after(std::chrono::seconds(30));
      bhttp::write(*stream_, req, ec);
      bhttp::response<bhttp::string_body> res;
      if (!ec) bhttp::read(*stream_, buffer_, res, ec);
      if (ec) {
        // A keep-alive connection the server closed between requests is retried once on a new one.
        stream_.reset();
        buffer_.clear();
        if (attempt == 0 && (ec == bhttp::error::end_of_stream || ec == boost::asio::error::connection_reset ||
                             ec == boost::asio::error::broken_pipe))
          continue;
        return 0;
      }
      if (body != nullptr) *body = res.body();
      if (!res.keep_alive()) stream_.reset();
      return static_cast<int>(res.result_int());
    }
    return 0;
  }

  int connects = 0;

 private:
  boost::asio::io_context io_;
  std::string address_, token_;
  std::unique_ptr<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
};

// One event stream read until the server ends it (or `stop()` shuts the socket): counts the
// `device` events that report a device done, and notes the first serials seen.
class EventStream {
 public:
  EventStream(const std::string& address, const std::string& token) {
    thread_ = std::thread([this, address, token] { read(address, token); });
  }
  ~EventStream() {
    stop();
    if (thread_.joinable()) thread_.join();
  }
  void stop() {
    std::lock_guard lock(mu_);
    if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
  }
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  std::atomic<int> status{0}, done_events{0}, events{0};
  std::atomic<bool> ended_by_server{false};
  std::set<std::string> serials() {
    std::lock_guard lock(mu_);
    return done_serials;
  }

 private:
  void read(const std::string& address, const std::string& token) {
    boost::asio::io_context io;
    tcp::socket socket(io);
    beast::error_code ec;
    socket.connect(endpoint_of(address), ec);
    if (ec) return;
    {
      std::lock_guard lock(mu_);
      fd_ = socket.native_handle();
    }
    // From the first event retained, as a page that (re)connects asks: a stream that connects
    // after the line started still sees every device.
    bhttp::request<bhttp::empty_body> req{bhttp::verb::get, "/api/events?since=0", 11};
    req.set(bhttp::field::host, "localhost");
    req.set(bhttp::field::authorization, "Bearer " + token);
    req.set(bhttp::field::accept, "text/event-stream");
    bhttp::write(socket, req, ec);
    if (ec) return;
    beast::flat_buffer buffer;
    bhttp::response_parser<bhttp::buffer_body> parser;
    parser.body_limit(boost::none);
    bhttp::read_header(socket, buffer, parser, ec);
    if (ec) return;
    status = static_cast<int>(parser.get().result_int());
    std::string text;
    char chunk[8192];
    while (!parser.is_done()) {
      parser.get().body().data = chunk;
      parser.get().body().size = sizeof chunk;
      bhttp::read_some(socket, buffer, parser, ec);  // what has come, not a full buffer
      if (ec == bhttp::error::need_buffer) ec = {};
      if (ec) break;
      text.append(chunk, sizeof chunk - parser.get().body().size);
      // Whole events end with a blank line.
      std::size_t end;
      while ((end = text.find("\n\n")) != std::string::npos) {
        const std::string event = text.substr(0, end);
        text.erase(0, end + 2);
        if (event.rfind(':', 0) == 0) continue;  // heartbeat comment
        ++events;
        if (event.find("event: device\n") != std::string::npos &&
            event.find("\"state\":\"done\"") != std::string::npos) {
          ++done_events;
          const auto at = event.find("\"serial\":\"");
          std::lock_guard lock(mu_);
          if (at != std::string::npos) done_serials.insert(event.substr(at + 10, event.find('"', at + 10) - at - 10));
        }
      }
    }
    ended_by_server = parser.is_done() || ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message;
    std::lock_guard lock(mu_);
    fd_ = -1;
  }

  std::mutex mu_;
  std::set<std::string> done_serials;
  int fd_ = -1;
  std::thread thread_;
};

struct Station {
  TempDir dir{"load"};
  fs::path data = dir / "data";
  std::string operator_token, auditor_token;
  std::vector<std::unique_ptr<Background>> sims;
  std::unique_ptr<Background> serve;
  std::string address;
  int quantity = 0;

  static std::string token_of(const RunResult& r) {
    // `station user add` prints the token on a line of its own, starting with "st_" .. (last word).
    const auto nl = r.out.find_last_not_of("\n ");
    const auto line_start = r.out.rfind('\n', nl);
    return r.out.substr(line_start == std::string::npos ? 0 : line_start + 1, nl + 1 - (line_start + 1));
  }

  Station(int fixtures, int devices_per_fixture) {
    const std::string station = built_binary("station").string();
    EXPECT_EQ(run({station, "init", "--data", data.string()}).exit_code, 0);
    const auto officer = run({station, "user", "add", "--data", data.string(), "--role", "officer", "--name", "olga"});
    EXPECT_EQ(officer.exit_code, 0) << officer.err;
    write_file(dir / "officer.token", token_of(officer));
    for (const auto& [role, name] : std::vector<std::pair<std::string, std::string>>{{"operator", "oscar"}, {"auditor", "ada"}}) {
      const auto r = run({station, "user", "add", "--data", data.string(), "--role", role, "--name", name, "--token-file",
                          (dir / "officer.token").string()});
      EXPECT_EQ(r.exit_code, 0) << r.err;
      (role == "operator" ? operator_token : auditor_token) = token_of(r);
      write_file(dir / (role + ".token"), token_of(r));
    }
    std::string conf = read_file(data / "station.conf");
    conf += "\n[http]\nmax_connections = 256\n";
    conf += "\n[line]\npoll_ms = 50\n";
    for (int k = 1; k <= fixtures; ++k) {
      const auto sim_dir = dir / ("sim" + std::to_string(k));
      fs::create_directories(sim_dir);
      sims.push_back(std::make_unique<Background>(
          std::vector<std::string>{built_binary("simdevice").string(), "--pty", (sim_dir / "tty").string(), "--devices",
                                   std::to_string(devices_per_fixture), "--flash-dir", sim_dir.string(), "--baud", "115200"},
          sim_dir / "log"));
      conf += "\n[fixtures." + std::to_string(k) + "]\nport = '" + (sim_dir / "tty").string() + "'\n";
    }
    write_file(data / "station.conf", conf);
    quantity = fixtures * devices_per_fixture;
    const auto opened = run({station, "batch", "open", "WO-LOAD", "--data", data.string(), "--product", "Widget",
                             "--quantity", std::to_string(quantity), "--key-mode", "on-device",
                             "--token-file", (dir / "operator.token").string()});
    if (opened.exit_code != 0) throw std::runtime_error("batch open: " + opened.err);
  }

  void start() {
    serve = std::make_unique<Background>(
        std::vector<std::string>{built_binary("station").string(), "serve", "--data", data.string(), "--listen", "127.0.0.1:0"},
        dir / "serve.log");
    address = wait_for_listen_address(dir / "serve.log");
  }

  // Waits (probing /api/batches every 100 ms) until the batch is complete; the seconds it
  // took from the server's start, or a negative number on timeout.
  double wait_complete(Clock::time_point started, std::chrono::seconds limit) {
    Client probe(address, auditor_token);
    while (Clock::now() - started < limit) {
      std::string body;
      if (probe.get("/api/batches", &body) == 200) {
        const auto j = nlohmann::json::parse(body, nullptr, false);
        if (j.is_array() && !j.empty() && j[0].value("done", 0) + j[0].value("failed", 0) >= quantity)
          return std::chrono::duration<double>(Clock::now() - started).count();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return -1;
  }

  std::string log() const { return read_file(dir / "serve.log"); }
};

struct Load {
  std::atomic<bool> stop{false};
  std::atomic<long> requests{0}, failures{0};
  std::mutex mu;
  std::vector<std::string> failed;  // the first few, for the message
  std::vector<std::thread> pollers;
  std::vector<std::unique_ptr<EventStream>> streams;

  // Four in five clients are operators' pages; every fifth is an auditor following the journal.
  Load(const std::string& address, const std::string& operator_token, const std::string& auditor_token, int clients,
       int poll_ms) {
    for (int i = 0; i < clients; ++i) streams.push_back(std::make_unique<EventStream>(address, operator_token));
    for (int i = 0; i < clients; ++i)
      pollers.emplace_back([this, address, operator_token, auditor_token, poll_ms, i] {
        static const std::vector<std::string> kPage = {"/api/progress", "/api/fixtures", "/api/batches",
                                                       "/api/devices?last=10", "/api/health"};
        static const std::vector<std::string> kAudit = {"/api/journal?since=0&limit=50", "/api/devices?state=done",
                                                        "/api/batches"};
        const bool auditor = i % 5 == 4;
        const auto& targets = auditor ? kAudit : kPage;
        Client client(address, auditor ? auditor_token : operator_token);
        std::size_t next = static_cast<std::size_t>(i);
        while (!stop) {
          const auto& target = targets[next++ % targets.size()];
          std::string body;
          const int status = client.get(target, &body);
          ++requests;
          if (status < 200 || status > 299) {
            ++failures;
            std::lock_guard lock(mu);
            if (failed.size() < 5) failed.push_back(target + " -> " + std::to_string(status) + " " + body.substr(0, 200));
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms));
        }
      });
  }
  void stop_polling() {
    stop = true;
    for (auto& t : pollers) t.join();
    pollers.clear();
  }
  ~Load() {
    stop_polling();
  }
};

TEST(LoadServe, FiftyClientsPollingAndStreamingLeaveTheLineAtFullSpeedAndEveryRequestAnswered) {
  const int clients = env_int("STATION_LOAD_CLIENTS", 50);
  const int per_fixture = env_int("STATION_LOAD_DEVICES", 24);
  const int poll_ms = env_int("STATION_LOAD_POLL_MS", 250);
  constexpr int kFixtures = 4;
  const auto limit = std::chrono::seconds(240);

  // 1. The pace of the line with nobody watching but one probe.
  double quiet_s = 0;
  {
    Station st(kFixtures, per_fixture);
    const auto started = Clock::now();
    st.start();
    ASSERT_FALSE(st.address.empty()) << st.log();
    quiet_s = st.wait_complete(started, limit);
    ASSERT_GT(quiet_s, 0) << st.log();
    EXPECT_EQ(st.serve->stop(SIGTERM), 0) << st.log();
  }

  // 2. The same batch with the load on from the server's first second.
  Station st(kFixtures, per_fixture);
  const auto started = Clock::now();
  st.start();
  ASSERT_FALSE(st.address.empty()) << st.log();
  Load load(st.address, st.operator_token, st.auditor_token, clients, poll_ms);
  const double loaded_s = st.wait_complete(started, limit);
  ASSERT_GT(loaded_s, 0) << st.log();
  // Give the streams a moment to deliver the last device's events.
  for (int i = 0; i < 50; ++i) {
    bool all = true;
    for (const auto& s : load.streams) all = all && s->done_events >= st.quantity;
    if (all) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  load.stop_polling();
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();

  std::printf("load: %d devices over %d fixtures at 115200 baud: %.2f s quiet, %.2f s under load (%.2fx); "
              "%ld requests from %d pollers (%.0f/s), %d event streams\n",
              st.quantity, kFixtures, quiet_s, loaded_s, loaded_s / quiet_s, load.requests.load(), clients,
              static_cast<double>(load.requests) / seconds, clients);
  EXPECT_EQ(load.failures, 0) << ::testing::PrintToString(load.failed);
  // Not a latency target (that is the benchmark's business; a sanitizer build on two shared
  // cores answers in tens to hundreds of ms): a floor that only a stalled server misses,
  // every poller getting an answer at least every two seconds on average.
  EXPECT_GE(load.requests, static_cast<long>(clients) * static_cast<long>(loaded_s * 1000 / (poll_ms + 2000)))
      << "the pollers made too few requests: the server stalled";
  // Every stream saw every device finish: the done serials of the records, each once.
  const LineFacts facts = check_line(st.data, false, st.dir.path());
  EXPECT_EQ(facts.done, st.quantity);
  const std::set<std::string> done(facts.done_serials.begin(), facts.done_serials.end());
  for (std::size_t i = 0; i < load.streams.size(); ++i) {
    EXPECT_EQ(load.streams[i]->status, 200) << "stream " << i;
    const auto seen = load.streams[i]->serials();
    std::vector<std::string> missed;
    std::set_difference(done.begin(), done.end(), seen.begin(), seen.end(), std::back_inserter(missed));
    EXPECT_TRUE(missed.empty() && load.streams[i]->done_events == st.quantity)
        << "stream " << i << " saw " << load.streams[i]->done_events << " done events and missed "
        << ::testing::PrintToString(missed);
  }
  // Full speed: the line is bound by the serial links, so watchers must not slow it. The
  // margin allows for the load generator sharing this machine's two cores with the station.
  EXPECT_LE(loaded_s, quiet_s * 1.3 + 1.0) << "the line slowed under load: " << quiet_s << " s -> " << loaded_s << " s";

  // SIGTERM with 50 streams open: the server ends them and stops in order.
  EXPECT_EQ(st.serve->stop(SIGTERM), 0) << st.log();
  for (auto& s : load.streams) s->join();
  for (std::size_t i = 0; i < load.streams.size(); ++i)
    EXPECT_TRUE(load.streams[i]->ended_by_server) << "stream " << i << " was not ended by the server";
  EXPECT_NE(st.log().find("devices done"), std::string::npos) << st.log();
}

}  // namespace
}  // namespace station::test
