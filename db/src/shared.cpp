#include "db/shared.hpp"

#include <libpq-fe.h>

#include <map>
#include <sstream>

#include <fmt/format.h>

#include "common/error.hpp"
#include "db/audit.hpp"

namespace station::db::shared {
namespace {

// ---------------------------------------------------------------------------------------
// libpq, narrowly

class Result {
 public:
  explicit Result(PGresult* r) : r_(r) {}
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;
  Result(Result&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
  ~Result() {
    if (r_ != nullptr) ::PQclear(r_);
  }
  int rows() const { return ::PQntuples(r_); }
  bool null(int row, int col) const { return ::PQgetisnull(r_, row, col) != 0; }
  std::string text(int row, int col) const { return ::PQgetvalue(r_, row, col); }
  std::int64_t int64(int row, int col) const { return std::stoll(text(row, col)); }

 private:
  PGresult* r_;
};

using Params = std::vector<std::optional<std::string>>;

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

class Pg {
 public:
  explicit Pg(const SecretString& conninfo) : c_(::PQconnectdb(conninfo.str().c_str())) {
    if (c_ == nullptr) throw Error(Errc::io_error, "shared records: out of memory while connecting");
    if (::PQstatus(c_) != CONNECTION_OK) {
      const std::string why = trimmed(::PQerrorMessage(c_));
      ::PQfinish(c_);
      throw Error(Errc::io_error, fmt::format("cannot reach the shared records database: {} (check [shared] url and "
                                              "that the server is up)",
                                              why));
    }
    ::PQsetNoticeProcessor(c_, [](void*, const char*) {}, nullptr);  // "already exists, skipping"
  }
  Pg(const Pg&) = delete;
  Pg& operator=(const Pg&) = delete;
  ~Pg() { ::PQfinish(c_); }

  Result exec(const std::string& sql, const Params& params = {}) {
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
    PGresult* raw = ::PQexecParams(c_, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                                   nullptr, 0);
    const auto status = raw == nullptr ? PGRES_FATAL_ERROR : ::PQresultStatus(raw);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      const std::string why = trimmed(raw != nullptr ? ::PQresultErrorMessage(raw) : ::PQerrorMessage(c_));
      if (raw != nullptr) ::PQclear(raw);
      throw Error(Errc::io_error, fmt::format("shared records: {}", why));
    }
    return Result(raw);
  }

  // Rows inserted many per statement (one round trip per `per` rows).
  void insert(const std::string& head, std::size_t columns, const std::vector<Params>& rows,
              const std::string& tail = {}) {
    constexpr std::size_t per = 400;
    for (std::size_t at = 0; at < rows.size(); at += per) {
      std::string sql = head + " VALUES ";
      Params params;
      const std::size_t end = std::min(rows.size(), at + per);
      for (std::size_t r = at; r < end; ++r) {
        sql += r == at ? "(" : ",(";
        for (std::size_t k = 0; k < columns; ++k) {
          params.push_back(rows[r][k]);
          sql += fmt::format("{}${}", k == 0 ? "" : ",", params.size());
        }
        sql += ")";
      }
      exec(sql + " " + tail, params);
    }
  }

  // One transaction; rolled back unless commit() is called.
  class Transaction {
   public:
    explicit Transaction(Pg& pg) : pg_(pg) { pg_.exec("BEGIN"); }
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    ~Transaction() {
      if (!done_) ::PQclear(::PQexec(pg_.c_, "ROLLBACK"));
    }
    void commit() {
      pg_.exec("COMMIT");
      done_ = true;
    }

   private:
    Pg& pg_;
    bool done_ = false;
  };

