// The API's routes against a real data folder, through a real server on 127.0.0.1:0: what
// each answers, the events stream, limits (body, read timeout, connections) and stop().
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/socket.h>

#include <filesystem>
#include <future>

#include "http_fixture.hpp"

namespace station::test {
namespace {

using nlohmann::json;

TEST_F(HttpTest, HealthNeedsNoTokenAndReportsVersionHsmAndDatabase) {
  start_server();
  const auto res = get("/api/health");
  ASSERT_EQ(res.status, 200) << res.body;
  const auto j = res.json();
  EXPECT_FALSE(j.value("version", "").empty());
  EXPECT_EQ(j["hsm"], "ok");
  EXPECT_EQ(j["database"], "ok");
  EXPECT_EQ(j["status"], "ok");
  EXPECT_EQ(j["line"], "stopped");
  EXPECT_TRUE(j["journal_seq"].is_number_integer());
  EXPECT_TRUE(j["tls"].is_null());
  EXPECT_EQ(res.header("Cache-Control"), "no-store");
  EXPECT_FALSE(res.header("X-Request-Id").empty());
}

TEST_F(HttpTest, UnknownPathsAndMethodsAreJsonErrors) {
  start_server();
  auto res = get("/api/nothing", "operator");
  EXPECT_EQ(res.status, 404);
  EXPECT_EQ(res.json()["code"], "not_found");
  res = http_request(address_, bhttp::verb::delete_, "/api/batches", {}, tokens_["operator"]);
  EXPECT_EQ(res.status, 405);
  EXPECT_EQ(res.json()["code"], "method_not_allowed");
  res = http_request(address_, bhttp::verb::post, "/api/health", "{}");
  EXPECT_EQ(res.status, 405);
  res = get("/api/batches?bogus=1", "operator");
  EXPECT_EQ(res.status, 400);
  EXPECT_EQ(res.json()["code"], "invalid_argument");
}

TEST_F(HttpTest, WhoamiNamesTheTokensUser) {
  start_server();
  const auto j = get("/api/whoami", "auditor").json();
  EXPECT_EQ(j["name"], "audrey");
  EXPECT_EQ(j["role"], "auditor");
}

TEST_F(HttpTest, BatchesOpenListPauseResumeCloseAndPublishEvents) {
  start_server();
  const auto sub = bus_.subscribe();
  auto res = post("/api/batches",
                  {{"name", "WO-7"}, {"product", "Sensor"}, {"quantity", 3}, {"serial_pattern", "WO7-{seq:04}"}},
                  "operator");
  ASSERT_EQ(res.status, 201) << res.body;
  EXPECT_EQ(res.json()["name"], "WO-7");
  EXPECT_EQ(res.json()["state"], "open");

  res = get("/api/batches", "auditor");
  ASSERT_EQ(res.status, 200);
  ASSERT_EQ(res.json().size(), 1U);
  EXPECT_EQ(res.json()[0]["product"], "Sensor");

  EXPECT_EQ(post("/api/batches/WO-7/pause", json::object(), "operator").json()["state"], "paused");
  res = post("/api/batches/WO-7/pause", json::object(), "operator");
  EXPECT_EQ(res.status, 409) << res.body;
  EXPECT_EQ(res.json()["code"], "conflict");
  EXPECT_EQ(post("/api/batches/WO-7/resume", json(), "officer").json()["state"], "open");
  res = post("/api/batches/WO-7/close", json::object(), "operator");
  ASSERT_EQ(res.status, 200) << res.body;
  EXPECT_EQ(res.json()["state"], "closed");
  EXPECT_EQ(res.json()["missing"], 3);
  EXPECT_TRUE(std::filesystem::exists(res.json()["manifest"].get<std::string>()));

  // The journal names the user who acted.
  std::lock_guard lock(station_->mutex());
  auto st = station_->records().connection().prepare(
      "SELECT actor FROM journal WHERE subject = 'batch:WO-7' AND action = 'batch.opened'");
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.text(0), "olga");

