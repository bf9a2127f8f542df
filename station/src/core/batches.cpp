#include "core/batches.hpp"

#include "db/highwater.hpp"

#include <ctime>
#include <fstream>
#include <iterator>
#include <sstream>

#include <fmt/format.h>

#include "db/audit.hpp"

namespace station::core {

nlohmann::json BatchSettings::to_json() const {
  return {{"product", product},     {"quantity", quantity},          {"serial_pattern", serial_pattern},
          {"mac_source", mac_source}, {"profile", profile},          {"label_template", label_template},
          {"key_mode", key_mode},   {"curve", curve},                {"lock", lock},
          {"configurator_keys", configurator_keys}};
}

BatchSettings BatchSettings::from_json(const nlohmann::json& j) {
  BatchSettings s;
  s.product = j.value("product", "");
  s.quantity = j.value("quantity", std::int64_t{0});
  s.serial_pattern = j.value("serial_pattern", s.serial_pattern);
  s.mac_source = j.value("mac_source", s.mac_source);
  s.profile = j.value("profile", "");
  s.label_template = j.value("label_template", s.label_template);
  s.key_mode = j.value("key_mode", s.key_mode);
  s.curve = j.value("curve", s.curve);
  s.lock = j.value("lock", false);
  s.configurator_keys = j.value("configurator_keys", std::vector<std::string>{});
  return s;
}

void BatchSettings::validate() const {
  auto bad = [](const std::string& what, const std::string& why) {
    throw Error(Errc::invalid_argument, fmt::format("batch {}: {}", what, why));
  };
  if (product.empty()) bad("product", "is required");
  if (quantity <= 0 || quantity > 100'000'000) bad("quantity", "must be 1 to 100000000");
  parse_serial_pattern(serial_pattern, std::chrono::system_clock::now());
  if (key_mode != "station" && key_mode != "on-device") bad("key mode", "must be 'station' or 'on-device'");
  static const std::vector<std::string> kCurves = {"P-256", "P-384", "P-521", "BP-256", "BP-384", "BP-512"};
  if (std::find(kCurves.begin(), kCurves.end(), curve) == kCurves.end())
    bad("curve", "must be one of P-256, P-384, P-521, BP-256, BP-384, BP-512");
  if (mac_source != "device") {
    // pool:OUI:FIRST-LAST, e.g. pool:02a0b1:000000-0fffff
    const bool ok = mac_source.size() == 5 + 6 + 1 + 6 + 1 + 6 && mac_source.rfind("pool:", 0) == 0 &&
                    mac_source[11] == ':' && mac_source[18] == '-' &&
                    hex_decode(mac_source.substr(5, 6)) && hex_decode(mac_source.substr(12, 6)) &&
                    hex_decode(mac_source.substr(19, 6));
    if (!ok) bad("MAC source", "must be 'device' or 'pool:OUI:FIRST-LAST' (6 hex digits each)");
    if (mac_source.substr(12, 6) > mac_source.substr(19, 6)) bad("MAC source", "FIRST must not be after LAST");
  }
  for (const auto& k : configurator_keys)
    if (!base64_decode(k)) bad("configurator keys", "each must be base64 of a DER SubjectPublicKeyInfo");
}

std::string SerialPattern::render(std::int64_t seq) const {
  std::string n = std::to_string(seq);
  if (static_cast<int>(n.size()) < width) n.insert(0, static_cast<std::size_t>(width) - n.size(), '0');
  return prefix + n + suffix;
}

SerialPattern parse_serial_pattern(const std::string& pattern, std::chrono::system_clock::time_point when) {
  const std::time_t t = std::chrono::system_clock::to_time_t(when);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  SerialPattern out;
  std::string* cur = &out.prefix;
  bool have_seq = false;
  for (std::size_t i = 0; i < pattern.size();) {
    if (pattern[i] != '{') {
      const char ch = pattern[i++];
      if (static_cast<unsigned char>(ch) <= 0x20 || static_cast<unsigned char>(ch) >= 0x7f || ch == ',' || ch == '=' ||
          ch == ';' || ch == '}')
        throw Error(Errc::invalid_argument,
                    fmt::format("serial pattern '{}': character '{}' is not allowed (printable ASCII without spaces, "
                                "',', '=', ';')",
                                pattern, ch));
      cur->push_back(ch);
      continue;
    }
    const auto end = pattern.find('}', i);
    if (end == std::string::npos)
      throw Error(Errc::invalid_argument, fmt::format("serial pattern '{}': '{{' without '}}'", pattern));
    const std::string field = pattern.substr(i + 1, end - i - 1);
    i = end + 1;
    if (field == "yyyy") *cur += fmt::format("{:04}", tm.tm_year + 1900);
    else if (field == "yy") *cur += fmt::format("{:02}", tm.tm_year % 100);
    else if (field == "mm") *cur += fmt::format("{:02}", tm.tm_mon + 1);
    else if (field == "dd") *cur += fmt::format("{:02}", tm.tm_mday);
    else if (field == "seq" || field.rfind("seq:", 0) == 0) {
      if (have_seq) throw Error(Errc::invalid_argument, fmt::format("serial pattern '{}': more than one {{seq}}", pattern));
      have_seq = true;
      if (field.size() > 4) {
        const std::string w = field.substr(4);
        if (w.empty() || w.size() > 2 || w.find_first_not_of("0123456789") != std::string::npos || std::stoi(w) > 18)
          throw Error(Errc::invalid_argument, fmt::format("serial pattern '{}': {{seq:0N}} takes a width up to 18", pattern));
        out.width = std::stoi(w);
      }
      cur = &out.suffix;
    } else {
      throw Error(Errc::invalid_argument,
                  fmt::format("serial pattern '{}': unknown field {{{}}} (use yyyy, yy, mm, dd, seq:0N)", pattern, field));
    }
  }
  if (!have_seq) throw Error(Errc::invalid_argument, fmt::format("serial pattern '{}' needs a {{seq}} field", pattern));
  if (out.prefix.size() + out.suffix.size() + static_cast<std::size_t>(std::max(out.width, 1)) > 64)
    throw Error(Errc::invalid_argument, fmt::format("serial pattern '{}' makes serials longer than 64 characters", pattern));
  return out;
}

namespace {

Batch read_batch(db::Statement& st) {
  Batch b;
  b.id = st.int64(0);
  b.name = st.text(1);
  b.state = st.text(2);
  const auto settings = nlohmann::json::parse(st.text(3));
  b.settings = BatchSettings::from_json(settings);
  b.prefix = settings.value("prefix", "");
  b.created = st.text(4);
  b.closed = st.opt_text(5);
  return b;
}

void fill_counts(db::Records& records, Batch& b) {
  auto st = records.connection().prepare(
      "SELECT sum(state = 'done'), sum(state = 'failed'), sum(state = 'voided'), "
      "sum(state NOT IN ('done', 'failed', 'voided')) FROM devices WHERE batch_id = ?");
  st.bind(1, b.id);
  if (st.step()) {
    b.counts.done = st.int64(0);
    b.counts.failed = st.int64(1);
    b.counts.voided = st.int64(2);
    b.counts.in_flight = st.int64(3);
  }
}

constexpr const char* kBatchColumns = "id, name, state, settings, created, closed";

}  // namespace

std::optional<Batch> find_batch(Station& station, const std::string& name) {
  auto st = station.records().connection().prepare(fmt::format("SELECT {} FROM batches WHERE name = ?", kBatchColumns));
  st.bind(1, name);
  if (!st.step()) return std::nullopt;
  Batch b = read_batch(st);
  fill_counts(station.records(), b);
  return b;
}

std::vector<Batch> list_batches(Station& station) { return list_batches(station.records()); }

std::vector<Batch> list_batches(db::Records& records) {
  auto st = records.connection().prepare(fmt::format("SELECT {} FROM batches ORDER BY id", kBatchColumns));
  std::vector<Batch> out;
  while (st.step()) out.push_back(read_batch(st));
  for (auto& b : out) fill_counts(records, b);
  return out;
}

Batch open_batch(Station& station, const std::string& name, const BatchSettings& settings, const std::string& actor) {
  if (name.empty() || name.size() > 64 || name.find_first_of(" \t\n;:,") != std::string::npos)
    throw Error(Errc::invalid_argument, "batch name must be 1 to 64 characters without spaces, ';', ':' or ','");
  settings.validate();
  if (!settings.profile.empty()) station.config().profile(settings.profile);  // must exist
  if (find_batch(station, name))
    throw Error(Errc::already_exists, fmt::format("batch {} exists; batch names are never reused", name));
  const auto pattern = parse_serial_pattern(settings.serial_pattern, std::chrono::system_clock::now());
  nlohmann::json stored = settings.to_json();
  stored["prefix"] = pattern.prefix;  // {yyyy} etc. are fixed when the batch opens
  stored["suffix"] = pattern.suffix;
  stored["width"] = pattern.width;
  station.journal().commit(
      {actor, "batch.opened", "batch:" + name, {{"name", name}, {"settings", stored}}},
      [&](db::Connection& c) {
        auto st = c.prepare("INSERT INTO batches(name, product, quantity, state, settings, created) VALUES(?,?,?,?,?,?)");
        st.bind(1, name).bind(2, settings.product).bind(3, settings.quantity).bind(4, "open").bind(5, stored.dump());
        st.bind(6, db::now_rfc3339());
        st.run();
        return std::vector<db::RowRef>{{"batches", c.last_insert_rowid()}};
      });
  return *find_batch(station, name);
}

Batch set_batch_state(Station& station, const std::string& name, const std::string& to, const std::string& actor) {
  const auto b = find_batch(station, name);
  if (!b) throw Error(Errc::not_found, fmt::format("no batch {}", name));
  const bool ok = (to == "paused" && b->state == "open") || (to == "open" && b->state == "paused") ||
                  (to == "closed" && b->state != "closed");
  if (!ok) throw Error(Errc::invalid_argument, fmt::format("batch {} is {}; it cannot become {}", name, b->state, to));
  const std::string action = to == "paused" ? "batch.paused" : to == "open" ? "batch.resumed" : "batch.closed";
  station.journal().commit({actor, action, "batch:" + name, {{"from", b->state}, {"to", to}}}, [&](db::Connection& c) {
    auto st = c.prepare("UPDATE batches SET state = ?, closed = ? WHERE id = ?");
    st.bind(1, to);
    if (to == "closed") st.bind(2, db::now_rfc3339()); else st.bind_null(2);
    st.bind(3, b->id);
    st.run();
    return std::vector<db::RowRef>{{"batches", b->id}};
  });
  return *find_batch(station, name);
}

namespace {

// Takes the counter `key` (starting at `first`) and advances it; returns the value and the row.
std::pair<std::int64_t, db::RowRef> take_counter(db::Connection& conn, const std::string& key, std::int64_t first) {
  std::int64_t next = first;
  {
    auto st = conn.prepare("SELECT next FROM serial_counters WHERE prefix = ?");
    st.bind(1, key);
    if (st.step()) next = std::max(first, st.int64(0));
  }
  auto up = conn.prepare(
      "INSERT INTO serial_counters(prefix, next) VALUES(?, ?) ON CONFLICT(prefix) DO UPDATE SET next = excluded.next "
      "RETURNING rowid");
  up.bind(1, key).bind(2, next + 1);
  up.step();
  return {next, db::RowRef{"serial_counters", up.int64(0)}};
}

}  // namespace

std::pair<std::string, db::RowRef> next_mac(db::Connection& conn, const Batch& batch) {
  const std::string& source = batch.settings.mac_source;
  if (source.rfind("pool:", 0) != 0)
    throw Error(Errc::invalid_argument, fmt::format("batch {} takes MACs from the device, not a pool", batch.name));
  db::require_above_highwater(conn);
  // pool:OUI:FIRST-LAST (validated when the batch opened). The counter is per OUI, so two
  // batches drawing from one OUI never hand out one address.
  const std::string oui = source.substr(5, 6);
  const auto first = std::stoll(source.substr(12, 6), nullptr, 16);
  const auto last = std::stoll(source.substr(19, 6), nullptr, 16);
  const auto [value, row] = take_counter(conn, "mac:" + oui, first);
  if (value > last)
    throw Error(Errc::constraint_violation,
                fmt::format("batch {}: the MAC pool {} is used up (next would be {}{:06x}); open the batch again with "
                            "a new range",
                            batch.name, source, oui, value));
  return {fmt::format("{}{:06x}", oui, value), row};
}

std::pair<std::string, db::RowRef> next_serial(db::Connection& conn, const Batch& batch) {
  db::require_above_highwater(conn);
  const auto stored = [&] {
    auto st = conn.prepare("SELECT settings FROM batches WHERE id = ?");
    st.bind(1, batch.id);
    if (!st.step()) throw Error(Errc::not_found, "batch " + batch.name + " is gone");
    return nlohmann::json::parse(st.text(0));
  }();
  SerialPattern p;
  p.prefix = stored.value("prefix", "");
  p.suffix = stored.value("suffix", "");
  p.width = stored.value("width", 0);
  // The counter is per rendered prefix (and suffix), shared by every batch that renders
  // the same text, so two batches never hand out one serial.
  const auto [next, row] = take_counter(conn, p.prefix + "{seq}" + p.suffix, 1);
  return {p.render(next), row};
}

CloseResult close_batch(Station& station, const std::string& name, const std::filesystem::path& manifest,
                        const std::string& actor) {
  auto b = find_batch(station, name);
  if (!b) throw Error(Errc::not_found, fmt::format("no batch {}", name));
  if (b->counts.in_flight > 0)
    throw Error(Errc::busy, fmt::format("batch {} still has {} devices in flight; let them finish or fail first", name,
                                        b->counts.in_flight));
  CloseResult result;
  result.missing = b->settings.quantity - b->counts.done;
  result.batch = set_batch_state(station, name, "closed", actor);
  station.journal().commit({actor, "batch.reconciled", "batch:" + name,
                            {{"quantity", b->settings.quantity}, {"done", b->counts.done}, {"failed", b->counts.failed},
                             {"voided", b->counts.voided}, {"missing", result.missing}}});
  station.journal().checkpoint();  // the manifest's last entry is covered by a signature
  const std::filesystem::path tmp = manifest.string() + ".part";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(Errc::io_error, "cannot write " + tmp.string());
    db::ExportFilter f;
    f.batch = name;
    db::write_bundle(station.records().connection(), station.audit_signer(), f, out,
                     {{"manifest", "batch"}, {"batch_name", name}, {"station_id", station.config().station_id},
                      {"product", b->settings.product}, {"quantity", b->settings.quantity}});
    out.flush();
    if (!out) throw Error(Errc::io_error, "cannot write " + tmp.string());
  }
  std::filesystem::rename(tmp, manifest);
  result.manifest = manifest;
  return result;
}