 private:
  PGconn* c_;
};

// The tables, created when missing, under a lock so two stations starting at once do not race.
void ensure_schema(Pg& pg) {
  Pg::Transaction t(pg);
  pg.exec("SELECT pg_advisory_xact_lock(7351208813)");
  pg.exec(R"(CREATE TABLE IF NOT EXISTS shared_stations (
      station_id text PRIMARY KEY,
      last_seq bigint NOT NULL DEFAULT 0,
      last_hash text NOT NULL DEFAULT '',
      pushed timestamptz))");
  pg.exec(R"(CREATE TABLE IF NOT EXISTS shared_segments (
      station_id text NOT NULL REFERENCES shared_stations(station_id),
      first_seq bigint NOT NULL,
      last_seq bigint NOT NULL,
      prev_hash text NOT NULL,
      last_hash text NOT NULL,
      pushed timestamptz NOT NULL DEFAULT now(),
      bundle text NOT NULL,
      PRIMARY KEY (station_id, first_seq)))");
  pg.exec(R"(CREATE TABLE IF NOT EXISTS shared_entries (
      station_id text NOT NULL,
      seq bigint NOT NULL,
      time text NOT NULL,
      actor text NOT NULL,
      action text NOT NULL,
      subject text NOT NULL,
      details text NOT NULL,
      hash text NOT NULL,
      PRIMARY KEY (station_id, seq)))");
  pg.exec("CREATE INDEX IF NOT EXISTS shared_entries_subject ON shared_entries(subject)");
  pg.exec(R"(CREATE TABLE IF NOT EXISTS shared_records (
      station_id text NOT NULL,
      tbl text NOT NULL,
      row_id bigint NOT NULL,
      seq bigint NOT NULL,
      cols jsonb NOT NULL,
      PRIMARY KEY (station_id, tbl, row_id)))");
  pg.exec("CREATE INDEX IF NOT EXISTS shared_devices_serial ON shared_records ((cols->>'serial')) "
          "WHERE tbl = 'devices'");
  pg.exec("CREATE INDEX IF NOT EXISTS shared_devices_mac ON shared_records ((cols->>'mac')) WHERE tbl = 'devices'");
  pg.exec("CREATE INDEX IF NOT EXISTS shared_identities_pkhash ON shared_records ((cols->>'pkhash')) "
          "WHERE tbl = 'identities'");
  pg.exec("CREATE INDEX IF NOT EXISTS shared_identities_cert ON shared_records ((cols->>'cert_serial')) "
          "WHERE tbl = 'identities'");
  pg.exec("CREATE INDEX IF NOT EXISTS shared_identities_device ON shared_records "
          "(station_id, ((cols->>'device_id')::bigint)) WHERE tbl = 'identities'");
  t.commit();
}

std::string str_of(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// A record line's columns ([[name, value], ...]) as one object.
nlohmann::json columns_object(const nlohmann::json& cols) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& c : cols) out[c.at(0).get<std::string>()] = c.at(1);
  return out;
}

// A read snapshot of the local database (a deferred transaction, never holding the write
// lock): a segment's entries and the rows they vouch for come from one moment, even while the
// line commits.
class Snapshot {
 public:
  explicit Snapshot(Connection& c) : c_(c) { c_.exec("BEGIN"); }
  Snapshot(const Snapshot&) = delete;
  Snapshot& operator=(const Snapshot&) = delete;
  ~Snapshot() {
    try {
      c_.exec("ROLLBACK");
    } catch (const Error&) {
    }
  }

 private:
  Connection& c_;
};

std::optional<std::string> local_hash_at(Connection& local, std::int64_t seq) {
  auto st = local.prepare("SELECT hash FROM journal WHERE seq = ?");
  st.bind(1, seq);
  if (!st.step()) return std::nullopt;
  return st.text(0);
}

std::int64_t local_last_seq(Connection& local) {
  auto st = local.prepare("SELECT coalesce(max(seq), 0) FROM journal");
  st.step();
  return st.int64(0);
}

}  // namespace

