// The API's request side without sockets: routes, targets, queries, bodies, error mapping.
#include <gtest/gtest.h>

#include <set>

#include "http/request.hpp"

namespace station::http {
namespace {

template <class F>
ApiError api_error(F f) {
  try {
    f();
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "no ApiError";
  return ApiError(0, "", "");
}

TEST(Routes, EveryIssue9EndpointIsInTheTable) {
  std::set<std::string> have;
  for (const auto& r : routes()) have.insert(std::string(to_string(r.method)) + " " + std::string(r.pattern));
  for (const char* want :
       {"GET /api/health", "GET /api/batches", "POST /api/batches", "POST /api/batches/{name}/pause",
        "POST /api/batches/{name}/resume", "POST /api/batches/{name}/close", "GET /api/fixtures", "GET /api/devices",
        "POST /api/devices/{serial}/reprint", "GET /api/journal", "GET /api/events", "POST /api/users",
        "GET /api/progress", "GET /api/devices/{serial}/label.png", "GET /"})
    EXPECT_EQ(have.count(want), 1U) << want;
}

TEST(Routes, OnlyThePageAndHealthNeedNoToken) {
  for (const auto& r : routes()) {
    const bool open = r.roles.size() == 0;
    EXPECT_EQ(open, r.id == RouteId::page || r.id == RouteId::health) << r.pattern;
  }
}

TEST(Routes, MatchFillsDecodedParameters) {
  const auto m = match_route(Method::post, "/api/batches/WO%2017/pause");
  EXPECT_EQ(m.route->id, RouteId::batch_pause);
  EXPECT_EQ(m.params.at("name"), "WO 17");
  EXPECT_EQ(match_route(Method::get, "/api/devices/SN-1/label.png").route->id, RouteId::device_label_png);
  EXPECT_EQ(match_route(Method::get, "/api/devices/SN-1").route->id, RouteId::device);
  EXPECT_EQ(match_route(Method::post, "/api/batches").route->id, RouteId::batches_open);
}

TEST(Routes, UnknownPathIs404AndWrongMethodIs405) {
  EXPECT_EQ(api_error([] { match_route(Method::get, "/api/nothing"); }).status, 404);
  EXPECT_EQ(api_error([] { match_route(Method::get, "/api/batches/"); }).status, 404);
  EXPECT_EQ(api_error([] { match_route(Method::get, "/api/batches//pause"); }).status, 404);
  EXPECT_EQ(api_error([] { match_route(Method::post, "/api/health"); }).status, 405);
  EXPECT_EQ(api_error([] { parse_method("DELETE"); }).status, 405);
}

TEST(Target, SplitsPathAndDecodesQuery) {
  const auto t = parse_target("/api/devices?serial=A%2FB&mac=02%3Aa0&state=&x+y=1+2");
  EXPECT_EQ(t.path, "/api/devices");
  EXPECT_EQ(t.query.at("serial"), "A/B");
  EXPECT_EQ(t.query.at("mac"), "02:a0");
  EXPECT_EQ(t.query.at("state"), "");
  EXPECT_EQ(t.query.at("x y"), "1 2");
}

TEST(Target, RefusesBadTargets) {
  for (const char* bad : {"api/health", "", "/a b", "/a?x=%zz", "/a?x=%0", "/a#frag", "/a?%00=1", "/a?=1"})
    EXPECT_EQ(api_error([&] { parse_target(bad); }).status, 400) << bad;
  EXPECT_EQ(api_error([] { parse_target("/" + std::string(3000, 'a')); }).status, 414);
  EXPECT_EQ(api_error([] { match_route(Method::get, "/api/devices/%zz"); }).status, 400);
}

TEST(Bearer, TakesTheTokenOfABearerHeaderOnly) {
  EXPECT_EQ(bearer_token("Bearer olga.abc"), "olga.abc");
  EXPECT_EQ(bearer_token("bearer   olga.abc  "), "olga.abc");
  EXPECT_FALSE(bearer_token("Basic b2xnYTp4"));
  EXPECT_FALSE(bearer_token("Bearer "));
  EXPECT_FALSE(bearer_token(""));
}

TEST(Queries, DeviceQueryChecksItsParameters) {
  const auto d = parse_device_query({{"mac", "02:A0:B1:00:00:01"}, {"state", "done"}, {"serial", ""}, {"last", "5"}});
  EXPECT_EQ(d.mac, "02a0b1000001");
  EXPECT_EQ(d.state, "done");
  EXPECT_FALSE(d.serial);
  EXPECT_EQ(d.last, 5);
  EXPECT_EQ(api_error([] { parse_device_query({{"mac", "02a0"}}); }).status, 400);
  EXPECT_EQ(api_error([] { parse_device_query({{"state", "lost"}}); }).status, 400);
  EXPECT_EQ(api_error([] { parse_device_query({{"limit", "-1"}}); }).status, 400);
  EXPECT_EQ(api_error([] { parse_device_query({{"since", "monday"}}); }).status, 400);
  const auto e = api_error([] { parse_device_query({{"serail", "x"}}); });
  EXPECT_NE(e.message.find("serail"), std::string::npos);
}

TEST(Queries, JournalSinceIsASequenceOrATime) {
  EXPECT_EQ(parse_journal_query({{"since", "42"}}).since_seq, 42);
  EXPECT_EQ(parse_journal_query({{"since", "2026-11-22T08:00:00Z"}}).since_time, "2026-11-22T08:00:00Z");
  EXPECT_EQ(parse_journal_query({}).limit, 200);
  EXPECT_EQ(api_error([] { parse_journal_query({{"since", "x"}}); }).status, 400);
  EXPECT_EQ(api_error([] { parse_journal_query({{"limit", "100000"}}); }).status, 400);
}

TEST(Bodies, OpenBatchChecksTypesAndNames) {
  const auto b = parse_open_batch(R"({"name": "WO-1", "product": "P", "quantity": 5, "lock": true,
                                      "configurator_keys": ["AAAA"]})");
  EXPECT_EQ(b.name, "WO-1");
  EXPECT_FALSE(b.settings.contains("name"));
  EXPECT_EQ(b.settings["quantity"], 5);
  for (const char* bad : {R"([])", R"({"name": "W", "product": "P"})", R"({"name": 1, "product": "P", "quantity": 1})",
                          R"({"name": "W", "product": "P", "quantity": 1.5})",
                          R"({"name": "W", "product": "P", "quantity": 1, "lock": "yes"})",
                          R"({"name": "W", "product": "P", "quantity": 1, "configurator_keys": [1]})",
                          R"({"name": "W", "product": "P", "quantity": 1, "extra": 1})",
                          R"({"name": "", "product": "P", "quantity": 1})", "{", "nul\x01l"})
    EXPECT_EQ(api_error([&] { parse_open_batch(bad); }).status, 400) << bad;
}

TEST(Bodies, DeepNestingIsRefusedBeforeParsing) {
  const std::string deep = std::string(10000, '[') + std::string(10000, ']');
  EXPECT_NE(api_error([&] { parse_json_object(deep); }).message.find("nests deeper"), std::string::npos);
}

TEST(Bodies, EmptyBodiesAndUsers) {
  parse_empty_body("");
  parse_empty_body(" {} ");
  EXPECT_EQ(api_error([] { parse_empty_body(R"({"x": 1})"); }).status, 400);
  EXPECT_EQ(parse_add_user(R"({"name": "n", "role": "auditor"})").role, "auditor");
  EXPECT_EQ(api_error([] { parse_add_user(R"({"name": "n", "role": "root"})"); }).status, 400);
}

TEST(Bodies, ReprovisionNeedsAReasonAndTakesOnlyItsFields) {
  const auto minimal = parse_reprovision(R"({"reason": "RMA 7"})");
  EXPECT_EQ(minimal.reason, "RMA 7");
  EXPECT_FALSE(minimal.batch);
  EXPECT_FALSE(minimal.revoke_reason);
  EXPECT_FALSE(minimal.erased);
  const auto full =
      parse_reprovision(R"({"reason": "RMA 8", "batch": "REWORK", "revoke_reason": "keyCompromise", "erased": true})");
  EXPECT_EQ(full.batch.value_or(""), "REWORK");
  EXPECT_EQ(full.revoke_reason.value_or(""), "keyCompromise");
  EXPECT_TRUE(full.erased);
  for (const std::string bad : {R"({})", R"({"reason": ""})", R"({"reason": 7})", R"({"reason": "x", "erased": "yes"})",
                                R"({"reason": "x", "batch": "a/b"})", R"({"reason": "x", "officer": "bob"})", "[]", "{"})
    EXPECT_EQ(api_error([&] { parse_reprovision(bad); }).status, 400) << bad;
  EXPECT_NE(api_error([] { parse_reprovision(R"({"reason": ""})"); }).message.find("why"), std::string::npos);
}

TEST(Errors, StationErrorsMapToStatusInOnePlace) {
  struct Case {
    Errc code;
    int status;
  };
  for (const auto& [code, status] : std::vector<Case>{{Errc::invalid_argument, 400}, {Errc::parse_error, 400},
                                                      {Errc::not_found, 404}, {Errc::already_exists, 409},
                                                      {Errc::constraint_violation, 409}, {Errc::busy, 409},
                                                      {Errc::permission_denied, 403}, {Errc::hsm_unavailable, 503},
                                                      {Errc::hsm_pin_incorrect, 503}, {Errc::db_error, 500},
                                                      {Errc::internal, 500}}) {
    const auto e = to_api_error(Error(code, "detail /secret/path"), 7);
    EXPECT_EQ(e.status, status) << errc_name(code);
    EXPECT_EQ(e.code, errc_name(code));
    if (status >= 500) {
      // Server-side failures keep their detail for the log only.
      EXPECT_EQ(e.message.find("/secret/path"), std::string::npos) << e.message;
      if (code != Errc::hsm_pin_incorrect) {
        EXPECT_NE(e.message.find("request 7"), std::string::npos) << e.message;
      }
    }
  }
  const auto j = to_json(ApiError(401, "unauthenticated", "no token"), 3);
  EXPECT_EQ(j["error"], "no token");
  EXPECT_EQ(j["code"], "unauthenticated");
  EXPECT_EQ(j["request_id"], 3);
}

TEST(Errors, MessagesQuoteClientTextAsPrintableAscii) {
  for (const auto& e : {api_error([] { parse_method("P\xff\x01OST"); }),
                        api_error([] { parse_device_query({{"\xc3", "1"}}); }),
                        api_error([] { parse_open_batch("{\"\xc3\xa9\xc3\xa9\": 1}"); })}) {
    EXPECT_EQ(e.message.find_first_of("\xff\x01\xc3"), std::string::npos) << e.message;
    EXPECT_NO_THROW(static_cast<void>(to_json(e, 1).dump()));
  }
  EXPECT_EQ(dump_json(nlohmann::json{{"x", "\xff"}}), "{\"x\":\"\xef\xbf\xbd\"}");
}

}  // namespace
}  // namespace station::http