  std::vector<core::Event> events;
  sub->take(events);
  std::vector<std::string> kinds;
  for (const auto& e : events)
    if (e.type == "batch") kinds.push_back(e.data["event"]);
  EXPECT_EQ(kinds, (std::vector<std::string>{"opened", "paused", "resumed", "closed"}));
}

TEST_F(HttpTest, OpeningABatchChecksItsBody) {
  start_server();
  const json good = {{"name", "WO-1"}, {"product", "Sensor"}, {"quantity", 3}};
  struct Case {
    json body;
    int status;
    std::string needle;
  };
  std::vector<Case> cases = {
      {json::array(), 400, "JSON object"},
      {{{"product", "Sensor"}, {"quantity", 3}}, 400, "\"name\" is required"},
      {{{"name", "WO-1"}, {"product", "Sensor"}, {"quantity", "3"}}, 400, "\"quantity\" must be an integer"},
      {{{"name", "WO-1"}, {"product", "Sensor"}, {"quantity", 3}, {"colour", "red"}}, 400, "unknown field \"colour\""},
      {{{"name", "WO-1"}, {"product", "Sensor"}, {"quantity", 0}}, 400, "quantity"},
      {{{"name", "WO-1"}, {"product", "Sensor"}, {"quantity", 3}, {"serial_pattern", "NOSEQ"}}, 400, "serial pattern"},
      {{{"name", "WO-1"}, {"product", "Sensor"}, {"quantity", 3}, {"profile", "nope"}}, 400, "profile"},
      {{{"name", "a/b"}, {"product", "Sensor"}, {"quantity", 3}}, 400, "batch name"},
  };
  for (const auto& c : cases) {
    const auto res = post("/api/batches", c.body, "operator");
    EXPECT_EQ(res.status, c.status) << c.body.dump() << ": " << res.body;
    EXPECT_NE(res.json().value("error", "").find(c.needle), std::string::npos) << res.body;
  }
  const auto raw = http_request(address_, bhttp::verb::post, "/api/batches", "{\"name\": ", tokens_["operator"]);
  EXPECT_EQ(raw.status, 400);
  EXPECT_EQ(post("/api/batches", good, "operator").status, 201);
  const auto again = post("/api/batches", good, "operator");
  EXPECT_EQ(again.status, 409);
  EXPECT_EQ(post("/api/batches/NOPE/pause", json::object(), "operator").status, 404);
}

TEST_F(HttpTest, FixturesAndProgressComeFromTheLine) {
  start_server();
  EXPECT_EQ(get("/api/fixtures", "operator").json(), json::array());
  EXPECT_EQ(get("/api/progress", "operator").json()["running"], false);
  stop_server();

  FakeLine line;
  core::FixtureView f;
  f.number = 3;
  f.name = "fixture 3";
  f.port = "/dev/ttyUSB2";
  f.status = "failed";
  f.serial = "SN-1";
  f.reason = "device did not answer HELLO within 2 s";
  f.hint = "check the cable";
  line.set({f}, {{"batch", "WO-1"}, {"state", "open"}, {"done", 4}, {"failed", 1}, {"in_flight", 2},
                 {"devices_per_min", 12.5}, {"hsm", "ok"}, {"started", "2026-11-22T08:00:00Z"}});
  io_.restart();
  start_server({}, &line);
  const auto fx = get("/api/fixtures", "auditor").json();
  ASSERT_EQ(fx.size(), 1U);
  EXPECT_EQ(fx[0]["number"], 3);
  EXPECT_EQ(fx[0]["status"], "failed");
  EXPECT_EQ(fx[0]["hint"], "check the cable");
  EXPECT_TRUE(fx[0]["step"].is_null());
  const auto p = get("/api/progress", "operator").json();
  EXPECT_EQ(p["running"], true);
  EXPECT_EQ(p["done"], 4);
  EXPECT_EQ(p["devices_per_min"], 12.5);
  EXPECT_EQ(get("/api/health").json()["line"], "running");
}

TEST_F(HttpTest, DevicesQueryBySerialMacStateAndLast) {
  open_batch("WO-D");
  add_device("D-1", "02a0b1000001", "done", "WO-D");
  add_device("D-2", "02a0b1000002", "failed", "WO-D");
  add_device("D-3", "02a0b1000003", "done", "WO-D");
  start_server();
  auto j = get("/api/devices", "auditor").json();
  ASSERT_EQ(j.size(), 3U);
  EXPECT_EQ(j[0]["serial"], "D-1");
  EXPECT_TRUE(j[0]["label"].is_null());
  j = get("/api/devices?serial=D-2", "operator").json();
  ASSERT_EQ(j.size(), 1U);
  EXPECT_EQ(j[0]["state"], "failed");
  EXPECT_EQ(j[0]["reason"], "device did not answer HELLO within 2 s");
  j = get("/api/devices?mac=02:A0:B1:00:00:03", "operator").json();
  ASSERT_EQ(j.size(), 1U);
  EXPECT_EQ(j[0]["serial"], "D-3");
  EXPECT_EQ(get("/api/devices?state=done&serial=&mac=", "operator").json().size(), 2U);
  j = get("/api/devices?last=2", "operator").json();
  ASSERT_EQ(j.size(), 2U);
  EXPECT_EQ(j[0]["serial"], "D-3");  // newest first
  EXPECT_EQ(get("/api/devices?batch=WO-D&limit=1", "operator").header("X-Total-Count"), "3");
  EXPECT_EQ(get("/api/devices?mac=zz", "operator").status, 400);
  EXPECT_EQ(get("/api/devices?state=lost", "operator").status, 400);
  EXPECT_EQ(get("/api/devices?colour=red", "operator").status, 400);

  const auto d = get("/api/devices/D-1", "auditor");
  ASSERT_EQ(d.status, 200) << d.body;
  EXPECT_EQ(d.json()["mac"], "02a0b1000001");
  EXPECT_EQ(d.json()["identities"].size(), 1U);
  EXPECT_EQ(d.json()["journal"][0]["action"], "device.test");
  EXPECT_EQ(get("/api/devices/NOPE", "auditor").status, 404);
}

TEST_F(HttpTest, ReprintPrintsTheLabelAgainAndJournalsTheUser) {
  open_batch("WO-L");
  add_device("L-1", "02a0b1000011", "done", "WO-L");
  start_server();
  const auto sub = bus_.subscribe();
  const auto res = post("/api/devices/L-1/reprint", json::object(), "operator");
  ASSERT_EQ(res.status, 200) << res.body;
  EXPECT_EQ(res.json()["serial"], "L-1");
  EXPECT_EQ(res.json()["status"], "printed");
  EXPECT_EQ(count_actions("label.reprinted"), 1);
  std::vector<core::Event> events;
  sub->take(events);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().type, "device");
  EXPECT_EQ(events.back().data["serial"], "L-1");
  // The label status shows on the device list.
  const auto j = get("/api/devices?serial=L-1", "operator").json();
  EXPECT_EQ(j[0]["label"]["result"], "printed") << j.dump();
  EXPECT_EQ(post("/api/devices/NOPE/reprint", json::object(), "operator").status, 404);
}