PushReport push(Connection& local, CheckpointSigner& signer, const std::string& station_id,
                const SecretString& conninfo, std::int64_t segment_entries,
                const std::function<void(const PushReport&)>& progress) {
  if (station_id.empty()) throw Error(Errc::config_error, "the station has no station_id to push its records under");
  if (segment_entries < 1) throw Error(Errc::invalid_argument, "a segment holds at least one entry");
  Pg pg(conninfo);
  ensure_schema(pg);
  PushReport report;
  report.station_id = station_id;
  for (bool first_round = true;; first_round = false) {
    Pg::Transaction t(pg);
    pg.exec("INSERT INTO shared_stations(station_id) VALUES($1) ON CONFLICT DO NOTHING", {station_id});
    const auto held = pg.exec("SELECT last_seq, last_hash FROM shared_stations WHERE station_id = $1 FOR UPDATE",
                              {station_id});
    const std::int64_t shared_last = held.int64(0, 0);
    const std::string shared_hash = held.text(0, 1);
    if (first_round) report.shared_last_seq = shared_last;
    const Snapshot snapshot(local);
    const std::int64_t here_last = local_last_seq(local);
    if (shared_last > here_last)
      throw Error(Errc::constraint_violation,
                  fmt::format("the shared records hold {} journal entries of station {} and this database only {}: "
                              "it is older than what was pushed (restored from a backup?); push from the station's "
                              "current database",
                              shared_last, station_id, here_last));
    if (shared_last > 0) {
      const auto here_hash = local_hash_at(local, shared_last);
      if (!here_hash || *here_hash != shared_hash)
        throw Error(Errc::constraint_violation,
                    fmt::format("the shared records hold a different history of station {} at entry {} (shared {}, "
                                "here {}): this database is not the one that pushed them (another station with the "
                                "same station_id, or a restored backup that went on differently); nothing was pushed",
                                station_id, shared_last, shared_hash.substr(0, 16),
                                here_hash ? here_hash->substr(0, 16) : std::string("none")));
    }
    if (shared_last == here_last) break;

    ExportFilter f;
    f.from_seq = shared_last + 1;
    f.to_seq = std::min(here_last, shared_last + segment_entries);
    std::ostringstream bundle;
    write_bundle(local, signer, f, bundle, {{"station_id", station_id}, {"segment", true}});
    const std::string text = bundle.str();

    std::vector<Params> entries;
    std::vector<Params> records;
    std::map<std::pair<std::string, std::int64_t>, std::int64_t> named;  // row -> latest entry naming it
    std::vector<std::pair<std::string, std::int64_t>> deleted;
    std::int64_t first = 0, last = 0;
    std::string prev_hash, last_hash;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      if (line.empty()) continue;
      const auto j = nlohmann::json::parse(line);
      const std::string type = str_of(j, "type");
      if (type == "entry") {
        const auto seq = j.at("seq").get<std::int64_t>();
        if (first == 0) {
          first = seq;
          prev_hash = str_of(j, "prev_hash");
        }
        last = seq;
        last_hash = str_of(j, "hash");
        entries.push_back({station_id, std::to_string(seq), str_of(j, "time"), str_of(j, "actor"), str_of(j, "action"),
                           str_of(j, "subject"), str_of(j, "details"), last_hash});
        for (const auto& r : j.at("rows")) {
          const auto key = std::make_pair(r.at("tbl").get<std::string>(), r.at("row_id").get<std::int64_t>());
          named[key] = seq;
          if (str_of(r, "row_hash") == "deleted") deleted.push_back(key);
        }
      } else if (type == "record") {
        const auto key = std::make_pair(j.at("tbl").get<std::string>(), j.at("row_id").get<std::int64_t>());
        records.push_back({station_id, key.first, std::to_string(key.second), std::to_string(named[key]),
                           columns_object(j.at("columns")).dump()});
      }
    }
    if (first != shared_last + 1 || (shared_last > 0 && prev_hash != shared_hash))
      throw Error(Errc::internal, fmt::format("shared records: the segment from entry {} does not follow entry {}",
                                              first, shared_last));
    pg.insert("INSERT INTO shared_entries(station_id, seq, time, actor, action, subject, details, hash)", 8, entries);
    for (const auto& [tbl, id] : deleted)
      pg.exec("DELETE FROM shared_records WHERE station_id = $1 AND tbl = $2 AND row_id = $3",
              {station_id, tbl, std::to_string(id)});
    pg.insert("INSERT INTO shared_records(station_id, tbl, row_id, seq, cols)", 5, records,
              "ON CONFLICT (station_id, tbl, row_id) DO UPDATE SET seq = excluded.seq, cols = excluded.cols");
    pg.exec("INSERT INTO shared_segments(station_id, first_seq, last_seq, prev_hash, last_hash, bundle) "
            "VALUES($1, $2, $3, $4, $5, $6)",
            {station_id, std::to_string(first), std::to_string(last), prev_hash, last_hash, text});
    pg.exec("UPDATE shared_stations SET last_seq = $2, last_hash = $3, pushed = now() WHERE station_id = $1",
            {station_id, std::to_string(last), last_hash});
    t.commit();
    if (report.first_seq == 0) report.first_seq = first;
    report.last_seq = last;
    report.entries += static_cast<std::int64_t>(entries.size());
    report.records += static_cast<std::int64_t>(records.size());
    ++report.segments;
    if (progress) progress(report);
  }
  return report;
}

