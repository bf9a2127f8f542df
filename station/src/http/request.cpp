#include "http/request.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <limits>
#include <set>

#include <fmt/format.h>

namespace station::http {
namespace {

using nlohmann::json;

ApiError bad_request(std::string message) { return ApiError(400, "invalid_argument", std::move(message)); }

// Client text quoted in a message: printable ASCII only, at most `max` bytes, so a message
// is always valid UTF-8 JSON and cannot smuggle control characters into a page or a log.
std::string printable(std::string_view text, std::size_t max = 64) {
  std::string out;
  for (const char c : text.substr(0, max))
    out.push_back(static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f ? c : '?');
  if (text.size() > max) out += "...";
  return out;
}

// Static arrays behind the routes' role lists (an initializer_list at namespace scope keeps
// its array for the program's life).
const Roles kAnyRole = {"operator", "officer", "auditor"};
const Roles kRunsLine = {"operator", "officer"};  // as `station batch` allows
const Roles kReadsRecords = {"auditor", "officer"};
const Roles kOfficer = {"officer"};

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  std::size_t pos = 1;  // after the leading '/'
  while (pos <= path.size()) {
    const auto next = path.find('/', pos);
    const auto end = next == std::string_view::npos ? path.size() : next;
    out.push_back(path.substr(pos, end - pos));
    if (next == std::string_view::npos) break;
    pos = next + 1;
  }
  return out;
}

// Matches `path` against `pattern`; fills `params` with decoded {x} segments.
bool matches(std::string_view pattern, std::string_view path, std::map<std::string, std::string>& params) {
  const auto ps = split_path(pattern);
  const auto xs = split_path(path);
  if (ps.size() != xs.size()) return false;
  std::map<std::string, std::string> found;
  for (std::size_t k = 0; k < ps.size(); ++k) {
    if (ps[k].size() >= 2 && ps[k].front() == '{' && ps[k].back() == '}') {
      if (xs[k].empty()) return false;
      auto decoded = percent_decode(xs[k], false);
      if (!decoded) throw bad_request("the path has a bad %-escape");
      found.emplace(std::string(ps[k].substr(1, ps[k].size() - 2)), std::move(*decoded));
    } else if (ps[k] != xs[k]) {
      return false;
    }
  }
  params = std::move(found);
  return true;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Nesting deeper than this is refused before parsing (a 64 KiB body of '[' would otherwise
// build a 64K-deep value for no reason).
constexpr int kMaxJsonDepth = 16;

bool too_deep(std::string_view body) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (const char c : body) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

enum class Kind { string, integer, boolean, string_array };

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::string: return "a string";
    case Kind::integer: return "an integer";
    case Kind::boolean: return "true or false";
    case Kind::string_array: return "an array of strings";
  }
  return "?";
}

bool has_kind(const json& v, Kind k) {
  switch (k) {
    case Kind::string: return v.is_string();
    case Kind::integer: return v.is_number_integer();
    case Kind::boolean: return v.is_boolean();
    case Kind::string_array:
      return v.is_array() && std::all_of(v.begin(), v.end(), [](const json& e) { return e.is_string(); });
  }
  return false;
}

// Checks every member of `body` against `fields` (name -> kind); refuses unknown members
// and missing required ones.
void check_members(const json& body, const std::map<std::string, Kind>& fields, const std::set<std::string>& required) {
  for (const auto& [key, value] : body.items()) {
    const auto it = fields.find(key);
    if (it == fields.end()) {
      std::string known;
      for (const auto& [k, v] : fields) known += (known.empty() ? "" : ", ") + k;
      throw bad_request(fmt::format("unknown field \"{}\" (known: {})", printable(key), known));
    }
    if (!has_kind(value, it->second)) throw bad_request(fmt::format("\"{}\" must be {}", key, kind_name(it->second)));
  }
  for (const auto& r : required)
    if (!body.contains(r)) throw bad_request(fmt::format("\"{}\" is required", r));
}

std::optional<std::string> non_empty(const std::map<std::string, std::string>& q, const std::string& key) {
  const auto it = q.find(key);
  if (it == q.end() || it->second.empty()) return std::nullopt;
  return it->second;
}

void refuse_unknown(const std::map<std::string, std::string>& q, const std::set<std::string>& known) {
  for (const auto& [k, v] : q) {
    if (known.count(k) == 0) {
      std::string names;
      for (const auto& n : known) names += (names.empty() ? "" : ", ") + n;
      throw bad_request(fmt::format("unknown query parameter \"{}\" (known: {})", printable(k), names));
    }
  }
}

// RFC 3339 as the records write it: YYYY-MM-DDTHH:MM:SS[.fff]Z (or an offset).
bool looks_like_rfc3339(std::string_view s) {
  if (s.size() < 20 || s.size() > 40) return false;
  static constexpr std::string_view kShape = "dddd-dd-ddTdd:dd:dd";
  for (std::size_t k = 0; k < kShape.size(); ++k) {
    const bool digit = s[k] >= '0' && s[k] <= '9';
    if (kShape[k] == 'd' ? !digit : s[k] != kShape[k]) return false;
  }
  for (const char c : s.substr(kShape.size()))
    if (std::string_view("0123456789.:+-Z").find(c) == std::string_view::npos) return false;
  return true;
}

}  // namespace

