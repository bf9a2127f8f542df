// station audit verify|checkpoint|query|show|export, station db backup
#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/cli.hpp"
#include "core/batches.hpp"
#include "core/station.hpp"
#include "db/audit.hpp"
#include "pki/x509.hpp"

namespace station::cli {
namespace {

namespace fs = std::filesystem;

struct Common {
  fs::path data;
  std::optional<fs::path> config;
};

void add_common(CLI::App* cmd, Common& c) {
  cmd->add_option("--data", c.data, "Station data folder");
  cmd->add_option("--config", c.config, "Config file (default: DIR/station.conf)");
}

fs::path database_path(const Common& c) {
  const auto config = core::load_station_config(c.data, c.config);
  const auto path = config.resolve(config.database);
  if (!fs::exists(path)) throw Error(Errc::not_found, "no station database at " + path.string());
  return path;
}

nlohmann::json report_json(const db::VerifyReport& r) {
  return {{"ok", r.ok},
          {"entries", r.entries},
          {"checkpoints", r.checkpoints},
          {"unsigned_tail", r.unsigned_tail},
          {"first_bad_seq", r.first_bad_seq ? nlohmann::json(*r.first_bad_seq) : nlohmann::json(nullptr)},
          {"reason", r.ok ? nlohmann::json(nullptr) : nlohmann::json(r.reason)}};
}

void print_report(const db::VerifyReport& r, bool json) {
  if (json) {
    std::cout << report_json(r).dump() << "\n";
    return;
  }
  if (r.ok) {
    std::cout << "journal intact: " << r.entries << " entries, " << r.checkpoints << " signed checkpoints, "
              << r.unsigned_tail << " entries after the last checkpoint (not yet signed)\n";
  } else {
    std::cout << "journal TAMPERED"
              << (r.first_bad_seq ? " at entry " + std::to_string(*r.first_bad_seq) : std::string()) << ": "
              << r.reason << "\n";
  }
}

struct VerifyOptions {
  Common common;
  bool json = false;
  std::optional<std::string> expect;
  std::optional<fs::path> bundle;
  std::optional<fs::path> trust;
};

// Exit status: 0 intact, 1 tampered, 2 unreadable.
int verify(const VerifyOptions& o) {
  try {
    db::VerifyReport report;
    if (o.bundle) {
      if (!o.trust) throw Error(Errc::invalid_argument, "--bundle needs --trust ROOT.pem (the root you trust)");
      std::ifstream trust(*o.trust);
      if (!trust) throw Error(Errc::not_found, "cannot read " + o.trust->string());
      const std::string pem((std::istreambuf_iterator<char>(trust)), std::istreambuf_iterator<char>());
      const auto roots = pki::certificates_from_pem(pem);
      std::ifstream in(*o.bundle, std::ios::binary);
      if (!in) throw Error(Errc::not_found, "cannot read bundle " + o.bundle->string());
      report = db::verify_bundle(in, roots.front());
    } else {
      std::optional<db::Expectation> expect;
      if (o.expect) {
        const auto colon = o.expect->find(':');
        if (colon == std::string::npos) throw Error(Errc::invalid_argument, "--expect takes SEQ:HASH");
        try {
          expect = db::Expectation{std::stoll(o.expect->substr(0, colon)), o.expect->substr(colon + 1)};
        } catch (const std::exception&) {
          throw Error(Errc::invalid_argument, "--expect takes SEQ:HASH, e.g. 120:3f1c...");
        }
      }
      db::Records records(database_path(o.common), true);
      // A long verification (a year of a line is millions of entries) says how far it is on
      // stderr every few seconds; a short one stays quiet, and stdout keeps its shape.
      const auto started = std::chrono::steady_clock::now();
      auto last = started;
      const auto progress = [&](std::string_view phase, std::int64_t done, std::int64_t total) {
        const auto now = std::chrono::steady_clock::now();
        if (now - last < std::chrono::seconds(2) && !(done == total && now - started >= std::chrono::seconds(2)))
          return;
        last = now;
        std::cerr << "station: audit verify: " << phase << " " << done << " of " << total
                  << (total > 0 ? fmt::format(" ({}%)", done * 100 / total) : std::string()) << "\n";
      };
      report = db::verify_journal(records.connection(), expect, progress);
    }
    print_report(report, o.json);
    return report.ok ? 0 : 1;
  } catch (const Error& e) {
    std::cerr << "station: cannot verify: " << e.what() << "\n";
    return 2;
  }
}

struct QueryOptions {
  Common common;
  db::QueryFilter filter;
  bool json = false, csv = false;
};

std::string csv_field(const nlohmann::json& v) {
  if (v.is_null()) return "";
  const std::string s = v.is_string() ? v.get<std::string>() : v.dump();
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (const char ch : s) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return out + "\"";
}

std::string normalize_mac(std::string mac) {
  std::string out;
  for (const char ch : mac)
    if (ch != ':' && ch != '-' && ch != '.') out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(ch))));
  return out;
}

