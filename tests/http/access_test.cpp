// Access control, table-driven from the router's own route list: every endpoint that needs
// a token refuses none (401), a bad one (401) and each role it does not name (403), all as
// JSON errors, and accepts each role it names. Routes without a token answer without one.
#include <gtest/gtest.h>

#include <set>

#include "http/request.hpp"
#include "http_fixture.hpp"

namespace station::test {
namespace {

const std::vector<std::string> kRoles = {"operator", "officer", "auditor"};

class Access : public HttpTest {
 protected:
  // A concrete request for a route: path parameters filled with things that exist (each
  // accepted attempt gets its own batch or user, so a state change never hides a refusal).
  struct Attempt {
    std::string target;
    nlohmann::json body;
  };
  Attempt attempt_for(const http::Route& r, const std::string& tag) {
    std::string target(r.pattern);
    nlohmann::json body;
    auto fill = [&](const std::string& param, const std::string& value) {
      const auto pos = target.find("{" + param + "}");
      if (pos != std::string::npos) target.replace(pos, param.size() + 2, value);
    };
    const std::string batch = "ACC-" + tag;
    std::string serial = "DEV-1";
    switch (r.id) {
      case http::RouteId::batch_pause:
      case http::RouteId::batch_close:
        open_batch(batch);
        break;
      case http::RouteId::batch_resume: {
        open_batch(batch);
        std::lock_guard lock(station_->mutex());
        core::set_batch_state(*station_, batch, "paused", "tester");
        break;
      }
      case http::RouteId::batches_open:
        body = {{"name", batch}, {"product", "Widget"}, {"quantity", 5}, {"serial_pattern", batch + "-{seq:04}"}};
        break;
      case http::RouteId::users_add:
        body = {{"name", "user-" + tag}, {"role", "auditor"}};
        break;
      case http::RouteId::device_reprovision: {
        // Each attempt its own done device: one that was re-provisioned is not done any more.
        const std::string tail = std::to_string(1000 + std::stoi(tag));
        serial = "RP-" + tag;
        add_device(serial, "02a0b1" + std::string(6 - tail.size(), '0') + tail, "done", "ACC-DEVICES");
        body = {{"reason", "access test"}};
        break;
      }
      default:
        break;
    }
    if (r.method == http::Method::post && body.is_null()) body = nlohmann::json::object();
    fill("name", batch);
    fill("serial", serial);
    return {target, body};
  }

  HttpResult send(const http::Route& r, const Attempt& a, const std::string& token) {
    return http_request(address_, r.method == http::Method::get ? bhttp::verb::get : bhttp::verb::post, a.target,
                        r.method == http::Method::post ? a.body.dump() : std::string(), token);
  }

  static void expect_json_error(const HttpResult& res, int status, const std::string& code, const std::string& what) {
    EXPECT_EQ(res.status, status) << what << ": " << res.body;
    EXPECT_EQ(res.header("Content-Type"), "application/json") << what;
    const auto j = res.json();
    EXPECT_EQ(j.value("code", ""), code) << what << ": " << res.body;
    EXPECT_FALSE(j.value("error", "").empty()) << what;
    EXPECT_EQ(j.value("status", 0), status) << what;
  }
};

TEST_F(Access, EveryRouteRefusesMissingBadAndWrongRoleTokensAndAcceptsItsRoles) {
  open_batch("ACC-DEVICES");
  add_device("DEV-1", "02a0b1000001", "done", "ACC-DEVICES");
  // The event stream never ends by itself: a short heartbeat and a client that reads only
  // the headers keep the attempt short.
  start_server();

  // A token of the right shape whose user does not exist, and a real user's name with a
  // wrong secret: both are "bad".
  const std::string unknown_user = "mallory." + std::string(64, '0');
  const std::string wrong_secret = "olga." + std::string(64, 'f');

  int checked = 0, attempt = 0;
  for (const auto& r : http::routes()) {
    const std::string what = std::string(http::to_string(r.method)) + " " + std::string(r.pattern);
    SCOPED_TRACE(what);
    if (r.roles.size() == 0) {
      const auto a = attempt_for(r, std::to_string(attempt++));
      const auto res = send(r, a, {});
      EXPECT_EQ(res.status, 200) << what << " needs no token: " << res.body;
      continue;
    }
    ++checked;
    const std::set<std::string> allowed(r.roles.begin(), r.roles.end());
    {
      const auto a = attempt_for(r, std::to_string(attempt++));
      expect_json_error(send(r, a, {}), 401, "unauthenticated", what + " without a token");
      expect_json_error(send(r, a, unknown_user), 401, "unauthenticated", what + " with an unknown user's token");
      expect_json_error(send(r, a, wrong_secret), 401, "unauthenticated", what + " with a wrong secret");
      expect_json_error(send(r, a, "not a token"), 401, "unauthenticated", what + " with garbage");
    }
    for (const auto& role : kRoles) {
      const auto a = attempt_for(r, std::to_string(attempt++));
      if (r.id == http::RouteId::events && allowed.count(role) != 0) continue;  // streams: below
      const auto res = send(r, a, tokens_.at(role));
      if (allowed.count(role) == 0) {
        expect_json_error(res, 403, "forbidden", what + " as " + role);
      } else {
        EXPECT_GE(res.status, 200) << what << " as " << role << ": " << res.body;
        EXPECT_LT(res.status, 300) << what << " as " << role << ": " << res.body;
      }
    }
  }
  EXPECT_GE(checked, 15);

  // Refusals are journaled as the core functions do: bad tokens and wrong roles alike.
  EXPECT_GE(count_actions("auth.denied"), 3 * checked);
}

// The event stream, for each role it names: a 200 with text/event-stream (read as headers
// only; the body never ends).
TEST_F(Access, EventStreamAcceptsItsRoles) {
  start_server();
  const auto& routes = http::routes();
  const auto it = std::find_if(routes.begin(), routes.end(), [](const auto& r) { return r.id == http::RouteId::events; });
  ASSERT_NE(it, routes.end());
  for (const auto role : it->roles) {
    boost::asio::io_context io;
    beast::tcp_stream stream(io);
    stream.connect(endpoint_of(address_));
    bhttp::request<bhttp::empty_body> req{bhttp::verb::get, "/api/events", 11};
    req.set(bhttp::field::host, "localhost");
    req.set(bhttp::field::authorization, "Bearer " + tokens_.at(std::string(role)));
    bhttp::write(stream, req);
    beast::flat_buffer buffer;
    bhttp::response_parser<bhttp::empty_body> parser;
    stream.expires_after(std::chrono::seconds(30));
    bhttp::read_header(stream, buffer, parser);
    EXPECT_EQ(parser.get().result_int(), 200U) << role;
    EXPECT_EQ(parser.get()[bhttp::field::content_type], "text/event-stream") << role;
  }
}

}  // namespace
}  // namespace station::test