// An officer sends a done device back to the line: its certificate is revoked, it is
// `reserved` again, the page hears of it; a device that is not done is refused with why.
TEST_F(HttpTest, AnOfficerReprovisionsADoneDevice) {
  open_batch("WO-R");
  add_device("R-1", "02a0b1000031", "done", "WO-R");
  start_server();
  const auto sub = bus_.subscribe();
  const auto res = post("/api/devices/R-1/reprovision", {{"reason", "RMA 12: returned"}}, "officer");
  ASSERT_EQ(res.status, 200) << res.body;
  const auto j = res.json();
  EXPECT_EQ(j["serial"], "R-1");
  EXPECT_EQ(j["state"], "reserved");
  EXPECT_EQ(j["batch"], "WO-R");
  ASSERT_EQ(j["revoked"].size(), 1U) << res.body;
  EXPECT_EQ(count_actions("device.reprovisioned"), 1);
  EXPECT_EQ(count_actions("device.revoked"), 1);
  std::vector<core::Event> events;
  sub->take(events);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().data["event"], "reprovisioned");
  EXPECT_EQ(events.back().data["serial"], "R-1");
  EXPECT_EQ(get("/api/devices?serial=R-1", "auditor").json()[0]["state"], "reserved");
  // Again: it is not done any more, so there is nothing for an officer to decide.
  const auto again = post("/api/devices/R-1/reprovision", {{"reason", "twice"}}, "officer");
  EXPECT_EQ(again.status, 400) << again.body;
  EXPECT_NE(again.json()["error"].get<std::string>().find("not done"), std::string::npos) << again.body;
  EXPECT_EQ(post("/api/devices/NOPE/reprovision", {{"reason", "x"}}, "officer").status, 404);
  EXPECT_EQ(count_actions("device.reprovisioned"), 1);
}

