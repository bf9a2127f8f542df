#include "http/api.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <thread>

#include <fmt/format.h>

#include "common/bytes.hpp"
#include "common/secure.hpp"
#include "core/batches.hpp"
#include "core/reprovision.hpp"
#include "db/audit.hpp"
#include "db/records.hpp"
#include "http/labels.hpp"

#ifndef STATION_VERSION
#define STATION_VERSION "unknown"
#endif

namespace station::http {
namespace {

using nlohmann::json;

json opt(const std::optional<std::string>& v) { return v ? json(*v) : json(nullptr); }

json entry_json(const db::Entry& e) {
  json details = json::parse(e.details, nullptr, false);
  if (details.is_discarded()) details = e.details;
  return {{"seq", e.seq},         {"time", e.time},       {"station_id", e.station_id}, {"actor", e.actor},
          {"action", e.action},   {"subject", e.subject}, {"details", details},         {"hash", e.hash},
          {"prev_hash", e.prev_hash}};
}

// A token handed to core::add_user, which reads the acting officer's token from a file:
// an anonymous in-memory file (memfd), so the token never touches a disk.
class MemoryTokenFile {
 public:
  explicit MemoryTokenFile(std::string_view token) {
    fd_ = ::memfd_create("station-token", MFD_CLOEXEC);
    if (fd_ < 0) throw_errno("memfd_create for the officer's token");
    if (::fchmod(fd_, 0600) != 0) throw_errno("fchmod of the officer's token memfd");
    std::size_t done = 0;
    while (done < token.size()) {
      const auto n = ::write(fd_, token.data() + done, token.size() - done);
      if (n <= 0) throw_errno("writing the officer's token to its memfd");
      done += static_cast<std::size_t>(n);
    }
  }
  MemoryTokenFile(const MemoryTokenFile&) = delete;
  MemoryTokenFile& operator=(const MemoryTokenFile&) = delete;
  ~MemoryTokenFile() {
    if (fd_ >= 0) {
      // Overwrite before closing; the pages go with the last reference anyway.
      const off_t size = ::lseek(fd_, 0, SEEK_END);
      if (size > 0) {
        const std::string zeros(static_cast<std::size_t>(size), '\0');
        static_cast<void>(::pwrite(fd_, zeros.data(), zeros.size(), 0));
      }
      ::close(fd_);
    }
  }
  std::filesystem::path path() const { return fmt::format("/proc/self/fd/{}", fd_); }