std::string_view to_string(Method m) noexcept { return m == Method::get ? "GET" : "POST"; }

const std::vector<Route>& routes() {
  static const std::vector<Route> kRoutes = {
      {Method::get, "/", {}, "page", RouteId::page},
      {Method::get, "/app.js", {}, "page", RouteId::page},
      {Method::get, "/app.css", {}, "page", RouteId::page},
      {Method::get, "/api/health", {}, "health", RouteId::health},
      {Method::get, "/api/whoami", kAnyRole, "whoami", RouteId::whoami},
      {Method::get, "/api/batches", kAnyRole, "batch.list", RouteId::batches_list},
      {Method::post, "/api/batches", kRunsLine, "batch.open", RouteId::batches_open, true},
      {Method::post, "/api/batches/{name}/pause", kRunsLine, "batch.pause", RouteId::batch_pause, true},
      {Method::post, "/api/batches/{name}/resume", kRunsLine, "batch.resume", RouteId::batch_resume, true},
      {Method::post, "/api/batches/{name}/close", kRunsLine, "batch.close", RouteId::batch_close, true},
      {Method::get, "/api/fixtures", kAnyRole, "fixture.list", RouteId::fixtures},
      {Method::get, "/api/progress", kAnyRole, "line.progress", RouteId::progress},
      {Method::get, "/api/devices", kAnyRole, "device.query", RouteId::devices},
      {Method::get, "/api/devices/{serial}", kAnyRole, "device.show", RouteId::device},
      {Method::get, "/api/devices/{serial}/label.png", kAnyRole, "label.preview", RouteId::device_label_png},
      {Method::post, "/api/devices/{serial}/reprint", kRunsLine, "label.reprint", RouteId::device_reprint, true},
      {Method::post, "/api/devices/{serial}/reprovision", kOfficer, "device.reprovision", RouteId::device_reprovision,
       true},
      {Method::get, "/api/journal", kReadsRecords, "journal.read", RouteId::journal},
      {Method::get, "/api/events", kAnyRole, "events.stream", RouteId::events},
      {Method::post, "/api/users", kOfficer, "user.add", RouteId::users_add, true},
  };
  return kRoutes;
}

Method parse_method(std::string_view m) {
  if (m == "GET") return Method::get;
  if (m == "POST") return Method::post;
  throw ApiError(405, "method_not_allowed",
                 fmt::format("method {} is not used by this API (GET or POST)", printable(m, 16)));
}

Match match_route(Method method, std::string_view path) {
  bool other_method = false;
  for (const auto& r : routes()) {
    Match m;
    if (!matches(r.pattern, path, m.params)) continue;
    if (r.method != method) {
      other_method = true;
      continue;
    }
    m.route = &r;
    return m;
  }
  if (other_method)
    throw ApiError(405, "method_not_allowed", fmt::format("{} is not allowed here", to_string(method)));
  throw ApiError(404, "not_found", "no such endpoint; docs/api.md lists them");
}