std::vector<StationVerifyReport> verify(const SecretString& conninfo, const std::optional<std::string>& station_id,
                                        ByteView trusted_root_der) {
  Pg pg(conninfo);
  ensure_schema(pg);
  std::vector<std::string> stations;
  {
    const auto r = station_id ? pg.exec("SELECT station_id FROM shared_stations WHERE station_id = $1", {*station_id})
                              : pg.exec("SELECT station_id FROM shared_stations ORDER BY station_id");
    for (int k = 0; k < r.rows(); ++k) stations.push_back(r.text(k, 0));
  }
  if (stations.empty())
    throw Error(Errc::not_found, station_id ? "the shared records hold nothing of station " + *station_id
                                            : std::string("the shared records hold no station's journal yet"));
  std::vector<StationVerifyReport> out;
  for (const auto& id : stations) {
    StationVerifyReport rep;
    rep.station_id = id;
    auto fail = [&](std::optional<std::int64_t> seq, std::string why) {
      if (!rep.ok) return;
      rep.ok = false;
      rep.first_bad_seq = seq;
      rep.reason = std::move(why);
    };
    std::map<std::int64_t, std::pair<std::string, std::string>> entry_of;  // seq -> (hash, details)
    std::map<std::pair<std::string, std::int64_t>, nlohmann::json> latest;  // row -> vouched columns
    std::int64_t expect_first = 1;
    std::int64_t last_checkpoint = 0;  // across segments: a segment without one is covered by an earlier one
    std::string expect_prev(64, '0');
    const auto segs = pg.exec(
        "SELECT first_seq, last_seq, prev_hash, last_hash, bundle FROM shared_segments WHERE station_id = $1 "
        "ORDER BY first_seq",
        {id});
    for (int k = 0; k < segs.rows(); ++k) {
      ++rep.segments;
      const std::int64_t first = segs.int64(k, 0);
      const std::string bundle = segs.text(k, 4);
      if (first != expect_first) {
        fail(expect_first, first > expect_first
                               ? fmt::format("entries {} to {} are missing from the shared records", expect_first, first - 1)
                               : fmt::format("the segment from entry {} overlaps the one before it", first));
      }
      std::istringstream in(bundle);
      VerifyReport v;
      try {
        v = verify_bundle(in, trusted_root_der);
      } catch (const Error& e) {
        fail(first, fmt::format("the segment from entry {} is unreadable: {}", first, e.what()));
        continue;
      }
      if (!v.ok) fail(v.first_bad_seq, fmt::format("segment from entry {}: {}", first, v.reason));
      std::istringstream lines(bundle);
      bool first_entry = true;
      for (std::string line; std::getline(lines, line);) {
        if (line.empty()) continue;
        nlohmann::json j;
        try {
          j = nlohmann::json::parse(line);
        } catch (const nlohmann::json::exception&) {
          break;  // reported by verify_bundle
        }
        const std::string type = str_of(j, "type");
        if (type == "header" && str_of(j, "station_id") != id)
          fail(first, fmt::format("the segment from entry {} is of station '{}', not {}", first,
                                  str_of(j, "station_id"), id));
        if (type == "entry" && j.contains("seq") && j["seq"].is_number_integer()) {
          const auto seq = j["seq"].get<std::int64_t>();
          if (first_entry && str_of(j, "prev_hash") != expect_prev)
            fail(seq, fmt::format("entry {} does not follow the segment before it", seq));
          first_entry = false;
          entry_of[seq] = {str_of(j, "hash"), str_of(j, "details")};
          expect_prev = str_of(j, "hash");
          for (const auto& r : j.value("rows", nlohmann::json::array()))
            if (str_of(r, "row_hash") == "deleted") latest.erase({str_of(r, "tbl"), r.value("row_id", std::int64_t{0})});
        } else if (type == "record") {
          latest[{str_of(j, "tbl"), j.value("row_id", std::int64_t{0})}] = columns_object(j.at("columns"));
        } else if (type == "checkpoint" && j.contains("seq") && j["seq"].is_number_integer()) {
          last_checkpoint = std::max(last_checkpoint, j["seq"].get<std::int64_t>());  // verified with its segment
        }
      }
      rep.entries += v.entries;
      rep.last_seq = segs.int64(k, 1);
      expect_first = rep.last_seq + 1;
    }
    rep.unsigned_tail = std::max<std::int64_t>(0, rep.last_seq - last_checkpoint);
    // The tables auditors query must say what the signed segments say, no more and no less.
    const auto es = pg.exec("SELECT seq, hash, details FROM shared_entries WHERE station_id = $1 ORDER BY seq", {id});
    std::int64_t seen = 0;
    for (int k = 0; k < es.rows(); ++k) {
      const auto seq = es.int64(k, 0);
      const auto it = entry_of.find(seq);
      if (it == entry_of.end())
        fail(seq, fmt::format("shared_entries holds entry {}, which no signed segment does", seq));
      else if (it->second.first != es.text(k, 1) || it->second.second != es.text(k, 2))
        fail(seq, fmt::format("shared_entries' entry {} was changed after it was pushed", seq));
      ++seen;
    }
    if (seen != static_cast<std::int64_t>(entry_of.size()))
      fail(std::nullopt, fmt::format("shared_entries holds {} entries of the {} in the signed segments", seen,
                                     entry_of.size()));
    const auto rs = pg.exec("SELECT tbl, row_id, cols::text FROM shared_records WHERE station_id = $1", {id});
    for (int k = 0; k < rs.rows(); ++k) {
      const auto key = std::make_pair(rs.text(k, 0), rs.int64(k, 1));
      const auto it = latest.find(key);
      nlohmann::json cols;
      try {
        cols = nlohmann::json::parse(rs.text(k, 2));
      } catch (const nlohmann::json::exception&) {
      }
      if (it == latest.end())
        fail(std::nullopt, fmt::format("shared_records holds {} row {}, which no signed segment vouches for",
                                       key.first, key.second));
      else if (cols != it->second)
        fail(std::nullopt, fmt::format("shared_records' {} row {} was changed after it was pushed", key.first,
                                       key.second));
    }
    if (rs.rows() != static_cast<int>(latest.size()))
      fail(std::nullopt, fmt::format("shared_records holds {} rows of the {} the signed segments vouch for", rs.rows(),
                                     latest.size()));
    out.push_back(std::move(rep));
  }
  return out;
}