 private:
  int fd_ = -1;
};

ApiError conflict(std::string message) { return ApiError(409, "conflict", std::move(message)); }

}  // namespace

Reply json_reply(int status, const json& body) {
  Reply r;
  r.status = status;
  r.body = dump_json(body);
  return r;
}

Api::Api(Context context, std::function<json()> tls_info) : ctx_(context), tls_info_(std::move(tls_info)) {}

core::Actor Api::authorize(const Route& route, const ApiRequest& request) {
  const auto token = bearer_token(request.authorization);
  if (!token)
    throw ApiError(401, "unauthenticated",
                   "this endpoint needs a token: send 'Authorization: Bearer NAME.<64 hex digits>' (an officer "
                   "makes tokens with `station user add`)");
  SecretString secret{std::string(*token)};
  const std::string key = sha256_hex(as_bytes(secret.str()));
  auto check_role = [&](const core::Actor& actor) {
    try {
      core::require_role(ctx_.station, actor, route.roles, route.action);  // journals a refusal
    } catch (const Error& e) {
      if (e.code() == Errc::permission_denied) throw ApiError(403, "forbidden", e.what());
      throw;
    }
  };

  std::optional<core::Actor> cached;
  {
    auto records = ctx_.station.reader();
    std::lock_guard lock(cache_mutex_);
    if (const auto it = cache_.find(key); it != cache_.end()) {
      const auto user = records->user_by_name(it->second.first.name);
      if (user && !user->disabled && user->token_hash == it->second.first.token_hash) {
        lru_.splice(lru_.begin(), lru_, it->second.second);
        cached = core::Actor{user->name, user->role};
      } else {
        lru_.erase(it->second.second);
        cache_.erase(it);
      }
    }
  }
  if (cached) {
    check_role(*cached);
    return *cached;
  }

  // An Argon2id check holds the station's lock (core::authenticate reads and journals
  // through it), so only one runs at a time, and a refused token costs its sender a pause
  // before the answer: a flood of bad tokens cannot starve the line.
  std::lock_guard auth_lock(auth_mutex_);
  core::Actor actor;
  try {
    std::lock_guard station_lock(ctx_.station.mutex());
    actor = core::authenticate(ctx_.station, secret, route.action);  // journals a refusal
    if (const auto user = ctx_.station.records().user_by_name(actor.name)) {
      std::lock_guard lock(cache_mutex_);
      if (cache_.count(key) == 0) {
        lru_.push_front(key);
        cache_.emplace(key, std::make_pair(CacheEntry{user->name, user->token_hash}, lru_.begin()));
        if (cache_.size() > kCacheSize) {
          cache_.erase(lru_.back());
          lru_.pop_back();
        }
      }
    }
  } catch (const Error& e) {
    if (e.code() != Errc::permission_denied) throw;
    std::this_thread::sleep_for(kRefusalPause);
    throw ApiError(401, "unauthenticated", e.what());
  }
  check_role(actor);
  return actor;
}

Reply Api::handle(const Match& match, const ApiRequest& request) {
  core::Actor actor;
  if (match.route->roles.size() > 0) actor = authorize(*match.route, request);
  Reply r = route(match, request, actor);
  r.actor = actor.name;
  return r;
}

Reply Api::route(const Match& m, const ApiRequest& req, const core::Actor& actor) {
  auto& station = ctx_.station;
  const auto& q = req.target.query;
  auto no_query = [&] {
    if (!q.empty()) throw ApiError(400, "invalid_argument", "this endpoint takes no query parameters");
  };
  switch (m.route->id) {
    case RouteId::page:
      throw ApiError(500, "internal", "the page is served by the server");  // not reached
    case RouteId::health:
      no_query();
      return health();
    case RouteId::whoami:
      no_query();
      return json_reply(200, {{"name", actor.name}, {"role", actor.role}});
    case RouteId::batches_list: {
      no_query();
      json out = json::array();
      for (const auto& b : core::list_batches(*station.reader())) out.push_back(core::to_json(b));
      return json_reply(200, out);
    }
    case RouteId::batches_open:
      no_query();
      return open_batch(req, actor);
    case RouteId::batch_pause:
    case RouteId::batch_resume:
    case RouteId::batch_close:
      no_query();
      return change_batch(m.params.at("name"), m.route->id, req, actor);
    case RouteId::fixtures: {
      no_query();
      json out = json::array();
      if (ctx_.line != nullptr)
        for (const auto& f : ctx_.line->fixtures()) out.push_back(core::to_json(f));
      return json_reply(200, out);
    }
    case RouteId::progress: {
      no_query();
      if (ctx_.line != nullptr) {
        json p = ctx_.line->progress();
        p["running"] = true;
        return json_reply(200, p);
      }
      return json_reply(200, {{"running", false},
                              {"batch", nullptr},
                              {"state", "stopped"},
                              {"done", 0},
                              {"failed", 0},
                              {"in_flight", 0},
                              {"devices_per_min", 0},
                              {"hsm", nullptr},
                              {"started", nullptr}});
    }
    case RouteId::devices:
      return devices(req);
    case RouteId::device:
      no_query();
      check_name("the serial", m.params.at("serial"));
      return device(m.params.at("serial"));
    case RouteId::device_label_png:
      no_query();
      check_name("the serial", m.params.at("serial"));
      return label_png(m.params.at("serial"));
    case RouteId::device_reprint:
      no_query();
      parse_empty_body(req.body);
      check_name("the serial", m.params.at("serial"));
      return reprint(m.params.at("serial"), actor);
    case RouteId::device_reprovision:
      no_query();
      check_name("the serial", m.params.at("serial"));
      return reprovision(m.params.at("serial"), req, actor);
    case RouteId::journal:
      return journal(req);
    case RouteId::events: {
      const auto it = q.find("since");
      if (q.size() > (it == q.end() ? 0U : 1U))
        throw ApiError(400, "invalid_argument", "unknown query parameter (known: since)");
      Reply r;
      r.stream_events = true;
      r.since_id = parse_last_event_id(req.last_event_id);
      if (r.since_id < 0 && it != q.end()) r.since_id = parse_last_event_id(it->second);
      return r;
    }
    case RouteId::users_add:
      no_query();
      return add_user(req, actor);
  }
  throw ApiError(500, "internal", "unhandled route");
}

Reply Api::health() {
  auto& station = ctx_.station;
  json out = {{"version", STATION_VERSION}, {"time", db::now_rfc3339()}};
  std::string database = "ok", hsm = "ok";
  std::optional<std::int64_t> journal_seq;
  try {
    auto records = station.reader();
    auto st = records->connection().prepare("SELECT max(seq) FROM journal");
    if (st.step() && !st.is_null(0)) journal_seq = st.int64(0);
  } catch (const Error&) {
    database = "error";
  }
  // The HSM as the line sees it when one runs; otherwise ask the token for the issuing key.
  if (ctx_.line == nullptr) {
    std::lock_guard lock(station.mutex());
    try {
      const auto issuing = station.records().active_ca("issuing");
      if (!issuing || !station.hsm().find_key(issuing->key_id)) hsm = "key missing";
    } catch (const Error&) {
      hsm = "unavailable";
    }
  } else {
    const json p = ctx_.line->progress();
    hsm = p.value("hsm", std::string("ok"));
  }
  out["database"] = database;
  out["hsm"] = hsm;
  out["journal_seq"] = journal_seq ? json(*journal_seq) : json(nullptr);
  out["line"] = ctx_.line != nullptr ? "running" : "stopped";
  out["events"] = ctx_.bus.last_id();
  out["tls"] = tls_info_ ? tls_info_() : json(nullptr);
  out["status"] = (database == "ok" && hsm == "ok") ? "ok" : "degraded";
  return json_reply(200, out);
}

json Api::label_status(db::Records& records, std::int64_t device_id) {
  auto st = records.connection().prepare(
      "SELECT printer, result, time FROM labels WHERE device_id = ? ORDER BY id DESC LIMIT 1");
  st.bind(1, device_id);
  if (!st.step()) return nullptr;
  return {{"printer", st.text(0)}, {"result", st.text(1)}, {"time", st.text(2)}};
}

Reply Api::devices(const ApiRequest& req) {
  const DeviceQuery dq = parse_device_query(req.target.query);
  db::QueryFilter f;
  f.serial = dq.serial;
  f.mac = dq.mac;
  f.state = dq.state;
  f.batch = dq.batch;
  f.fixture = dq.fixture;
  f.since = dq.since;
  f.until = dq.until;
  auto records = ctx_.station.reader();
  auto rows = db::query_identities(records->connection(), f);
  std::vector<const db::IdentityRow*> picked;
  if (dq.last) {
    for (auto it = rows.rbegin(); it != rows.rend() && static_cast<std::int64_t>(picked.size()) < *dq.last; ++it)
      picked.push_back(&*it);
  } else {
    for (const auto& r : rows) {
      if (static_cast<std::int64_t>(picked.size()) >= dq.limit) break;
      picked.push_back(&r);
    }
  }
  json out = json::array();
  for (const auto* r : picked) {
    json j = db::to_json(*r);
    const auto d = records->device_by_serial(r->serial);
    j["reason"] = d ? opt(d->reason) : json(nullptr);
    j["label"] = d ? label_status(*records, d->id) : json(nullptr);
    out.push_back(std::move(j));
  }
  Reply reply = json_reply(200, out);
  reply.headers.emplace_back("X-Total-Count", std::to_string(rows.size()));
  return reply;
}

Reply Api::device(const std::string& serial) {
  auto records = ctx_.station.reader();
  const auto d = records->device_by_serial(serial);
  if (!d) throw ApiError(404, "not_found", fmt::format("no device with serial {}", serial));
  db::QueryFilter f;
  f.serial = serial;
  json identities = json::array();
  for (const auto& r : db::query_identities(records->connection(), f)) identities.push_back(db::to_json(r));
  json entries = json::array();
  for (const auto& e : db::journal_entries_for(records->connection(), "device:" + serial))
    entries.push_back(entry_json(e));
  return json_reply(200, {{"serial", d->serial},
                          {"chip_id", opt(d->chip_id)},
                          {"mac", opt(d->mac)},
                          {"fixture", opt(d->fixture)},
                          {"state", d->state},
                          {"reason", opt(d->reason)},
                          {"created", d->created},
                          {"updated", d->updated},
                          {"label", label_status(*records, d->id)},
                          {"identities", identities},
                          {"journal", entries}});
}

Reply Api::journal(const ApiRequest& req) {
  const JournalQuery jq = parse_journal_query(req.target.query);
  std::string sql = fmt::format("SELECT {} FROM journal WHERE 1", db::kEntryColumns);
  if (jq.since_seq) sql += " AND seq > ?";
  if (jq.since_time) sql += " AND time >= ?";
  if (jq.subject) sql += " AND subject = ?";
  sql += " ORDER BY seq LIMIT ?";
  auto records = ctx_.station.reader();
  auto st = records->connection().prepare(sql);
  int k = 1;
  if (jq.since_seq) st.bind(k++, *jq.since_seq);
  if (jq.since_time) st.bind(k++, *jq.since_time);
  if (jq.subject) st.bind(k++, *jq.subject);
  st.bind(k, jq.limit);
  json out = json::array();
  while (st.step()) out.push_back(entry_json(db::read_entry(st)));
  return json_reply(200, out);
}

Reply Api::open_batch(const ApiRequest& req, const core::Actor& actor) {
  const OpenBatchBody body = parse_open_batch(req.body);
  const core::BatchSettings settings = core::BatchSettings::from_json(body.settings);
  auto& station = ctx_.station;
  std::lock_guard lock(station.mutex());
  if (!settings.profile.empty() && station.config().profiles.count(settings.profile) == 0)
    throw ApiError(400, "invalid_argument", fmt::format("certificate profile '{}' is not defined in station.conf",
                                                        settings.profile));
  if (core::find_batch(station, body.name))
    throw conflict(fmt::format("batch {} exists; batch names are never reused", body.name));
  const core::Batch b = core::open_batch(station, body.name, settings, actor.name);
  json j = core::to_json(b);
  ctx_.bus.publish("batch", {{"event", "opened"}, {"batch", j}});
  return json_reply(201, j);
}

Reply Api::change_batch(const std::string& name, RouteId id, const ApiRequest& req, const core::Actor& actor) {
  parse_empty_body(req.body);
  check_name("the batch name", name);
  auto& station = ctx_.station;
  std::lock_guard lock(station.mutex());
  const auto b = core::find_batch(station, name);
  if (!b) throw ApiError(404, "not_found", fmt::format("no batch {}", name));
  const std::string to = id == RouteId::batch_pause ? "paused" : id == RouteId::batch_resume ? "open" : "closed";
  const bool ok = (to == "paused" && b->state == "open") || (to == "open" && b->state == "paused") ||
                  (to == "closed" && b->state != "closed");
  if (!ok) throw conflict(fmt::format("batch {} is {}; it cannot become {}", name, b->state, to));
  json j;
  if (id == RouteId::batch_close) {
    const auto manifest = station.config().data_dir / "manifests" / (name + ".jsonl");
    std::filesystem::create_directories(manifest.parent_path());
    const auto r = core::close_batch(station, name, manifest, actor.name);
    j = core::to_json(r.batch);
    j["missing"] = r.missing;
    j["manifest"] = r.manifest.string();
  } else {
    j = core::to_json(core::set_batch_state(station, name, to, actor.name));
  }
  const char* event = id == RouteId::batch_pause ? "paused" : id == RouteId::batch_resume ? "resumed" : "closed";
  ctx_.bus.publish("batch", {{"event", event}, {"batch", j}});
  return json_reply(200, j);
}

Reply Api::add_user(const ApiRequest& req, const core::Actor& actor) {
  const AddUserBody body = parse_add_user(req.body);
  // The route already checked the officer; core::add_user checks the token once more itself
  // (it takes it as a TokenSource) and journals "user.added" with the officer's name.
  const auto token = bearer_token(req.authorization);
  const MemoryTokenFile file(token.value_or(std::string_view()));
  const core::TokenSource by{file.path()};
  std::lock_guard lock(ctx_.station.mutex());
  const auto added = core::add_user(ctx_.station, body.name, body.role, &by);
  Reply r = json_reply(201, {{"name", added.user.name}, {"role", added.user.role}, {"token", added.token.str()},
                             {"added_by", actor.name}});
  return r;
}

Reply Api::label_png(const std::string& serial) {
  Reply r;
  r.content_type = "image/png";
  r.body = render_label_png(ctx_.station, serial);
  r.headers.emplace_back("Cache-Control", "private, max-age=60");
  return r;
}

Reply Api::reprovision(const std::string& serial, const ApiRequest& req, const core::Actor& actor) {
  const ReprovisionBody body = parse_reprovision(req.body);
  core::ReprovisionRequest r;
  r.serial = serial;
  r.why = body.reason;
  r.batch = body.batch;
  if (body.revoke_reason) r.revoke_reason = *body.revoke_reason;
  r.erased = body.erased;
  std::lock_guard lock(ctx_.station.mutex());
  json j = core::to_json(core::reprovision_device(ctx_.station, actor, r));
  ctx_.bus.publish("device", {{"event", "reprovisioned"}, {"serial", serial}, {"state", "reserved"},
                              {"batch", j["batch"]}});
  return json_reply(200, j);
}

Reply Api::reprint(const std::string& serial, const core::Actor& actor) {
  json j = reprint_device_label(ctx_.station, serial, actor.name);
  ctx_.bus.publish("device", {{"event", "label.reprinted"}, {"serial", serial}, {"label", j}});
  return json_reply(200, j);
}

}  // namespace station::http