std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t k = 0; k < s.size(); ++k) {
    const char c = s[k];
    if (c == '%') {
      if (k + 2 >= s.size()) return std::nullopt;
      const int hi = hex_value(s[k + 1]), lo = hex_value(s[k + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      const char v = static_cast<char>(hi * 16 + lo);
      if (v == '\0') return std::nullopt;
      out.push_back(v);
      k += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else if (c == '\0') {
      return std::nullopt;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

Target parse_target(std::string_view target) {
  if (target.empty() || target.front() != '/')
    throw bad_request("the request target must be a path starting with '/'");
  if (target.size() > 2048) throw ApiError(414, "uri_too_long", "the request target is longer than 2048 bytes");
  for (const char c : target)
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f || c == '#')
      throw bad_request("the request target has a character that must be %-escaped");
  Target t;
  const auto q = target.find('?');
  t.path = std::string(target.substr(0, q));
  if (q == std::string_view::npos) return t;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    const auto amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    auto key = percent_decode(pair.substr(0, eq), true);
    auto value = percent_decode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1), true);
    if (!key || !value) throw bad_request("the query string has a bad %-escape");
    if (key->empty()) throw bad_request("the query string has a parameter without a name");
    t.query[std::move(*key)] = std::move(*value);
  }
  return t;
}

std::optional<std::string_view> bearer_token(std::string_view authorization) {
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size()) return std::nullopt;
  for (std::size_t k = 0; k < kScheme.size(); ++k) {
    const char c = authorization[k];
    const char lower = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    if (lower != kScheme[k]) return std::nullopt;
  }
  std::string_view token = authorization.substr(kScheme.size());
  while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) token.remove_prefix(1);
  while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
  if (token.empty()) return std::nullopt;
  return token;
}

std::int64_t parse_int(std::string_view text, std::int64_t lo, std::int64_t hi, std::string_view what) {
  std::int64_t v = 0;
  const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || r.ec != std::errc() || r.ptr != text.data() + text.size() || v < lo || v > hi)
    throw bad_request(fmt::format("{} must be a whole number from {} to {}", what, lo, hi));
  return v;
}

std::int64_t parse_last_event_id(std::string_view text) {
  if (text.empty()) return -1;
  return parse_int(text, 0, std::numeric_limits<std::int64_t>::max() / 2, "Last-Event-ID");
}

std::optional<std::string> normalize_mac(std::string_view mac) {
  std::string out;
  for (const char c : mac) {
    if (c == ':' || c == '-') continue;
    if (hex_value(c) < 0) return std::nullopt;
    out.push_back((c >= 'A' && c <= 'F') ? static_cast<char>(c - 'A' + 'a') : c);
  }
  if (out.size() != 12) return std::nullopt;
  return out;
}

DeviceQuery parse_device_query(const std::map<std::string, std::string>& q) {
  refuse_unknown(q, {"serial", "mac", "state", "batch", "fixture", "since", "until", "limit", "last"});
  DeviceQuery d;
  d.serial = non_empty(q, "serial");
  d.batch = non_empty(q, "batch");
  d.fixture = non_empty(q, "fixture");
  if (auto mac = non_empty(q, "mac")) {
    d.mac = normalize_mac(*mac);
    if (!d.mac) throw bad_request("mac must be 12 hex digits (':' or '-' separators allowed)");
  }
  if (auto state = non_empty(q, "state")) {
    static const std::set<std::string> kStates = {"detected", "reserved", "keyed",    "issued", "written", "verified",
                                                  "locked",   "labelled", "done",     "failed", "voided"};
    if (kStates.count(*state) == 0)
      throw bad_request("state must be one of detected, reserved, keyed, issued, written, verified, locked, "
                        "labelled, done, failed, voided");
    d.state = state;
  }
  for (const char* key : {"since", "until"}) {
    if (auto t = non_empty(q, key)) {
      if (!looks_like_rfc3339(*t)) throw bad_request(fmt::format("{} must be an RFC 3339 time, e.g. 2026-11-22T08:00:00Z", key));
      (std::string_view(key) == "since" ? d.since : d.until) = t;
    }
  }
  if (auto limit = non_empty(q, "limit")) d.limit = parse_int(*limit, 1, 100000, "limit");
  if (auto last = non_empty(q, "last")) d.last = parse_int(*last, 1, 1000, "last");
  return d;
}

JournalQuery parse_journal_query(const std::map<std::string, std::string>& q) {
  refuse_unknown(q, {"since", "subject", "limit"});
  JournalQuery j;
  if (auto since = non_empty(q, "since")) {
    if (since->find_first_not_of("0123456789") == std::string::npos) {
      j.since_seq = parse_int(*since, 0, std::numeric_limits<std::int64_t>::max() / 2, "since");
    } else if (looks_like_rfc3339(*since)) {
      j.since_time = since;
    } else {
      throw bad_request("since must be a journal sequence number or an RFC 3339 time");
    }
  }
  j.subject = non_empty(q, "subject");
  if (j.subject && j.subject->size() > 256) throw bad_request("subject is longer than 256 bytes");
  if (auto limit = non_empty(q, "limit")) j.limit = parse_int(*limit, 1, 1000, "limit");
  return j;
}