TEST_F(HttpTest, LabelPreviewIsAPng) {
  open_batch("WO-P");
  add_device("P-1", "02a0b1000021", "done", "WO-P");
  start_server();
  const auto res = get("/api/devices/P-1/label.png", "operator");
  ASSERT_EQ(res.status, 200) << res.body;
  EXPECT_EQ(res.header("Content-Type"), "image/png");
  ASSERT_GT(res.body.size(), 8U);
  EXPECT_EQ(res.body.substr(1, 3), "PNG");
  EXPECT_EQ(get("/api/devices/NOPE/label.png", "operator").status, 404);
}

TEST_F(HttpTest, JournalSinceSequenceOrTimeForAuditors) {
  start_server();
  open_batch("WO-J");
  const auto all = get("/api/journal", "auditor").json();
  ASSERT_GE(all.size(), 2U);
  const auto last = all.back()["seq"].get<std::int64_t>();
  EXPECT_EQ(all.back()["action"], "batch.opened");
  EXPECT_EQ(all.back()["details"]["name"], "WO-J");
  const auto since = get("/api/journal?since=" + std::to_string(last - 1), "officer").json();
  ASSERT_EQ(since.size(), 1U);
  EXPECT_EQ(since[0]["seq"], last);
  EXPECT_EQ(get("/api/journal?limit=1", "auditor").json().size(), 1U);
  EXPECT_EQ(get("/api/journal?subject=batch:WO-J", "auditor").json().size(), 1U);
  EXPECT_GE(get("/api/journal?since=2000-01-01T00:00:00Z", "auditor").json().size(), all.size());
  EXPECT_EQ(get("/api/journal?since=yesterday", "auditor").status, 400);
}

TEST_F(HttpTest, OfficerAddsAUserWhoseTokenWorksAtOnce) {
  start_server();
  auto res = post("/api/users", {{"name", "oscar"}, {"role", "operator"}}, "officer");
  ASSERT_EQ(res.status, 201) << res.body;
  const std::string token = res.json()["token"];
  EXPECT_EQ(token.rfind("oscar.", 0), 0U);
  EXPECT_EQ(res.header("Cache-Control"), "no-store");
  const auto who = http_request(address_, bhttp::verb::get, "/api/whoami", {}, token);
  EXPECT_EQ(who.json()["name"], "oscar");
  EXPECT_EQ(post("/api/users", {{"name", "oscar"}, {"role", "operator"}}, "officer").status, 409);
  EXPECT_EQ(post("/api/users", {{"name", "zed"}, {"role", "admin"}}, "officer").status, 400);
  // Journaled with the officer who added them.
  std::lock_guard lock(station_->mutex());
  auto st = station_->records().connection().prepare("SELECT actor FROM journal WHERE subject = 'user:oscar'");
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.text(0), "alice");
}

