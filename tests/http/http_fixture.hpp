// A running HTTP server in-process over a real data folder (SoftHSM2 token, SQLite), with
// one user per role, a stand-in line view, and a small blocking Beast client.
#pragma once

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/batches.hpp"
#include "core/events.hpp"
#include "core/users.hpp"
#include "db/records.hpp"
#include "http/server.hpp"
#include "station_dir.hpp"

namespace station::test {

namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = boost::asio::ip::tcp;

struct HttpResult {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;
  nlohmann::json json() const {
    auto j = nlohmann::json::parse(body, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "not JSON: " << body.substr(0, 200);
    return j;
  }
  std::string header(const std::string& name) const {
    const auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// "127.0.0.1:8080" -> endpoint.
inline tcp::endpoint endpoint_of(const std::string& address) {
  const auto colon = address.rfind(':');
  return {boost::asio::ip::make_address(address.substr(0, colon)),
          static_cast<unsigned short>(std::stoi(address.substr(colon + 1)))};
}

// One request on a fresh connection (blocking); status 0 when the connection failed.
inline HttpResult http_request(const std::string& address, bhttp::verb method, const std::string& target,
                               const std::string& body = {}, const std::string& token = {},
                               const std::map<std::string, std::string>& headers = {}) {
  boost::asio::io_context io;
  beast::tcp_stream stream(io);
  HttpResult out;
  beast::error_code ec;
  stream.expires_after(std::chrono::seconds(60));
  stream.connect(endpoint_of(address), ec);
  if (ec) return out;
  bhttp::request<bhttp::string_body> req{method, target, 11};
  req.set(bhttp::field::host, "localhost");
  if (!token.empty()) req.set(bhttp::field::authorization, "Bearer " + token);
  for (const auto& [k, v] : headers) req.set(k, v);
  if (!body.empty() || method == bhttp::verb::post) {
    req.set(bhttp::field::content_type, "application/json");
    req.body() = body;
  }
  req.prepare_payload();
  bhttp::write(stream, req, ec);
  if (ec) return out;
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  bhttp::read(stream, buffer, parser, ec);
  if (ec) return out;
  const auto& res = parser.get();
  out.status = static_cast<int>(res.result_int());
  out.body = res.body();
  for (const auto& f : res) out.headers[std::string(f.name_string())] = std::string(f.value());
  return out;
}

// A line as the pipeline would expose it, set by the test.
class FakeLine final : public core::LineView {
 public:
  std::vector<core::FixtureView> fixtures() const override {
    std::lock_guard lock(mutex_);
    return fixtures_;
  }
  nlohmann::json progress() const override {
    std::lock_guard lock(mutex_);
    return progress_;
  }
  void set(std::vector<core::FixtureView> f, nlohmann::json p) {
    std::lock_guard lock(mutex_);
    fixtures_ = std::move(f);
    progress_ = std::move(p);
  }

 private:
  mutable std::mutex mutex_;
  std::vector<core::FixtureView> fixtures_;
  nlohmann::json progress_ = nlohmann::json::object();
};

// The data folder is made once per test (station init through the binary); users are added
// in-process while no officer exists yet, which core::add_user allows (the folder's holder).
class HttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<StationDir>();
    station_ = std::make_unique<core::Station>(dir_->data(), std::nullopt);
    for (const auto& [role, name] : std::vector<std::pair<std::string, std::string>>{
             {"operator", "olga"}, {"auditor", "audrey"}, {"officer", "alice"}}) {
      auto added = core::add_user(*station_, name, role, nullptr);
      tokens_[role] = added.token.str();
    }
  }

  void TearDown() override {
    stop_server();
    station_.reset();
    dir_.reset();
  }

  // Starts a server on 127.0.0.1:0 with `options`, served by one I/O thread.
  void start_server(http::ServerOptions options = {}, const core::LineView* line = nullptr) {
    options.listen = "127.0.0.1:0";
    server_ = std::make_unique<http::Server>(io_, options, http::Context{*station_, bus_, line});
    server_->start();
    address_ = server_->address();
    io_thread_ = std::thread([this] { io_.run(); });
  }

  void stop_server() {
    if (!server_) return;
    server_->stop();
    if (io_thread_.joinable()) io_thread_.join();
    server_.reset();
  }

  HttpResult get(const std::string& target, const std::string& role = {}) {
    return http_request(address_, bhttp::verb::get, target, {}, role.empty() ? std::string() : tokens_.at(role));
  }
  HttpResult post(const std::string& target, const nlohmann::json& body, const std::string& role = {}) {
    return http_request(address_, bhttp::verb::post, target, body.is_null() ? std::string() : body.dump(),
                        role.empty() ? std::string() : tokens_.at(role));
  }

  core::Batch open_batch(const std::string& name, std::int64_t quantity = 10) {
    core::BatchSettings s;
    s.product = "Widget";
    s.quantity = quantity;
    s.serial_pattern = name + "-{seq:04}";
    std::lock_guard lock(station_->mutex());
    return core::open_batch(*station_, name, s, "tester");
  }

  // A device record with an identity (made-up certificate bytes: the API only reads them).
  void add_device(const std::string& serial, const std::string& mac, const std::string& state,
                  const std::optional<std::string>& batch = std::nullopt, const std::string& fixture = "1") {
    std::lock_guard lock(station_->mutex());
    db::DeviceRecord d;
    d.serial = serial;
    d.mac = mac;
    d.chip_id = "chip-" + serial;
    d.state = state;
    d.fixture = fixture;
    if (batch) d.batch_id = core::find_batch(*station_, *batch)->id;
    if (state == "failed") d.reason = "device did not answer HELLO within 2 s";
    d.created = d.updated = db::now_rfc3339();
    db::IdentityRecord i;
    i.cert_serial = sha256_hex(as_bytes("cert" + serial)).substr(0, 32);
    i.cert_sha256 = sha256_hex(as_bytes("sha" + serial));
    const std::string der = "der" + serial, pk = "pk" + serial;
    i.cert_der.assign(der.begin(), der.end());
    i.issuer_key_id = std::string(64, 'a');
    i.profile = "device";
    i.public_key.assign(pk.begin(), pk.end());
    i.pkhash = sha256_hex(i.public_key);
    i.dpp_uri = "DPP:K:" + serial + ";;";
    i.key_mode = "injected";
    i.status = "active";
    i.op = "olga";
    i.created = d.created;
    station_->journal().commit({"tester", "device.test", "device:" + serial, {}},
                               [&](db::Connection& c) { return db::insert_device_with_identity(c, d, i); });
  }

  // Journal entries with this action.
  long long count_actions(const std::string& action) {
    std::lock_guard lock(station_->mutex());
    auto st = station_->records().connection().prepare("SELECT count(*) FROM journal WHERE action = ?");
    st.bind(1, action);
    st.step();
    return st.int64(0);
  }

  std::unique_ptr<StationDir> dir_;
  std::unique_ptr<core::Station> station_;
  core::EventBus bus_;
  std::map<std::string, std::string> tokens_;  // role -> token
  boost::asio::io_context io_;
  std::unique_ptr<http::Server> server_;
  std::thread io_thread_;
  std::string address_;
};

}  // namespace station::test