void query(QueryOptions o) {
  if (o.filter.mac) o.filter.mac = normalize_mac(*o.filter.mac);
  db::Records records(database_path(o.common), true);
  const auto rows = db::query_identities(records.connection(), o.filter);
  if (o.json) {
    auto out = nlohmann::json::array();
    for (const auto& r : rows) out.push_back(db::to_json(r));
    std::cout << out.dump(2) << "\n";
    return;
  }
  if (o.csv) {
    for (std::size_t k = 0; k < db::kIdentityColumns.size(); ++k) std::cout << (k ? "," : "") << db::kIdentityColumns[k];
    std::cout << "\n";
    for (const auto& r : rows) {
      const auto j = db::to_json(r);
      for (std::size_t k = 0; k < db::kIdentityColumns.size(); ++k)
        std::cout << (k ? "," : "") << csv_field(j.at(db::kIdentityColumns[k]));
      std::cout << "\n";
    }
    return;
  }
  for (const auto& r : rows)
    std::cout << r.serial << "  " << r.state << "/" << r.identity_status << "  cert " << r.cert_serial << "  pkhash "
              << r.pkhash << "  " << r.created << "  by " << r.op << "\n";
  std::cout << rows.size() << " identities\n";
}

struct ShowOptions {
  Common common;
  std::string serial;
};

void show(const ShowOptions& o) {
  db::Records records(database_path(o.common), true);
  const auto device = records.device_by_serial(o.serial);
  if (!device) throw Error(Errc::not_found, "no device with serial " + o.serial);
  std::cout << "device " << device->serial << "  state " << device->state << "  chip "
            << device->chip_id.value_or("-") << "  mac " << device->mac.value_or("-") << "\n";
  for (const auto& i : records.identities_of(device->id))
    std::cout << "  identity: cert " << i.cert_serial << " (" << i.status << ") issuer " << i.issuer_key_id
              << " key " << i.key_mode << " pkhash " << i.pkhash << "\n";
  for (const auto& e : db::journal_entries_for(records.connection(), "device:" + o.serial,
                                               device->chip_id ? "chip:" + *device->chip_id : std::string()))
    std::cout << "  #" << e.seq << " " << e.time << " " << e.action << " by " << e.actor << " on " << e.station_id
              << " " << e.details << "\n";
}

struct ExportOptions {
  Common common;
  fs::path out;
  db::ExportFilter filter;
};

void export_bundle(const ExportOptions& o) {
  core::Station station(o.common.data, o.common.config);
  const fs::path tmp = o.out.string() + ".part";
  std::int64_t n = 0;
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(Errc::io_error, "cannot write " + tmp.string());
    n = db::write_bundle(station.records().connection(), station.audit_signer(), o.filter, out,
                         {{"station_id", station.config().station_id}});
    out.flush();
    if (!out) throw Error(Errc::io_error, "cannot write " + tmp.string());
  }
  fs::rename(tmp, o.out);
  std::cout << "exported " << n << " journal entries to " << o.out.string() << "\n";
}

}  // namespace