TEST_F(HttpTest, PageIsServedWithAStrictContentPolicy) {
  start_server();
  auto res = get("/");
  ASSERT_EQ(res.status, 200);
  EXPECT_EQ(res.header("Content-Type"), "text/html; charset=utf-8");
  EXPECT_NE(res.header("Content-Security-Policy").find("default-src 'none'"), std::string::npos);
  EXPECT_NE(res.body.find("app.js"), std::string::npos);
  EXPECT_EQ(get("/app.js").status, 200);
  EXPECT_EQ(get("/app.css").header("Content-Type"), "text/css; charset=utf-8");
}

// ---- limits

TEST_F(HttpTest, BodyOverTheLimitIs413) {
  http::ServerOptions o;
  o.body_limit = 1024;
  start_server(o);
  const std::string big = "{\"name\": \"" + std::string(2000, 'x') + "\"}";
  const auto res = http_request(address_, bhttp::verb::post, "/api/batches", big, tokens_["operator"]);
  ASSERT_EQ(res.status, 413) << res.body;
  EXPECT_EQ(res.json()["code"], "body_too_large");
}

TEST_F(HttpTest, SlowClientIsCutOffAtTheReadTimeout) {
  http::ServerOptions o;
  o.read_timeout = std::chrono::milliseconds(300);
  start_server(o);
  boost::asio::io_context io;
  tcp::socket s(io);
  s.connect(endpoint_of(address_));
  const std::string partial = "GET /api/health HTTP/1.1\r\nHost: x\r\n";  // never finished
  boost::asio::write(s, boost::asio::buffer(partial));
  const auto start = std::chrono::steady_clock::now();
  std::array<char, 256> buf{};
  beast::error_code ec;
  s.read_some(boost::asio::buffer(buf), ec);  // the server closes
  EXPECT_TRUE(ec == boost::asio::error::eof || ec == boost::asio::error::connection_reset) << ec.message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(get("/api/health").status, 200);  // the server itself is fine
}

TEST_F(HttpTest, ConnectionsBeyondTheLimitGet503) {
  http::ServerOptions o;
  o.max_connections = 2;
  start_server(o);
  boost::asio::io_context io;
  tcp::socket a(io), b(io);
  a.connect(endpoint_of(address_));
  b.connect(endpoint_of(address_));
  for (int k = 0; k < 100 && server_->connections() < 2; ++k) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const auto res = get("/api/health");
  EXPECT_EQ(res.status, 503);
  EXPECT_EQ(res.json()["code"], "too_many_connections");
  a.close();
  b.close();
  for (int k = 0; k < 100 && server_->connections() > 0; ++k) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(get("/api/health").status, 200);
}