nlohmann::json to_json(const Batch& b) {
  return {{"name", b.name},
          {"state", b.state},
          {"product", b.settings.product},
          {"quantity", b.settings.quantity},
          {"serial_pattern", b.settings.serial_pattern},
          {"key_mode", b.settings.key_mode},
          {"curve", b.settings.curve},
          {"lock", b.settings.lock},
          {"mac_source", b.settings.mac_source},
          {"profile", b.settings.profile.empty() ? nlohmann::json(nullptr) : nlohmann::json(b.settings.profile)},
          {"label_template", b.settings.label_template},
          {"done", b.counts.done},
          {"failed", b.counts.failed},
          {"voided", b.counts.voided},
          {"in_flight", b.counts.in_flight},
          {"created", b.created},
          {"closed", b.closed ? nlohmann::json(*b.closed) : nlohmann::json(nullptr)}};
}

}  // namespace station::core

namespace station::core {

namespace {

// The marks an audit export carries, trusted only once the bundle verifies against a root
// this station's records hold and comes from this station.
db::HighWater bundle_marks(Station& station, const std::filesystem::path& file, const std::string& text) {
  std::string why = "this station's records hold no root certificate";
  bool trusted = false;
  for (const auto& ca : station.records().cas()) {
    if (ca.role != "root") continue;
    std::istringstream in(text);
    const auto report = db::verify_bundle(in, ca.der);
    if (report.ok) {
      trusted = true;
      break;
    }
    why = report.reason;
  }
  if (!trusted)
    throw Error(Errc::tampered, fmt::format("the audit bundle {} does not verify against this station's roots ({}); its "
                                            "marks cannot be trusted: give an intact export or the high-water file",
                                            file.string(), why));
  auto marks = db::highwater_of_bundle(text);
  if (marks.station_id != station.config().station_id)
    throw Error(Errc::invalid_argument,
                fmt::format("the audit bundle {} was exported by station {}, not by this one ({}): its counters are "
                            "another station's",
                            file.string(), marks.station_id, station.config().station_id));
  return marks;
}

}  // namespace

std::vector<std::string> resume_after_restore(Station& station, const std::string& actor,
                                              const std::optional<std::filesystem::path>& marks_file) {
  const auto db_file = station.config().resolve(station.config().database);
  const auto file = marks_file ? *marks_file : db::highwater_path(db_file);
  std::optional<db::HighWater> marks;
  bool from_bundle = false;
  if (marks_file && std::filesystem::is_regular_file(file)) {
    std::ifstream in(file, std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) throw Error(Errc::io_error, "cannot read " + file.string());
    if (db::is_bundle(text)) {
      marks = bundle_marks(station, file, text);
      from_bundle = true;
    }
  }
  if (!from_bundle) marks = db::read_highwater(file);
  if (!marks)
    throw Error(Errc::not_found, fmt::format("no high-water marks at {}; give the copy kept with your last audit export, "
                                             "or the export itself (station audit export), with --marks FILE",
                                             file.string()));
  std::vector<std::string> raised;
  nlohmann::json details = {{"marks_file", file.string()},
                            {"marks_from", from_bundle ? "audit bundle" : "high-water file"},
                            {"marks_seq", marks->seq},
                            {"marks_hash", marks->hash},
                            {"marks_time", marks->time},
                            {"raised", nlohmann::json::object()}};
  {
    const std::lock_guard lock(station.mutex());
    const auto now = db::read_counters(station.records().connection());
    for (const auto& [prefix, mark] : marks->counters) {
      const auto it = now.find(prefix);
      const std::int64_t have = it == now.end() ? 0 : it->second;
      if (have >= mark) continue;
      raised.push_back(fmt::format("{}: {} -> {}", prefix, have, mark));
      details["raised"][prefix] = {have, mark};
    }
  }
  if (raised.empty()) return raised;
  station.journal().commit({actor, "db.resumed_after_restore", "database", details}, [&](db::Connection& conn) {
    std::vector<db::RowRef> rows;
    for (const auto& [prefix, mark] : marks->counters) {
      auto up = conn.prepare(
          "INSERT INTO serial_counters(prefix, next) VALUES(?, ?) ON CONFLICT(prefix) DO UPDATE SET "
          "next = max(next, excluded.next) RETURNING rowid");
      up.bind(1, prefix).bind(2, mark);
      up.step();
      rows.push_back({"serial_counters", up.int64(0)});
    }
    return rows;
  });
  return raised;
}

}  // namespace station::core