void register_audit(CLI::App& app, Context& ctx) {
  auto* audit = app.add_subcommand("audit", "The audit journal and records: verify, checkpoint, query, show, export");
  audit->require_subcommand(1);

  auto v = std::make_shared<VerifyOptions>();
  auto* verify_cmd = audit->add_subcommand(
      "verify", "Recompute the journal's hash chain, check checkpoint signatures and record rows; exit 0 intact, "
                "1 tampered, 2 unreadable");
  add_common(verify_cmd, v->common);
  verify_cmd->add_flag("--json", v->json, "Print {ok, entries, checkpoints, unsigned_tail, first_bad_seq, reason}");
  verify_cmd->add_option("--expect", v->expect, "SEQ:HASH from an earlier export or checkpoint (detects truncation)");
  verify_cmd->add_option("--bundle", v->bundle, "Verify an exported bundle instead of the database");
  verify_cmd->add_option("--trust", v->trust, "Trusted root certificate (PEM) for --bundle");
  verify_cmd->callback([v, &ctx] { ctx.exit_code = verify(*v); });

  auto cp = std::make_shared<Common>();
  auto* cp_cmd = audit->add_subcommand("checkpoint", "Sign a checkpoint over the journal now with the HSM audit key");
  add_common(cp_cmd, *cp);
  cp_cmd->callback([cp] {
    core::Station station(cp->data, cp->config);
    const auto c = station.journal().checkpoint();
    std::cout << "checkpoint " << c.seq << ":" << c.hash << " signed at " << c.time << "\n";
  });

  auto q = std::make_shared<QueryOptions>();
  auto* query_cmd = audit->add_subcommand("query", "Identities matching all the given filters");
  add_common(query_cmd, q->common);
  query_cmd->add_option("--serial", q->filter.serial, "Device serial");
  query_cmd->add_option("--mac", q->filter.mac, "MAC (any separators)");
  query_cmd->add_option("--chip-id", q->filter.chip_id, "Chip id");
  query_cmd->add_option("--pkhash", q->filter.pkhash, "DPP bootstrapping key hash");
  query_cmd->add_option("--cert-serial", q->filter.cert_serial, "Certificate serial (lowercase hex)");
  query_cmd->add_option("--batch", q->filter.batch, "Batch (work order)");
  query_cmd->add_option("--operator", q->filter.op, "Operator who provisioned");
  query_cmd->add_option("--fixture", q->filter.fixture, "Fixture");
  query_cmd->add_option("--ca", q->filter.ca, "Issuer key_id");
  query_cmd->add_option("--state", q->filter.state, "Device state");
  query_cmd->add_option("--since", q->filter.since, "Created at or after (RFC 3339)");
  query_cmd->add_option("--until", q->filter.until, "Created at or before (RFC 3339)");
  auto* json = query_cmd->add_flag("--json", q->json, "JSON array");
  query_cmd->add_flag("--csv", q->csv, "CSV with a header row")->excludes(json);
  query_cmd->callback([q] { query(*q); });

  auto s = std::make_shared<ShowOptions>();
  auto* show_cmd = audit->add_subcommand("show", "A device's whole story from the journal");
  add_common(show_cmd, s->common);
  show_cmd->add_option("SERIAL", s->serial, "Device serial")->required();
  show_cmd->callback([s] { show(*s); });

  auto e = std::make_shared<ExportOptions>();
  auto* export_cmd = audit->add_subcommand("export", "Write a self-contained, signed bundle for offline verification");
  add_common(export_cmd, e->common);
  export_cmd->add_option("--out", e->out, "Bundle file (JSON lines)")->required();
  export_cmd->add_option("--since", e->filter.since, "Entries at or after (RFC 3339)");
  export_cmd->add_option("--until", e->filter.until, "Entries at or before (RFC 3339)");
  export_cmd->add_option("--batch", e->filter.batch, "Only this batch's entries (and the run that chains them)");
  export_cmd->callback([e] { export_bundle(*e); });
}

void register_db(CLI::App& app, Context& /*ctx*/) {
  auto* dbcmd = app.add_subcommand("db", "The station database: backup, resume-after-restore");
  dbcmd->require_subcommand(1);
  struct BackupOptions {
    Common common;
    fs::path out;
  };
  auto b = std::make_shared<BackupOptions>();
  auto* backup = dbcmd->add_subcommand("backup", "Consistent copy of the database (VACUUM INTO) while the station runs");
  add_common(backup, b->common);
  backup->add_option("--out", b->out, "Backup file (must not exist)")->required();
  backup->callback([b] {
    if (fs::exists(b->out)) throw Error(Errc::already_exists, b->out.string() + " exists; choose a new file");
    db::Records records(database_path(b->common), true);
    auto st = records.connection().prepare("VACUUM INTO ?");
    st.bind(1, b->out.string());
    st.run();
    std::cout << "backup written to " << b->out.string() << "\n";
  });

  struct ResumeOptions {
    Common common;
    std::optional<fs::path> marks;
    std::optional<fs::path> token_file;
  };
  auto r = std::make_shared<ResumeOptions>();
  auto* resume = dbcmd->add_subcommand(
      "resume-after-restore", "After restoring an older backup: raise serial/MAC counters above the last checkpoint's "
                              "high-water marks (journaled), so no number is handed out twice");
  add_common(resume, r->common);
  resume->add_option("--marks", r->marks,
                     "High-water file, or an audit export (station audit export) made after the backup, which "
                     "carries the counters (default: the file beside the database)");
  resume->add_option("--token-file", r->token_file, "A security officer's token (or STATION_TOKEN)");
  resume->callback([r] {
    core::Station station(r->common.data, r->common.config);
    const auto actor = acting_user(station, r->token_file, {"officer"}, "db.resume_after_restore");
    const auto raised = core::resume_after_restore(station, actor, r->marks);
    if (raised.empty()) {
      std::cout << "counters are at or above the high-water marks; nothing to raise\n";
      return;
    }
    for (const auto& line : raised) std::cout << "raised " << line << "\n";
    std::cout << "allocation may go on: no serial or MAC below the marks will be handed out again\n";
  });
}

}  // namespace station::cli