TEST_F(HttpTest, StopFinishesInFlightRequestsAndRefusesNewOnes) {
  start_server();
  ASSERT_EQ(get("/api/whoami", "operator").status, 200);  // token cached: the next request waits only on the lock
  std::unique_lock held(station_->mutex());  // the next request blocks inside its handler
  auto in_flight = std::async(std::launch::async, [&] {
    return http_request(address_, bhttp::verb::post, "/api/batches",
                        json{{"name", "WO-S"}, {"product", "P"}, {"quantity", 1}}.dump(), tokens_["operator"]);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  server_->stop();
  // The listener closes promptly (probed by connecting only: every route would wait on the
  // lock this test holds).
  auto can_connect = [&] {
    boost::asio::io_context io;
    tcp::socket s(io);
    beast::error_code ec;
    s.connect(endpoint_of(address_), ec);
    return !ec;
  };
  for (int k = 0; k < 100 && can_connect(); ++k) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(can_connect());
  EXPECT_EQ(in_flight.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout);
  held.unlock();
  const auto res = in_flight.get();
  EXPECT_EQ(res.status, 201) << res.body;
  EXPECT_EQ(res.header("Connection"), "close");
  io_thread_.join();  // io.run() returned: nothing left
  std::lock_guard lock(station_->mutex());
  EXPECT_TRUE(core::find_batch(*station_, "WO-S"));
}

// ---- events

// Reads from a raw event stream until `needle` appears (or the deadline).
std::string read_stream_until(tcp::socket& s, const std::string& needle, std::chrono::milliseconds deadline) {
  std::string got;
  const auto end = std::chrono::steady_clock::now() + deadline;
  std::array<char, 4096> buf{};
  while (got.find(needle) == std::string::npos && std::chrono::steady_clock::now() < end) {
    pollfd p{s.native_handle(), POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    beast::error_code ec;
    const auto n = s.read_some(boost::asio::buffer(buf), ec);
    if (ec) break;
    got.append(buf.data(), n);
  }
  return got;
}

tcp::socket open_stream(boost::asio::io_context& io, const std::string& address, const std::string& token,
                        const std::string& last_event_id = {}) {
  tcp::socket s(io);
  s.connect(endpoint_of(address));
  std::string req = "GET /api/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\n";
  if (!last_event_id.empty()) req += "Last-Event-ID: " + last_event_id + "\r\n";
  req += "\r\n";
  boost::asio::write(s, boost::asio::buffer(req));
  return s;
}

TEST_F(HttpTest, EventStreamDeliversPublishedEventsAndHeartbeats) {
  http::ServerOptions o;
  o.heartbeat = std::chrono::milliseconds(200);
  start_server(o);
  boost::asio::io_context io;
  auto s = open_stream(io, address_, tokens_["auditor"]);
  auto got = read_stream_until(s, "retry:", std::chrono::seconds(20));
  EXPECT_NE(got.find("HTTP/1.1 200"), std::string::npos) << got;
  EXPECT_NE(got.find("Content-Type: text/event-stream"), std::string::npos) << got;
  for (int k = 0; k < 200 && bus_.subscribers() == 0; ++k) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  core::FixtureView f;
  f.number = 2;
  f.name = "fixture 2";
  f.status = "busy";
  const auto e = bus_.publish("fixture", core::to_json(f));
  got = read_stream_until(s, "\n\n", std::chrono::seconds(5));
  got += read_stream_until(s, "event: fixture", std::chrono::seconds(5));
  EXPECT_NE(got.find("id: " + std::to_string(e.id) + "\nevent: fixture\ndata: {"), std::string::npos) << got;
  EXPECT_NE(got.find("\"fixture 2\""), std::string::npos) << got;
  got = read_stream_until(s, ": heartbeat", std::chrono::seconds(5));
  EXPECT_NE(got.find(": heartbeat"), std::string::npos) << got;

  // Gone clients are noticed and unsubscribed.
  s.close();
  for (int k = 0; k < 300 && bus_.subscribers() > 0; ++k) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(bus_.subscribers(), 0U);
}

TEST_F(HttpTest, EventStreamResumesAfterLastEventId) {
  start_server();
  bus_.publish("batch", {{"n", 1}});
  const auto second = bus_.publish("batch", {{"n", 2}});
  bus_.publish("batch", {{"n", 3}});
  boost::asio::io_context io;
  auto s = open_stream(io, address_, tokens_["operator"], std::to_string(second.id));
  const auto got = read_stream_until(s, "{\"n\":3}", std::chrono::seconds(20));
  EXPECT_EQ(got.find("{\"n\":1}"), std::string::npos) << got;
  EXPECT_EQ(got.find("{\"n\":2}"), std::string::npos) << got;
  EXPECT_NE(got.find("{\"n\":3}"), std::string::npos) << got;
}

TEST_F(HttpTest, StopEndsEventStreams) {
  start_server();
  boost::asio::io_context io;
  auto s = open_stream(io, address_, tokens_["operator"]);
  read_stream_until(s, "retry:", std::chrono::seconds(20));
  server_->stop();
  io_thread_.join();  // returns although a stream was open
  std::array<char, 64> buf{};
  beast::error_code ec;
  s.read_some(boost::asio::buffer(buf), ec);
  EXPECT_TRUE(ec) << "the stream should be closed";
}

}  // namespace
}  // namespace station::test
