// The API's handlers, synchronous and socket-free: the server calls Api::handle() on its
// worker pool with a matched route and gets back what to send. Authentication (bearer
// token -> core::authenticate, with a cache so Argon2id runs once per token, not once per
// request) and role checks (core::require_role, refusals journaled) happen here.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "db/records.hpp"

#include "core/users.hpp"
#include "http/request.hpp"
#include "http/server.hpp"

namespace station::http {

struct ApiRequest {
  std::uint64_t id = 0;
  Method method = Method::get;
  Target target;
  std::string authorization;   // the Authorization header (never logged)
  std::string last_event_id;
  std::string body;
};

struct Reply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string actor;           // for the access log
  // GET /api/events: the server streams from the bus starting after since_id.
  bool stream_events = false;
  std::int64_t since_id = -1;
};

Reply json_reply(int status, const nlohmann::json& body);

class Api {
 public:
  // tls_info: {"serial", "not_after", "sha256"} of the server certificate, or null.
  Api(Context context, std::function<nlohmann::json()> tls_info);

  // Throws ApiError or station::Error (the server maps both); never lets a secret into a
  // message.
  Reply handle(const Match& match, const ApiRequest& request);

  // Who the request's token belongs to, checked against the route's roles.
  core::Actor authorize(const Route& route, const ApiRequest& request);

 private:
  Reply route(const Match& match, const ApiRequest& request, const core::Actor& actor);
  Reply health();
  Reply devices(const ApiRequest& request);
  Reply device(const std::string& serial);
  Reply journal(const ApiRequest& request);
  Reply open_batch(const ApiRequest& request, const core::Actor& actor);
  Reply change_batch(const std::string& name, RouteId id, const ApiRequest& request, const core::Actor& actor);
  Reply add_user(const ApiRequest& request, const core::Actor& actor);
  Reply label_png(const std::string& serial);
  Reply reprint(const std::string& serial, const core::Actor& actor);
  Reply reprovision(const std::string& serial, const ApiRequest& req, const core::Actor& actor);
  static nlohmann::json label_status(db::Records& records, std::int64_t device_id);

  Context ctx_;
  std::function<nlohmann::json()> tls_info_;

  // Tokens already checked with Argon2id: SHA-256(token) -> (name, the stored hash it was
  // checked against). A hit is trusted only while the user's stored hash is unchanged and
  // the user is not disabled (read from the records on every request), so replacing or
  // disabling a user takes effect at once. Bounded (least recently used goes first).
  struct CacheEntry {
    std::string name, token_hash;
  };
  std::mutex cache_mutex_;
  std::mutex auth_mutex_;  // one Argon2id check at a time
  static constexpr std::chrono::milliseconds kRefusalPause{200};
  std::list<std::string> lru_;
  std::unordered_map<std::string, std::pair<CacheEntry, std::list<std::string>::iterator>> cache_;
  static constexpr std::size_t kCacheSize = 256;
};

}  // namespace station::http
