// station shared push|verify|query: the records of many stations in one PostgreSQL database
// (db/shared.hpp, docs/records.md "Shared records").
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/cli.hpp"
#include "core/config.hpp"
#include "core/shared_push.hpp"
#include "core/station.hpp"
#include "db/shared.hpp"
#include "pki/x509.hpp"

namespace station::cli {
namespace {

namespace fs = std::filesystem;

struct Target {
  std::optional<fs::path> data;
  std::optional<fs::path> config;
  std::optional<std::string> url;  // overrides [shared] url
  bool json = false;
};

void add_target(CLI::App* cmd, Target& t) {
  cmd->add_option("--data", t.data, "Station data folder (its [shared] url)");
  cmd->add_option("--config", t.config, "Config file (default: DIR/station.conf)");
  cmd->add_option("--url", t.url,
                  "The shared database instead of [shared] url: file:PATH or env:VAR holding a libpq connection "
                  "string (or the string itself when it holds no password)");
  cmd->add_flag("--json", t.json, "Machine-readable output");
}

SecretString target_conninfo(const Target& t) {
  if (t.url) {
    if (core::conninfo_holds_password(*t.url))
      throw Error(Errc::invalid_argument,
                  "--url holds a password, which would show in the process list: give it as file:PATH or env:VAR");
    return core::conninfo_of(*t.url, fs::current_path(), "--url");
  }
  if (!t.data && !t.config)
    throw Error(Errc::invalid_argument, "name the shared database: --data DIR (its [shared] url) or --url file:PATH|env:VAR");
  return core::shared_conninfo(core::load_station_config(t.data.value_or(fs::path()), t.config));
}

struct PushOptions {
  Target target;
  std::int64_t segment = 20000;
};

void push(const PushOptions& o) {
  if (!o.target.data && !o.target.config)
    throw Error(Errc::invalid_argument, "station shared push pushes a station's journal: give --data DIR");
  core::Station station(o.target.data.value_or(fs::path()), o.target.config);
  const auto conninfo = target_conninfo(o.target);
  const auto started = std::chrono::steady_clock::now();
  const auto r = db::shared::push(station.records().connection(), station.audit_signer(), station.config().station_id,
                                  conninfo, o.segment, [&](const db::shared::PushReport& p) {
                                    if (std::chrono::steady_clock::now() - started > std::chrono::seconds(2))
                                      std::cerr << fmt::format("station: pushed entries {} to {} ({} segments)\n",
                                                               p.first_seq, p.last_seq, p.segments);
                                  });
  if (o.target.json) {
    std::cout << nlohmann::json{{"station_id", r.station_id}, {"shared_last_seq", r.shared_last_seq},
                                {"first_seq", r.entries > 0 ? nlohmann::json(r.first_seq) : nlohmann::json(nullptr)},
                                {"last_seq", r.entries > 0 ? nlohmann::json(r.last_seq) : nlohmann::json(nullptr)},
                                {"entries", r.entries}, {"records", r.records}, {"segments", r.segments}}
                     .dump()
              << "\n";
  } else if (r.entries == 0) {
    std::cout << fmt::format("station {}: the shared records are up to date (entry {})\n", r.station_id,
                             r.shared_last_seq);
  } else {
    std::cout << fmt::format("station {}: pushed entries {} to {} ({} entries, {} records, {} segments)\n",
                             r.station_id, r.first_seq, r.last_seq, r.entries, r.records, r.segments);
  }
}

struct VerifyOptions {
  Target target;
  std::optional<std::string> station;
  fs::path trust;
};

int verify(const VerifyOptions& o) {
  std::ifstream in(o.trust, std::ios::binary);
  if (!in) throw Error(Errc::not_found, "cannot read the trusted root " + o.trust.string());
  std::ostringstream text;
  text << in.rdbuf();
  const auto roots = pki::certificates_from_pem(text.str());
  if (roots.size() != 1)
    throw Error(Errc::invalid_argument, o.trust.string() + " must hold exactly one root certificate");
  std::vector<db::shared::StationVerifyReport> reports;
  try {
    reports = db::shared::verify(target_conninfo(o.target), o.station, roots.front());
  } catch (const Error& e) {
    if (e.code() == Errc::config_error || e.code() == Errc::invalid_argument) throw;
    std::cerr << "station: " << e.what() << "\n";
    return 2;
  }
  bool ok = true;
  nlohmann::json all = nlohmann::json::array();
  for (const auto& r : reports) {
    ok = ok && r.ok;
    all.push_back({{"station_id", r.station_id}, {"ok", r.ok}, {"segments", r.segments}, {"entries", r.entries},
                   {"last_seq", r.last_seq}, {"unsigned_tail", r.unsigned_tail},
                   {"first_bad_seq", r.first_bad_seq ? nlohmann::json(*r.first_bad_seq) : nlohmann::json(nullptr)},
                   {"reason", r.ok ? nlohmann::json(nullptr) : nlohmann::json(r.reason)}});
    if (!o.target.json) {
      if (r.ok)
        std::cout << fmt::format("station {}: ok, {} entries in {} segments, last {}{}\n", r.station_id, r.entries,
                                 r.segments, r.last_seq,
                                 r.unsigned_tail > 0 ? fmt::format(" ({} after the last checkpoint)", r.unsigned_tail)
                                                     : std::string());
      else
        std::cout << fmt::format("station {}: TAMPERED{}: {}\n", r.station_id,
                                 r.first_bad_seq ? fmt::format(" at entry {}", *r.first_bad_seq) : std::string(),
                                 r.reason);
    }
  }
  if (o.target.json) std::cout << nlohmann::json{{"ok", ok}, {"stations", all}}.dump() << "\n";
  return ok ? 0 : 1;
}

struct QueryOptions {
  Target target;
  db::shared::SharedQuery q;
};

void query(const QueryOptions& o) {
  const auto rows = db::shared::query(target_conninfo(o.target), o.q);
  if (o.target.json) {
    std::cout << nlohmann::json(rows).dump() << "\n";
    return;
  }
  if (rows.empty()) std::cout << "no identity matches\n";
  auto s = [](const nlohmann::json& v) { return v.is_null() ? std::string("-") : v.get<std::string>(); };
  for (const auto& r : rows)
    std::cout << fmt::format("{}  {}  mac {}  {}  cert {} ({})  pkhash {}\n", s(r["station_id"]), s(r["serial"]),
                             s(r["mac"]), s(r["state"]), s(r["cert_serial"]), s(r["status"]), s(r["pkhash"]));
}

}  // namespace

void register_shared(CLI::App& app, Context& ctx) {
  auto* shared = app.add_subcommand("shared", "Records of many stations in one PostgreSQL database: push, verify, query");
  shared->require_subcommand(1);

  auto p = std::make_shared<PushOptions>();
  auto* push_cmd = shared->add_subcommand(
      "push", "Push this station's journal entries not yet in the shared records, as signed segments");
  add_target(push_cmd, p->target);
  push_cmd->add_option("--segment", p->segment, "Entries per segment (default 20000)")->check(CLI::Range(1, 1000000));
  push_cmd->callback([p] { push(*p); });

  auto v = std::make_shared<VerifyOptions>();
  auto* verify_cmd = shared->add_subcommand(
      "verify", "Verify the shared records: each station's signed segments, their chain, and the tables against them; "
                "exit 0 intact, 1 tampered, 2 unreadable");
  add_target(verify_cmd, v->target);
  verify_cmd->add_option("--station", v->station, "Only this station");
  verify_cmd->add_option("--trust", v->trust, "Trusted root certificate (PEM)")->required();
  verify_cmd->callback([v, &ctx] { ctx.exit_code = verify(*v); });

  auto q = std::make_shared<QueryOptions>();
  auto* query_cmd = shared->add_subcommand("query", "Identities across stations by serial, MAC, DPP key hash, "
                                                    "certificate serial or station");
  add_target(query_cmd, q->target);
  query_cmd->add_option("--serial", q->q.serial, "Device serial");
  query_cmd->add_option("--mac", q->q.mac, "MAC, 12 lowercase hex digits");
  query_cmd->add_option("--pkhash", q->q.pkhash, "DPP key hash (SHA-256 hex)");
  query_cmd->add_option("--cert-serial", q->q.cert_serial, "Certificate serial (lowercase hex)");
  query_cmd->add_option("--station", q->q.station_id, "Station id");
  query_cmd->callback([q] { query(*q); });
}

}  // namespace station::cli
