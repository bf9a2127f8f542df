#include "db/audit.hpp"

#include <openssl/err.h>
#include <openssl/x509.h>

#include <istream>
#include <map>
#include <ostream>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "common/ossl.hpp"
#include "db/records.hpp"
#include "internal/problems.hpp"

namespace station::db {

const std::vector<std::string> kIdentityColumns = {"serial",      "chip_id", "mac",    "state",   "identity_status",
                                                   "dpp_uri",     "pkhash",  "cert_serial", "issuer", "batch",
                                                   "fixture",     "operator", "created", "updated"};

std::vector<IdentityRow> query_identities(Connection& c, const QueryFilter& f) {
  std::string sql =
      "SELECT d.serial, d.chip_id, d.mac, d.state, i.status, i.dpp_uri, i.pkhash, i.cert_serial, i.issuer_key_id, "
      "b.name, d.fixture, i.operator, i.created, d.updated FROM identities i JOIN devices d ON d.id = i.device_id "
      "LEFT JOIN batches b ON b.id = d.batch_id WHERE 1";
  std::vector<std::string> params;
  auto add = [&](const std::optional<std::string>& v, const char* clause) {
    if (v) {
      sql += clause;
      params.push_back(*v);
    }
  };
  add(f.serial, " AND d.serial = ?");
  add(f.mac, " AND d.mac = ?");
  add(f.chip_id, " AND d.chip_id = ?");
  add(f.pkhash, " AND i.pkhash = ?");
  add(f.cert_serial, " AND i.cert_serial = ?");
  add(f.batch, " AND b.name = ?");
  add(f.op, " AND i.operator = ?");
  add(f.fixture, " AND d.fixture = ?");
  add(f.ca, " AND i.issuer_key_id = ?");
  add(f.state, " AND d.state = ?");
  add(f.since, " AND i.created >= ?");
  add(f.until, " AND i.created <= ?");
  sql += " ORDER BY i.id";
  auto st = c.prepare(sql);
  for (std::size_t k = 0; k < params.size(); ++k) st.bind(static_cast<int>(k + 1), params[k]);
  std::vector<IdentityRow> out;
  while (st.step()) {
    IdentityRow r;
    r.serial = st.text(0);
    r.chip_id = st.opt_text(1);
    r.mac = st.opt_text(2);
    r.state = st.text(3);
    r.identity_status = st.text(4);
    r.dpp_uri = st.opt_text(5);
    r.pkhash = st.text(6);
    r.cert_serial = st.text(7);
    r.issuer = st.text(8);
    r.batch = st.opt_text(9);
    r.fixture = st.opt_text(10);
    r.op = st.text(11);
    r.created = st.text(12);
    r.updated = st.text(13);
    out.push_back(std::move(r));
  }
  return out;
}

nlohmann::json to_json(const IdentityRow& r) {
  auto opt = [](const std::optional<std::string>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
  return nlohmann::json{{"serial", r.serial},         {"chip_id", opt(r.chip_id)},
                        {"mac", opt(r.mac)},          {"state", r.state},
                        {"identity_status", r.identity_status}, {"dpp_uri", opt(r.dpp_uri)},
                        {"pkhash", r.pkhash},         {"cert_serial", r.cert_serial},
                        {"issuer", r.issuer},         {"batch", opt(r.batch)},
                        {"fixture", opt(r.fixture)},  {"operator", r.op},
                        {"created", r.created},       {"updated", r.updated}};
}

std::vector<Entry> journal_entries_for(Connection& c, const std::string& subject, const std::string& also) {
  auto st = c.prepare(
      std::string("SELECT ") + kEntryColumns + " FROM journal "
      "WHERE subject = ? OR subject = ? ORDER BY seq");
  st.bind(1, subject).bind(2, also.empty() ? subject : also);
  std::vector<Entry> out;
  while (st.step()) {
    Entry e = read_entry(st);
    out.push_back(std::move(e));
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Bundles

namespace {

nlohmann::json entry_json(const Entry& e, const std::vector<RowHash>& rows) {
  auto list = nlohmann::json::array();
  for (const auto& r : rows) list.push_back({{"tbl", r.table}, {"row_id", r.id}, {"row_hash", r.hash}});
  return {{"type", "entry"},     {"seq", e.seq},         {"time", e.time},
          {"station_id", e.station_id}, {"actor", e.actor}, {"action", e.action},
          {"subject", e.subject}, {"details", e.details}, {"records_hash", e.records_hash},
          {"prev_hash", e.prev_hash}, {"hash", e.hash},  {"rows", list}};
}

Entry entry_from_json(const nlohmann::json& j) {
  Entry e;
  e.seq = j.at("seq").get<std::int64_t>();
  for (auto [field, key] : std::initializer_list<std::pair<std::string*, const char*>>{
           {&e.time, "time"}, {&e.station_id, "station_id"}, {&e.actor, "actor"}, {&e.action, "action"},
           {&e.subject, "subject"}, {&e.details, "details"}, {&e.records_hash, "records_hash"},
           {&e.prev_hash, "prev_hash"}, {&e.hash, "hash"}})
    *field = j.at(key).get<std::string>();
  return e;
}

}  // namespace

std::int64_t write_bundle(Connection& c, CheckpointSigner& signer, const ExportFilter& f, std::ostream& out,
                          const nlohmann::json& extra_header) {
  // Which entries match.
  std::string where = "WHERE 1";
  std::vector<std::string> params;
  if (f.since) {
    where += " AND j.time >= ?";
    params.push_back(*f.since);
  }
  if (f.until) {
    where += " AND j.time <= ?";
    params.push_back(*f.until);
  }
  if (f.batch) {
    where +=
        " AND (j.subject = 'batch:' || ? OR EXISTS (SELECT 1 FROM journal_rows r JOIN devices d ON "
        "(r.tbl = 'devices' AND r.row_id = d.id) OR (r.tbl = 'identities' AND r.row_id IN (SELECT id FROM identities "
        "WHERE device_id = d.id)) JOIN batches b ON b.id = d.batch_id WHERE r.seq = j.seq AND b.name = ?))";
    params.push_back(*f.batch);
    params.push_back(*f.batch);
  }
  if (f.from_seq) where += " AND j.seq >= " + std::to_string(*f.from_seq);
  if (f.to_seq) where += " AND j.seq <= " + std::to_string(*f.to_seq);
  std::set<std::int64_t> matching;
  {
    auto st = c.prepare("SELECT j.seq FROM journal j " + where + " ORDER BY j.seq");
    for (std::size_t k = 0; k < params.size(); ++k) st.bind(static_cast<int>(k + 1), params[k]);
    while (st.step()) matching.insert(st.int64(0));
  }
  std::int64_t first = matching.empty() ? 0 : *matching.begin();
  std::int64_t last = matching.empty() ? -1 : *matching.rbegin();
  if (!matching.empty() && !f.to_seq) {
    auto st = c.prepare("SELECT min(seq) FROM checkpoints WHERE seq >= ?");
    st.bind(1, last);
    if (st.step() && !st.is_null(0)) last = st.int64(0);
  }

  std::ostringstream body;
  nlohmann::json header = {{"type", "header"},
                           {"format", "station-audit-bundle-v1"},
                           {"exported", now_rfc3339()},
                           {"since", f.since ? nlohmann::json(*f.since) : nlohmann::json(nullptr)},
                           {"until", f.until ? nlohmann::json(*f.until) : nlohmann::json(nullptr)},
                           {"batch", f.batch ? nlohmann::json(*f.batch) : nlohmann::json(nullptr)},
                           {"first_seq", first},
                           {"last_seq", last}};
  for (auto& [k, v] : extra_header.items()) header[k] = v;
  body << header.dump() << "\n";
  {
    auto st = c.prepare("SELECT role, status, sha256, key_id, der FROM ca_certificates ORDER BY id");
    while (st.step()) {
      body << nlohmann::json{{"type", "certificate"}, {"role", st.text(0)}, {"status", st.text(1)},
                             {"sha256", st.text(2)}, {"key_id", st.text(3)}, {"der", base64_encode(st.blob(4))}}
                  .dump()
           << "\n";
    }
  }
  std::int64_t written = 0;
  std::map<std::pair<std::string, std::int64_t>, bool> vouched;  // rows named by matching entries
  {
    auto rows = c.prepare("SELECT tbl, row_id, row_hash FROM journal_rows WHERE seq = ? ORDER BY tbl, row_id");
    auto st = c.prepare(
        std::string("SELECT ") + kEntryColumns + " FROM journal "
        "WHERE seq BETWEEN ? AND ? ORDER BY seq");
    st.bind(1, first).bind(2, last);
    while (st.step()) {
      Entry e = read_entry(st);
      std::vector<RowHash> list;
      rows.bind(1, e.seq);
      while (rows.step()) {
        list.push_back({rows.text(0), rows.int64(1), rows.text(2)});
        if (matching.count(e.seq) != 0 && rows.text(2) != "deleted") vouched[{rows.text(0), rows.int64(1)}] = true;
      }
      rows.reset();
      auto j = entry_json(e, list);
      j["matches"] = matching.count(e.seq) != 0;
      body << j.dump() << "\n";
      ++written;
    }
  }
  for (const auto& [key, unused] : vouched) {
    // The row as it is now; verification compares it with the latest entry in the bundle
    // that names it.
    auto latest = c.prepare("SELECT max(seq) FROM journal_rows WHERE tbl = ? AND row_id = ?");
    latest.bind(1, key.first).bind(2, key.second);
    latest.step();
    if (latest.int64(0) > last) continue;  // changed after the bundle's range: not vouched here
    nlohmann::json cols = nlohmann::json::array();
    try {
      for (auto& [name, v] : row_values(c, key.first, key.second)) cols.push_back({name, v});
    } catch (const Error&) {
      continue;  // a row that is gone is reported by verify, not exported
    }
    body << nlohmann::json{{"type", "record"}, {"tbl", key.first}, {"row_id", key.second}, {"columns", cols}}.dump()
         << "\n";
  }
  {
    auto st = c.prepare(
        "SELECT seq, hash, time, station_id, signature, signer_sha256 FROM checkpoints WHERE seq BETWEEN ? AND ? "
        "ORDER BY seq");
    st.bind(1, first).bind(2, last);
    while (st.step()) {
      body << nlohmann::json{{"type", "checkpoint"}, {"seq", st.int64(0)},      {"hash", st.text(1)},
                             {"time", st.text(2)},   {"station_id", st.text(3)}, {"signature", base64_encode(st.blob(4))},
                             {"signer_sha256", st.text(5)}}
                  .dump()
           << "\n";
    }
  }
  const std::string text = body.str();
  const Bytes sig = signer.sign(as_bytes(text));
  out << text
      << nlohmann::json{{"type", "signature"}, {"signer_sha256", signer.signer_sha256()},
                        {"signature", base64_encode(sig)}}
             .dump()
      << "\n";
  return written;
}

namespace {

bool chains_to(ByteView cert_der, ByteView root_der) {
  auto parse = [](ByteView d) {
    const unsigned char* p = d.data();
    return ossl::X509Ptr(::d2i_X509(nullptr, &p, static_cast<long>(d.size())));
  };
  const auto cert = parse(cert_der), root = parse(root_der);
  if (!cert || !root) return false;
  ossl::X509Store store(::X509_STORE_new());
  ::X509_STORE_add_cert(store.get(), root.get());
  ossl::X509StoreCtx ctx(::X509_STORE_CTX_new());
  ::X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), nullptr);
  const bool ok = ::X509_verify_cert(ctx.get()) == 1;
  ::ERR_clear_error();
  return ok;
}

}  // namespace

namespace {

// A member's text; "" when the line is not an object or the member is absent or not a string
// (a bundle is someone else's file: any line may be anything).
std::string text_of(const nlohmann::json& j, const char* key) {
  if (!j.is_object()) return {};
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

bool is_bundle(std::string_view text) {
  const auto header = nlohmann::json::parse(text.substr(0, text.find('\n')), nullptr, false);
  return header.is_object() && text_of(header, "type") == "header" &&
         text_of(header, "format") == "station-audit-bundle-v1";
}

HighWater highwater_of_bundle(std::string_view text) {
  HighWater marks;
  bool header = false;
  try {
    std::size_t at = 0;
    while (at < text.size()) {
      const auto end = std::min(text.find('\n', at), text.size());
      const auto line = text.substr(at, end - at);
      at = end + 1;
      if (line.empty()) continue;
      const auto it = nlohmann::json::parse(line);
      const auto type = text_of(it, "type");
      if (type == "header") {
        header = true;
        marks.station_id = it.at("station_id").get<std::string>();
        marks.seq = it.at("last_seq").get<std::int64_t>();
        marks.time = it.at("exported").get<std::string>();
      } else if (type == "entry" && it.at("seq").get<std::int64_t>() == marks.seq) {
        marks.hash = it.at("hash").get<std::string>();
      } else if (type == "record" && it.at("tbl").get<std::string>() == "serial_counters") {
        std::optional<std::string> prefix;
        std::optional<std::int64_t> next;
        for (const auto& col : it.at("columns")) {
          const auto name = col.at(0).get<std::string>();
          if (name == "prefix") prefix = col.at(1).get<std::string>();
          if (name == "next") next = col.at(1).get<std::int64_t>();
        }
        if (!prefix || !next) throw Error(Errc::parse_error, "a serial_counters record without prefix and next");
        marks.counters[*prefix] = std::max(marks.counters[*prefix], *next);
      }
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(Errc::parse_error, std::string("the bundle is malformed: ") + e.what());
  }
  if (!header) throw Error(Errc::parse_error, "not an audit bundle: no station-audit-bundle-v1 header");
  return marks;
}

VerifyReport verify_bundle(std::istream& in, ByteView trusted_root_der) {
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  if (lines.size() < 2) throw Error(Errc::parse_error, "not an audit bundle: too short");
  std::vector<nlohmann::json> items;
  try {
    for (const auto& l : lines) items.push_back(nlohmann::json::parse(l));
  } catch (const nlohmann::json::exception& e) {
    throw Error(Errc::parse_error, std::string("not an audit bundle: a line is not JSON: ") + e.what());
  }
  if (text_of(items.front(), "format") != "station-audit-bundle-v1")
    throw Error(Errc::parse_error, "not an audit bundle: no station-audit-bundle-v1 header");
  const auto& sig = items.back();
  if (text_of(sig, "type") != "signature") throw Error(Errc::parse_error, "the bundle is cut short: no signature line");

  VerifyReport report;
  Problems problems;
  auto fail = [&](std::optional<std::int64_t> seq, std::string why) { problems.add(seq, std::move(why)); };
  try {
    std::map<std::string, Bytes> certs;  // sha256 -> DER, audit certificates only
    for (const auto& it : items)
      if (text_of(it, "type") == "certificate" && text_of(it, "role") == "audit")
        certs[it.at("sha256").get<std::string>()] = base64_decode(it.at("der").get<std::string>()).value_or(Bytes{});
    auto trusted_signer = [&](const std::string& sha) -> const Bytes* {
      const auto c = certs.find(sha);
      if (c == certs.end() || sha256_hex(c->second) != sha || !chains_to(c->second, trusted_root_der)) return nullptr;
      return &c->second;
    };
    // The bundle's own signature, over every line before it.
    std::string signed_text;
    for (std::size_t k = 0; k + 1 < lines.size(); ++k) signed_text += lines[k] + "\n";
    const Bytes* bundle_signer = trusted_signer(sig.at("signer_sha256").get<std::string>());
    if (bundle_signer == nullptr) {
      fail(std::nullopt, "the bundle is signed by a certificate that does not chain to the trusted root");
    } else if (!verify_with_certificate(*bundle_signer, as_bytes(signed_text),
                                        base64_decode(sig.at("signature").get<std::string>()).value_or(Bytes{}))) {
      fail(std::nullopt, "the bundle's signature does not verify: it was altered after export");
    }
    // The chain of entries.
    std::map<std::int64_t, std::string> hashes;
    std::map<std::pair<std::string, std::int64_t>, std::pair<std::string, std::int64_t>> latest;
    std::optional<std::int64_t> prev_seq;
    std::string prev_hash;
    bool chain_ok = true;
    for (const auto& it : items) {
      if (text_of(it, "type") != "entry") continue;
      const Entry e = entry_from_json(it);
      ++report.entries;
      std::vector<RowHash> rows;
      for (const auto& r : it.at("rows"))
        rows.push_back({r.at("tbl").get<std::string>(), r.at("row_id").get<std::int64_t>(), r.at("row_hash").get<std::string>()});
      if (chain_ok) {
        if (prev_seq && e.seq != *prev_seq + 1) {
          fail(*prev_seq + 1, fmt::format("entry {} is missing from the bundle", *prev_seq + 1));
          chain_ok = false;
        } else if ((prev_seq && e.prev_hash != prev_hash) || (!prev_seq && e.seq == 1 && e.prev_hash != std::string(64, '0'))) {
          fail(e.seq, fmt::format("entry {} does not follow the entry before it", e.seq));
          chain_ok = false;
        } else if (entry_hash(e) != e.hash) {
          fail(e.seq, fmt::format("entry {} was changed", e.seq));
          chain_ok = false;
        } else if (records_hash(rows) != e.records_hash) {
          fail(e.seq, fmt::format("the record list of entry {} was changed", e.seq));
          chain_ok = false;
        }
      }
      for (const auto& r : rows) latest[{r.table, r.id}] = {r.hash, e.seq};
      hashes[e.seq] = e.hash;
      prev_seq = e.seq;
      prev_hash = e.hash;
    }
    // Checkpoints.
    std::int64_t last_good = 0;
    for (const auto& it : items) {
      if (text_of(it, "type") != "checkpoint") continue;
      ++report.checkpoints;
      const auto seq = it.at("seq").get<std::int64_t>();
      const Bytes* signer = trusted_signer(it.at("signer_sha256").get<std::string>());
      const auto msg = checkpoint_message(it.at("station_id").get<std::string>(), seq, it.at("hash").get<std::string>(),
                                          it.at("time").get<std::string>());
      if (signer == nullptr || !verify_with_certificate(*signer, msg, base64_decode(it.at("signature").get<std::string>()).value_or(Bytes{}))) {
        fail(seq, fmt::format("checkpoint at entry {} is not signed by the trusted audit key", seq));
      } else if (hashes.count(seq) != 0 && hashes[seq] != it.at("hash").get<std::string>()) {
        fail(seq, fmt::format("entry {} does not match its signed checkpoint", seq));
      } else if (chain_ok && hashes.count(seq) != 0) {
        last_good = std::max(last_good, seq);
      }
    }
    report.unsigned_tail = prev_seq ? std::max<std::int64_t>(0, *prev_seq - last_good) : 0;
    if (report.entries > 0 && last_good == 0) report.unsigned_tail = report.entries;
    // Records.
    for (const auto& it : items) {
      if (text_of(it, "type") != "record") continue;
      const auto key = std::make_pair(it.at("tbl").get<std::string>(), it.at("row_id").get<std::int64_t>());
      std::vector<std::pair<std::string, nlohmann::json>> cols;
      for (const auto& col : it.at("columns")) cols.emplace_back(col.at(0).get<std::string>(), col.at(1));
      const auto l = latest.find(key);
      if (l == latest.end()) fail(std::nullopt, fmt::format("{} row {} is vouched for by no entry in the bundle", key.first, key.second));
      else if (row_hash_of_values(cols) != l->second.first)
        fail(l->second.second, fmt::format("{} row {} differs from what entry {} recorded", key.first, key.second, l->second.second));
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(Errc::parse_error, std::string("the bundle is malformed: ") + e.what());
  }
  if (problems.first()) {
    report.ok = false;
    report.first_bad_seq = problems.first()->seq;
    report.reason = problems.first()->reason;
  }
  return report;
}

}  // namespace station::db