std::vector<nlohmann::json> query(const SecretString& conninfo, const SharedQuery& q) {
  Pg pg(conninfo);
  ensure_schema(pg);
  std::string where;
  Params params;
  auto add = [&](const std::optional<std::string>& v, const char* expr) {
    if (!v) return;
    params.push_back(*v);
    where += fmt::format(" AND {} = ${}", expr, params.size());
  };
  add(q.serial, "d.cols->>'serial'");
  add(q.mac, "d.cols->>'mac'");
  add(q.pkhash, "i.cols->>'pkhash'");
  add(q.cert_serial, "i.cols->>'cert_serial'");
  add(q.station_id, "i.station_id");
  const auto r = pg.exec(
      "SELECT i.station_id, d.cols->>'serial', d.cols->>'chip_id', d.cols->>'mac', d.cols->>'state', "
      "i.cols->>'pkhash', i.cols->>'cert_serial', i.cols->>'issuer_key_id', i.cols->>'status', i.cols->>'dpp_uri', "
      "d.cols->>'batch_id', i.seq "
      "FROM shared_records i JOIN shared_records d ON d.station_id = i.station_id AND d.tbl = 'devices' "
      "AND d.row_id = (i.cols->>'device_id')::bigint "
      "WHERE i.tbl = 'identities'" + where + " ORDER BY i.station_id, d.cols->>'serial', i.row_id",
      params);
  std::vector<nlohmann::json> out;
  const char* names[] = {"station_id", "serial", "chip_id", "mac", "state", "pkhash", "cert_serial",
                         "issuer", "status", "dpp_uri", "batch_id"};
  for (int k = 0; k < r.rows(); ++k) {
    nlohmann::json row;
    for (int c = 0; c < 11; ++c) row[names[c]] = r.null(k, c) ? nlohmann::json(nullptr) : nlohmann::json(r.text(k, c));
    if (!row["batch_id"].is_null()) row["batch_id"] = std::stoll(row["batch_id"].get<std::string>());
    row["seq"] = r.int64(k, 11);
    out.push_back(std::move(row));
  }
  return out;
}

}  // namespace station::db::shared
