// The HTTP API's request side without I/O: the route table (method, pattern, roles), path
// matching, query strings, bearer tokens, JSON body checks, and the one mapping from
// station::Error codes to HTTP status and a safe JSON message. No sockets and no
// coroutines here, so the libFuzzer target (fuzz/http_request.cpp) links it alone.
#pragma once

#include <cstdint>
#include <exception>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.hpp"

namespace station::http {

enum class Method { get, post };
std::string_view to_string(Method m) noexcept;

// What a route does; the server dispatches on it.
enum class RouteId {
  page,             // GET /, /app.js, /app.css: the operator's page (no token: it asks for one)
  health,           // GET /api/health
  whoami,           // GET /api/whoami
  batches_list,     // GET /api/batches
  batches_open,     // POST /api/batches
  batch_pause,      // POST /api/batches/{name}/pause
  batch_resume,     // POST /api/batches/{name}/resume
  batch_close,      // POST /api/batches/{name}/close
  fixtures,         // GET /api/fixtures
  progress,         // GET /api/progress
  devices,          // GET /api/devices?serial=&mac=&state=&batch=&last=&limit=
  device,           // GET /api/devices/{serial}
  device_label_png, // GET /api/devices/{serial}/label.png
  device_reprint,   // POST /api/devices/{serial}/reprint
  device_reprovision, // POST /api/devices/{serial}/reprovision
  journal,          // GET /api/journal?since=&limit=
  events,           // GET /api/events (Server-Sent Events)
  users_add,        // POST /api/users
};

// Roles as core::require_role takes them, so a route's list is passed to it unchanged.
using Roles = std::initializer_list<std::string_view>;

struct Route {
  Method method;
  std::string_view pattern;             // "/api/batches/{name}/pause": {x} matches one segment
  Roles roles;                          // empty: no token needed
  std::string_view action;              // what the journal names on a refusal, e.g. "batch.pause"
  RouteId id;
  bool json_body = false;               // POST routes that read a JSON object body
};

// Every route the server answers, in matching order. The access test walks this list.
const std::vector<Route>& routes();

struct Match {
  const Route* route = nullptr;
  std::map<std::string, std::string> params;  // {name} -> the decoded segment
};

// An error the API answers with: HTTP status, a stable code, and a message safe to show.
struct ApiError : std::exception {
  ApiError(int s, std::string c, std::string m) : status(s), code(std::move(c)), message(std::move(m)) {}
  const char* what() const noexcept override { return message.c_str(); }
  int status = 500;
  std::string code;     // e.g. "unauthenticated", "forbidden", "not_found", errc names
  std::string message;  // names the thing and the fix; never a secret
};

// The route for a method and a path (already without its query). Throws ApiError 404 when
// no pattern matches, 405 when one matches another method.
Match match_route(Method method, std::string_view path);
// The method named in a request line; 405 for anything else.
Method parse_method(std::string_view m);

// "/a%20b?x=1&y=%2F" -> path "/a b"-style decoding per segment is done by match_route; this
// splits the target and decodes the query. Throws ApiError 400 on bad escapes, a target
// that is not origin-form, or one longer than 2048 bytes.
struct Target {
  std::string path;                             // still percent-encoded
  std::map<std::string, std::string> query;     // decoded; a repeated key keeps the last value
};
Target parse_target(std::string_view target);

// Percent-decoding ('+' is a space only in queries). nullopt on a bad escape or a NUL byte.
std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space);

// The token of "Authorization: Bearer <token>" (scheme case-insensitive), or nullopt when
// the header is absent or another scheme. The token is not validated here.
std::optional<std::string_view> bearer_token(std::string_view authorization);

// A non-negative decimal integer within [lo, hi]; ApiError 400 naming `what` otherwise.
std::int64_t parse_int(std::string_view text, std::int64_t lo, std::int64_t hi, std::string_view what);
// Last-Event-ID (or ?since= on /api/events): a non-negative id, or -1 when absent/empty.
std::int64_t parse_last_event_id(std::string_view text);

// Query parameters of the read routes, checked: unknown names are refused (400) so that a
// typo does not silently widen a query.
struct DeviceQuery {
  std::optional<std::string> serial, mac, state, batch, fixture, since, until;
  std::int64_t limit = 1000;           // at most this many (oldest first) ...
  std::optional<std::int64_t> last;    // ... or the last N, newest first
};
DeviceQuery parse_device_query(const std::map<std::string, std::string>& q);

struct JournalQuery {
  std::optional<std::int64_t> since_seq;    // entries with seq > this
  std::optional<std::string> since_time;    // or with time >= this (RFC 3339)
  std::optional<std::string> subject;
  std::int64_t limit = 200;
};
JournalQuery parse_journal_query(const std::map<std::string, std::string>& q);

// A MAC as the records keep it: 12 lowercase hex digits (':' or '-' separators allowed on
// input). nullopt if it is not one.
std::optional<std::string> normalize_mac(std::string_view mac);

// JSON bodies. Each parses `body` as one JSON object and checks every member's type;
// unknown members are refused (400 naming them).
nlohmann::json parse_json_object(std::string_view body);
// POST /api/batches: {"name": string, + BatchSettings fields}; returns the settings part
// (without "name") and the name.
struct OpenBatchBody {
  std::string name;
  nlohmann::json settings;
};
OpenBatchBody parse_open_batch(std::string_view body);
// POST /api/batches/{name}/close: {} or {"manifest": false}; nothing else.
void parse_empty_body(std::string_view body);
// POST /api/users: {"name": string, "role": "operator"|"officer"|"auditor"}.
struct AddUserBody {
  std::string name, role;
};
AddUserBody parse_add_user(std::string_view body);
// POST /api/devices/{serial}/reprovision: {"reason": non-empty string, "batch": string,
// "revoke_reason": string, "erased": boolean}; only "reason" is required.
struct ReprovisionBody {
  std::string reason;
  std::optional<std::string> batch, revoke_reason;
  bool erased = false;
};
ReprovisionBody parse_reprovision(std::string_view body);

// A batch, device or user name as it may appear in a path: 1 to 128 printable ASCII
// characters without '/', or ApiError 400.
void check_name(std::string_view what, std::string_view name);

// The one place station::Error codes become HTTP status and a safe message. Messages of
// 4xx errors are the station's own (they name the thing and the fix); 5xx errors get a
// generic message with `request_id`, and the caller logs the detail.
ApiError to_api_error(const Error& e, std::uint64_t request_id);
nlohmann::json to_json(const ApiError& e, std::uint64_t request_id);
// What the API sends: JSON text in which any invalid UTF-8 (from the station's own records
// or messages) is replaced, never an exception.
std::string dump_json(const nlohmann::json& j);

}  // namespace station::http