json parse_json_object(std::string_view body) {
  if (too_deep(body)) throw bad_request(fmt::format("the JSON body nests deeper than {} levels", kMaxJsonDepth));
  json j = json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_discarded()) throw bad_request("the body is not valid JSON");
  if (!j.is_object()) throw bad_request("the body must be a JSON object");
  return j;
}

void check_name(std::string_view what, std::string_view name) {
  bool ok = !name.empty() && name.size() <= 128 && name.front() != ' ' && name.back() != ' ';
  for (const char c : name)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f || c == '/') ok = false;
  if (!ok)
    throw bad_request(fmt::format("{} must be 1 to 128 printable ASCII characters without '/' or outer spaces", what));
}

OpenBatchBody parse_open_batch(std::string_view body) {
  json j = parse_json_object(body);
  static const std::map<std::string, Kind> kFields = {
      {"name", Kind::string},           {"product", Kind::string},      {"quantity", Kind::integer},
      {"serial_pattern", Kind::string}, {"mac_source", Kind::string},   {"profile", Kind::string},
      {"label_template", Kind::string}, {"key_mode", Kind::string},     {"curve", Kind::string},
      {"lock", Kind::boolean},          {"configurator_keys", Kind::string_array}};
  check_members(j, kFields, {"name", "product", "quantity"});
  OpenBatchBody out;
  out.name = j.at("name").get<std::string>();
  check_name("the batch name", out.name);
  j.erase("name");
  out.settings = std::move(j);
  return out;
}

void parse_empty_body(std::string_view body) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return;
  check_members(parse_json_object(body), {}, {});
}

AddUserBody parse_add_user(std::string_view body) {
  const json j = parse_json_object(body);
  check_members(j, {{"name", Kind::string}, {"role", Kind::string}}, {"name", "role"});
  AddUserBody out{j.at("name").get<std::string>(), j.at("role").get<std::string>()};
  if (out.role != "operator" && out.role != "officer" && out.role != "auditor")
    throw bad_request("role must be operator, officer or auditor");
  return out;
}

ReprovisionBody parse_reprovision(std::string_view body) {
  const json j = parse_json_object(body);
  check_members(j,
                {{"reason", Kind::string}, {"batch", Kind::string}, {"revoke_reason", Kind::string},
                 {"erased", Kind::boolean}},
                {"reason"});
  ReprovisionBody out;
  out.reason = j.at("reason").get<std::string>();
  if (out.reason.empty()) throw bad_request("\"reason\" must say why the device is re-provisioned (the journal keeps it)");
  if (j.contains("batch")) {
    out.batch = j.at("batch").get<std::string>();
    check_name("\"batch\"", *out.batch);
  }
  if (j.contains("revoke_reason")) out.revoke_reason = j.at("revoke_reason").get<std::string>();
  if (j.contains("erased")) out.erased = j.at("erased").get<bool>();
  return out;
}

ApiError to_api_error(const Error& e, std::uint64_t request_id) {
  const std::string code = errc_name(e.code());
  switch (e.code()) {
    case Errc::invalid_argument:
    case Errc::parse_error:
    case Errc::config_error:  // at run time: a request naming an unknown profile or template
    case Errc::unsupported:
      return ApiError(400, code, e.what());
    case Errc::not_found:
      return ApiError(404, code, e.what());
    case Errc::already_exists:
    case Errc::constraint_violation:
    case Errc::busy:
      return ApiError(409, code, e.what());
    case Errc::permission_denied:
      return ApiError(403, code, e.what());
    case Errc::hsm_unavailable:
      return ApiError(503, code, fmt::format("the HSM is unavailable (request {}); retry once it is back, and if it "
                                             "stays away check the token and its module",
                                             request_id));
    case Errc::timeout:
      return ApiError(503, code, fmt::format("the station timed out (request {}); retry", request_id));
    case Errc::hsm_pin_incorrect:
    case Errc::hsm_pin_locked:
      // Never retried by the station (a real token locks): an officer must look.
      return ApiError(503, code, "the HSM refused the station's PIN; a security officer must check the token");
    case Errc::hsm_error:
      return ApiError(503, code, fmt::format("the HSM failed (request {}); retry, and if it persists check the token",
                                             request_id));
    default:
      return ApiError(500, code, fmt::format("the station could not complete this request (request {}); the detail is "
                                             "in the station's log",
                                             request_id));
  }
}

json to_json(const ApiError& e, std::uint64_t request_id) {
  return {{"error", e.message}, {"code", e.code}, {"status", e.status}, {"request_id", request_id}};
}

std::string dump_json(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace station::http
