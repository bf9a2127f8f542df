#include "db/journal.hpp"

#include <pthread.h>
#include <sqlite3.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <unordered_map>

#include <fmt/format.h>

#include "common/ossl.hpp"
#include "db/highwater.hpp"
#include "db/records.hpp"
#include "internal/problems.hpp"

namespace station::db {
namespace {

const std::string kGenesis(64, '0');

// Length-prefixed field: u32 big-endian length, then the bytes. No two different field
// lists encode the same, so the hash is over an unambiguous canonical form.
void put(Bytes& out, std::string_view s) {
  const auto n = static_cast<std::uint32_t>(s.size());
  out.push_back(static_cast<std::uint8_t>(n >> 24));
  out.push_back(static_cast<std::uint8_t>(n >> 16));
  out.push_back(static_cast<std::uint8_t>(n >> 8));
  out.push_back(static_cast<std::uint8_t>(n));
  out.insert(out.end(), s.begin(), s.end());
}

// A typed value: one field holding a type tag and the value's bytes.
void put_tagged(Bytes& out, char tag, std::string_view value) {
  const auto n = static_cast<std::uint32_t>(value.size() + 1);
  out.push_back(static_cast<std::uint8_t>(n >> 24));
  out.push_back(static_cast<std::uint8_t>(n >> 16));
  out.push_back(static_cast<std::uint8_t>(n >> 8));
  out.push_back(static_cast<std::uint8_t>(n));
  out.push_back(static_cast<std::uint8_t>(tag));
  out.insert(out.end(), value.begin(), value.end());
}

std::string real_text(double v) { return fmt::format("{:.17g}", v); }

// One column of a row in the canonical encoding: name, then a type tag and the value.
void put_column(Bytes& out, std::string_view name, sqlite3_stmt* st, int col) {
  put(out, name);
  switch (::sqlite3_column_type(st, col)) {
    case SQLITE_INTEGER: put_tagged(out, 'i', std::to_string(::sqlite3_column_int64(st, col))); break;
    case SQLITE_FLOAT: put_tagged(out, 'r', real_text(::sqlite3_column_double(st, col))); break;
    case SQLITE_TEXT:
      put_tagged(out, 't',
                 std::string_view(reinterpret_cast<const char*>(::sqlite3_column_text(st, col)),
                                  static_cast<std::size_t>(::sqlite3_column_bytes(st, col))));
      break;
    case SQLITE_BLOB: {
      const auto* p = static_cast<const char*>(::sqlite3_column_blob(st, col));
      put_tagged(out, 'b',
                 p != nullptr ? std::string_view(p, static_cast<std::size_t>(::sqlite3_column_bytes(st, col)))
                              : std::string_view());
      break;
    }
    default: put(out, "n"); break;
  }
}

// Hash of the row the statement is on, columns [first, count).
std::string hash_current_row(sqlite3_stmt* st, int first) {
  Bytes enc;
  put(enc, "station-row-v1");
  const int n = ::sqlite3_column_count(st);
  for (int i = first; i < n; ++i) put_column(enc, ::sqlite3_column_name(st, i), st, i);
  return sha256_hex(enc);
}

void check_table(const std::string& table) {
  const auto& t = audited_tables();
  if (std::find(t.begin(), t.end(), table) == t.end())
    throw Error(Errc::internal, "journal: '" + table + "' is not an audited table");
}

}  // namespace

const std::vector<std::string>& audited_tables() {
  static const std::vector<std::string> tables = {"stations", "users",  "ca_certificates", "batches",
                                                  "devices",  "identities", "labels",       "revocations",
                                                  "ca_proposals", "ca_keys", "crls", "serial_counters"};
  return tables;
}

Entry read_entry(const Statement& st) {
  Entry e;
  e.seq = st.int64(0);
  e.time = st.text(1);
  e.station_id = st.text(2);
  e.actor = st.text(3);
  e.action = st.text(4);
  e.subject = st.text(5);
  e.details = st.text(6);
  e.records_hash = st.text(7);
  e.prev_hash = st.text(8);
  e.hash = st.text(9);
  return e;
}

std::string row_hash(Connection& c, const std::string& table, std::int64_t id) {
  check_table(table);
  auto st = c.prepare("SELECT * FROM " + table + " WHERE rowid = ?");
  st.bind(1, id);
  if (!st.step()) throw Error(Errc::not_found, fmt::format("journal: {} row {} does not exist", table, id));
  return hash_current_row(st.raw(), 0);
}

std::vector<std::pair<std::string, nlohmann::json>> row_values(Connection& c, const std::string& table, std::int64_t id) {
  check_table(table);
  auto st = c.prepare("SELECT * FROM " + table + " WHERE rowid = ?");
  st.bind(1, id);
  if (!st.step()) throw Error(Errc::not_found, fmt::format("{} row {} does not exist", table, id));
  std::vector<std::pair<std::string, nlohmann::json>> out;
  sqlite3_stmt* s = st.raw();
  for (int i = 0; i < ::sqlite3_column_count(s); ++i) {
    nlohmann::json v;
    switch (::sqlite3_column_type(s, i)) {
      case SQLITE_INTEGER: v = ::sqlite3_column_int64(s, i); break;
      case SQLITE_FLOAT: v = ::sqlite3_column_double(s, i); break;
      case SQLITE_TEXT: v = st.text(i); break;
      case SQLITE_BLOB: v = {{"b64", base64_encode(st.blob(i))}}; break;
      default: v = nullptr; break;
    }
    out.emplace_back(::sqlite3_column_name(s, i), std::move(v));
  }
  return out;
}

std::string row_hash_of_values(const std::vector<std::pair<std::string, nlohmann::json>>& columns) {
  Bytes enc;
  put(enc, "station-row-v1");
  for (const auto& [name, v] : columns) {
    put(enc, name);
    if (v.is_null()) put(enc, "n");
    else if (v.is_number_integer()) put_tagged(enc, 'i', std::to_string(v.get<std::int64_t>()));
    else if (v.is_number_float()) put_tagged(enc, 'r', real_text(v.get<double>()));
    else if (v.is_string()) put_tagged(enc, 't', v.get<std::string>());
    else if (v.is_object() && v.contains("b64")) {
      const auto b = base64_decode(v.at("b64").get<std::string>());
      if (!b) throw Error(Errc::parse_error, "bad base64 in a row value");
      put_tagged(enc, 'b', to_string(*b));
    } else {
      throw Error(Errc::parse_error, "unsupported row value for column " + name);
    }
  }
  return sha256_hex(enc);
}

std::string records_hash(std::vector<RowHash> rows) {
  std::sort(rows.begin(), rows.end(),
            [](const RowHash& a, const RowHash& b) { return std::tie(a.table, a.id) < std::tie(b.table, b.id); });
  Bytes enc;
  put(enc, "station-records-v1");
  for (const auto& r : rows) {
    put(enc, r.table);
    put(enc, std::to_string(r.id));
    put(enc, r.hash);
  }
  return sha256_hex(enc);
}

std::string entry_hash(const Entry& e) {
  Bytes enc;
  put(enc, "station-journal-v1");
  put(enc, std::to_string(e.seq));
  for (const auto* f : {&e.time, &e.station_id, &e.actor, &e.action, &e.subject, &e.details, &e.records_hash,
                        &e.prev_hash})
    put(enc, *f);
  return sha256_hex(enc);
}

Bytes checkpoint_message(const std::string& station_id, std::int64_t seq, const std::string& hash,
                         const std::string& time) {
  Bytes enc;
  put(enc, "station-audit-v1");
  put(enc, station_id);
  put(enc, std::to_string(seq));
  put(enc, hash);
  put(enc, time);
  return enc;
}

bool verify_with_certificate(ByteView cert_der, ByteView message, ByteView signature) {
  const unsigned char* p = cert_der.data();
  const ossl::X509Ptr cert(::d2i_X509(nullptr, &p, static_cast<long>(cert_der.size())));
  if (!cert) return false;
  EVP_PKEY* pub = ::X509_get0_pubkey(cert.get());
  if (pub == nullptr) return false;
  const ossl::MdCtx ctx(::EVP_MD_CTX_new());
  const bool ok = ::EVP_DigestVerifyInit(ctx.get(), nullptr, ossl::sha256(), nullptr, pub) == 1 &&
                  ::EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), message.data(), message.size()) == 1;
  ::ERR_clear_error();
  return ok;
}

// ---------------------------------------------------------------------------------------
// Journal

// What the writer runs: a unit of entries (all or none) with its completion, or a checkpoint.
struct Journal::Pending {
  std::vector<Request> requests;
  Completion done;
  std::function<void()> applied;
  bool is_checkpoint = false;
  std::promise<Checkpoint> checkpoint;
};

void Journal::reload_tail() {
  auto st = conn_.prepare("SELECT seq, hash, time FROM journal ORDER BY seq DESC LIMIT 1");
  if (st.step()) {
    last_seq_ = st.int64(0);
    last_hash_ = st.text(1);
    last_time_ = st.text(2);
  } else {
    last_seq_ = 0;
    last_hash_ = kGenesis;
  }
}

Journal::Journal(const std::filesystem::path& db_path, std::string station_id, CheckpointSigner* signer,
                 CheckpointPolicy policy)
    : station_id_(std::move(station_id)), signer_(signer), policy_(policy), conn_(db_path) {
  reload_tail();
  {
    auto st = conn_.prepare("SELECT coalesce(max(seq), 0) FROM checkpoints");
    st.step();
    last_checkpoint_seq_ = st.int64(0);
  }
  last_checkpoint_at_ = std::chrono::steady_clock::now();
  writer_ = std::thread([this] {
    ::pthread_setname_np(::pthread_self(), "journal");  // as `top -H` and perf show it
    writer_loop();
  });
}

Journal::~Journal() {
  {
    const std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  writer_.join();
  if (signer_ != nullptr && policy_.on_close && last_seq_ > last_checkpoint_seq_) {
    try {
      Transaction tx(conn_);
      checkpoint_locked();
      tx.commit();
      write_marks_due();
    } catch (const std::exception& e) {
      marks_due_.reset();
      spdlog::error("journal: could not sign the closing checkpoint or write its high-water marks: {}", e.what());
    }
  }
}

void Journal::enqueue(std::unique_ptr<Pending> p) {
  {
    const std::lock_guard lock(mutex_);
    if (stopping_) throw Error(Errc::internal, "journal is closing");
    queue_.push_back(std::move(p));
  }
  cv_.notify_one();
}

void Journal::commit_async(std::vector<Request> requests, Completion done, std::function<void()> applied) {
  auto p = std::make_unique<Pending>();
  p->requests = std::move(requests);
  p->done = std::move(done);
  p->applied = std::move(applied);
  enqueue(std::move(p));
}

namespace {

// A completion that hands a unit's outcome to a waiting caller.
Journal::Completion fulfil(std::shared_ptr<std::promise<std::vector<Entry>>> promise) {
  return [promise = std::move(promise)](std::vector<Entry> entries, std::exception_ptr error) {
    if (error) promise->set_exception(error);
    else promise->set_value(std::move(entries));
  };
}

}  // namespace

std::vector<Entry> Journal::commit_together(std::vector<Request> requests) {
  auto promise = std::make_shared<std::promise<std::vector<Entry>>>();
  auto result = promise->get_future();
  commit_async(std::move(requests), fulfil(std::move(promise)));
  return result.get();
}

Entry Journal::commit(EntryRequest request, Mutation mutation) {
  std::vector<Request> one;
  one.emplace_back(std::move(request), std::move(mutation));
  return std::move(commit_together(std::move(one)).front());
}

std::vector<Entry> Journal::commit_all(std::vector<Request> requests) {
  // Each request a unit of its own, all queued before the first is waited for, so the
  // writer takes up to 512 of them into one transaction.
  std::vector<std::future<std::vector<Entry>>> results;
  results.reserve(requests.size());
  for (auto& r : requests) {
    auto promise = std::make_shared<std::promise<std::vector<Entry>>>();
    results.push_back(promise->get_future());
    std::vector<Request> one;
    one.push_back(std::move(r));
    commit_async(std::move(one), fulfil(std::move(promise)));
  }
  std::vector<Entry> entries;
  entries.reserve(results.size());
  std::exception_ptr first;
  for (auto& r : results) {
    try {
      entries.push_back(std::move(r.get().front()));
    } catch (...) {
      if (!first) first = std::current_exception();
    }
  }
  if (first) std::rethrow_exception(first);
  return entries;
}

Checkpoint Journal::checkpoint() {
  if (signer_ == nullptr) throw Error(Errc::config_error, "no audit signer: checkpoints need the HSM's audit key");
  auto p = std::make_unique<Pending>();
  p->is_checkpoint = true;
  auto result = p->checkpoint.get_future();
  enqueue(std::move(p));
  return result.get();
}

std::optional<Entry> Journal::last() {
  const std::lock_guard lock(conn_mutex_);
  auto st = conn_.prepare(
      std::string("SELECT ") + kEntryColumns + " FROM journal "
      "ORDER BY seq DESC LIMIT 1");
  if (!st.step()) return std::nullopt;
  return read_entry(st);
}

Journal::Counters Journal::counters() {
  const std::lock_guard lock(conn_mutex_);
  int since = 0;
  int high = 0;
  // Taken and reset each time (SQLite counts in an int), summed here.
  if (::sqlite3_db_status(conn_.raw(), SQLITE_DBSTATUS_CACHE_WRITE, &since, &high, 1) == SQLITE_OK)
    counters_.pages_written += static_cast<std::uint64_t>(since);
  return counters_;
}

void Journal::writer_loop() {
  for (;;) {
    std::vector<std::unique_ptr<Pending>> batch;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty() && stopping_) return;
      while (!queue_.empty() && batch.size() < 512) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    run_batch(batch);
  }
}

void Journal::run_batch(std::vector<std::unique_ptr<Pending>>& batch) {
  const std::lock_guard conn_lock(conn_mutex_);
  const auto saved_seq = last_seq_;
  const auto saved_hash = last_hash_;
  const auto saved_time = last_time_;
  const auto saved_cp = last_checkpoint_seq_;
  // Every pending item gets exactly one outcome: its entries (once the batch committed) or
  // an exception (its own failure, or the batch's).
  std::vector<std::vector<Entry>> entries(batch.size());
  std::vector<std::optional<Checkpoint>> cps(batch.size());
  std::vector<std::exception_ptr> errors(batch.size());
  try {
    Transaction tx(conn_);
    // Another process (a CLI command beside a running station) may have appended since:
    // under the write lock BEGIN IMMEDIATE holds, continue from what the file says.
    reload_tail();
    for (std::size_t k = 0; k < batch.size(); ++k) {
      Pending& p = *batch[k];
      const auto unit_seq = last_seq_;
      const auto unit_hash = last_hash_;
      const auto unit_time = last_time_;
      conn_.exec("SAVEPOINT entry");
      try {
        if (p.is_checkpoint) {
          cps[k] = checkpoint_locked();
        } else {
          for (const auto& [request, mutation] : p.requests) {
            const auto rows = mutation ? mutation(conn_) : std::vector<RowRef>{};
            entries[k].push_back(append_locked(request, rows));
          }
        }
      } catch (...) {
        errors[k] = std::current_exception();
        entries[k].clear();
        last_seq_ = unit_seq;  // the unit's earlier entries are rolled back with it
        last_hash_ = unit_hash;
        last_time_ = unit_time;
        conn_.exec("ROLLBACK TO entry");  // if this fails too, the whole batch fails below
      }
      conn_.exec("RELEASE entry");
      if (!errors[k] && p.applied) {
        try {
          p.applied();
        } catch (const std::exception& e) {
          spdlog::error("journal: a unit's applied notice threw: {}", e.what());
        }
      }
    }
    tx.commit();  // one fsync for the whole batch (synchronous=FULL)
    ++counters_.transactions;
    try {
      write_marks_due();
    } catch (...) {
      // The checkpoints are recorded; their caller learns that the marks are not (an
      // automatic checkpoint's marks come with the next one).
      for (std::size_t k = 0; k < batch.size(); ++k)
        if (batch[k]->is_checkpoint && !errors[k]) errors[k] = std::current_exception();
    }
    for (std::size_t k = 0; k < batch.size(); ++k) {
      if (batch[k]->is_checkpoint || errors[k]) continue;
      ++counters_.units;
      counters_.entries += entries[k].size();
    }
  } catch (...) {
    last_seq_ = saved_seq;
    last_hash_ = saved_hash;
    last_time_ = saved_time;
    last_checkpoint_seq_ = saved_cp;
    marks_due_.reset();
    for (std::size_t k = 0; k < batch.size(); ++k) {
      if (!errors[k]) errors[k] = std::current_exception();
      entries[k].clear();
    }
  }
  for (std::size_t k = 0; k < batch.size(); ++k) {
    Pending& p = *batch[k];
    if (p.is_checkpoint) {
      if (errors[k]) p.checkpoint.set_exception(errors[k]);
      else p.checkpoint.set_value(std::move(*cps[k]));
      continue;
    }
    try {
      p.done(std::move(entries[k]), errors[k]);
    } catch (const std::exception& e) {
      spdlog::error("journal: a commit's completion threw: {}", e.what());
    } catch (...) {
      spdlog::error("journal: a commit's completion threw");
    }
  }
  batch.clear();

  if (signer_ != nullptr && last_seq_ > last_checkpoint_seq_ &&
      (last_seq_ - last_checkpoint_seq_ >= policy_.every_entries ||
       std::chrono::steady_clock::now() - last_checkpoint_at_ >= policy_.every)) {
    try {
      Transaction tx(conn_);
      checkpoint_locked();
      tx.commit();
      ++counters_.transactions;
    } catch (const std::exception& e) {
      marks_due_.reset();
      spdlog::error("journal: automatic checkpoint failed (entries stay unsigned until the next one): {}", e.what());
    }
    try {
      write_marks_due();
    } catch (const std::exception& e) {
      spdlog::error("journal: checkpoint {} is recorded but its high-water marks are not: {}", last_checkpoint_seq_,
                    e.what());
    }
  }
}

Entry Journal::append_locked(const EntryRequest& r, const std::vector<RowRef>& rows) {
  std::vector<RowHash> hashes;
  hashes.reserve(rows.size());
  for (const auto& row : rows)
    hashes.push_back({row.table, row.id, row.deleted ? "deleted" : row_hash(conn_, row.table, row.id)});
  Entry e;
  e.seq = last_seq_ + 1;
  e.time = now_rfc3339();
  e.station_id = station_id_;
  e.actor = r.actor;
  e.action = r.action;
  e.subject = r.subject;
  e.details = r.details.dump();
  e.records_hash = records_hash(hashes);
  e.prev_hash = last_hash_;
  e.hash = entry_hash(e);
  auto st = conn_.prepare(
      "INSERT INTO journal(seq, time, station_id, actor, action, subject, details, records_hash, prev_hash, hash) "
      "VALUES(?,?,?,?,?,?,?,?,?,?)");
  st.bind(1, e.seq).bind(2, e.time).bind(3, e.station_id).bind(4, e.actor).bind(5, e.action).bind(6, e.subject);
  st.bind(7, e.details).bind(8, e.records_hash).bind(9, e.prev_hash).bind(10, e.hash);
  st.run();
  if (!hashes.empty()) {
    auto rs = conn_.prepare("INSERT INTO journal_rows(seq, tbl, row_id, row_hash) VALUES(?,?,?,?)");
    for (const auto& h : hashes) {
      rs.bind(1, e.seq).bind(2, h.table).bind(3, h.id).bind(4, h.hash);
      rs.run();
      rs.reset();
    }
  }
  last_seq_ = e.seq;
  last_hash_ = e.hash;
  last_time_ = e.time;
  return e;
}

Checkpoint Journal::checkpoint_locked() {
  if (signer_ == nullptr) throw Error(Errc::config_error, "no audit signer");
  if (last_seq_ == 0) throw Error(Errc::not_found, "the journal is empty: nothing to checkpoint");
  Checkpoint cp;
  cp.seq = last_seq_;
  cp.hash = last_hash_;
  cp.time = now_rfc3339();
  cp.station_id = station_id_;
  cp.signer_sha256 = signer_->signer_sha256();
  cp.signature = signer_->sign(checkpoint_message(cp.station_id, cp.seq, cp.hash, cp.time));
  auto st = conn_.prepare(
      "INSERT OR REPLACE INTO checkpoints(seq, hash, time, station_id, signature, signer_sha256) VALUES(?,?,?,?,?,?)");
  st.bind(1, cp.seq).bind(2, cp.hash).bind(3, cp.time).bind(4, cp.station_id).bind(5, ByteView(cp.signature));
  st.bind(6, cp.signer_sha256);
  st.run();
  // The counters as this transaction leaves them; written beside the database once it has
  // committed (write_marks_due), never before: marks ahead of the database would make the
  // station refuse to allocate as if it had been restored from an older backup.
  if (const char* name = ::sqlite3_db_filename(conn_.raw(), "main"); name != nullptr && *name != '\0')
    marks_due_ = HighWater{cp.station_id, cp.seq, cp.hash, cp.time, read_counters(conn_)};
  last_checkpoint_seq_ = cp.seq;
  last_checkpoint_at_ = std::chrono::steady_clock::now();
  return cp;
}

void Journal::write_marks_due() {
  if (!marks_due_) return;
  HighWater marks = std::move(*marks_due_);
  marks_due_.reset();
  // The counters' high-water marks beside the database (db/highwater.hpp). Never lowered:
  // a database restored from a backup must not overwrite the marks it is behind.
  const auto file = highwater_path(::sqlite3_db_filename(conn_.raw(), "main"));
  if (const auto old = read_highwater(file)) {
    for (const auto& [prefix, mark] : old->counters) {
      auto& m = marks.counters[prefix];
      m = std::max(m, mark);
    }
  }
  write_highwater(file, marks);
}

// ---------------------------------------------------------------------------------------
// Verification

VerifyReport verify_journal(Connection& c, const std::optional<Expectation>& expect, const VerifyProgress& progress) {
  VerifyReport report;
  Problems problems;
  constexpr std::int64_t kProgressEvery = 65536;
  auto total_of = [&](const std::string& sql) {
    if (!progress) return std::int64_t{0};
    auto q = c.prepare(sql);
    return q.step() ? q.int64(0) : std::int64_t{0};
  };

  // Checkpoints first, so the chain walk can compare hashes at their seqs.
  struct Cp {
    Checkpoint cp;
    bool valid = false;
  };
  std::map<std::int64_t, Cp> cps;
  std::map<std::string, Bytes> audit_certs;
  {
    auto st = c.prepare("SELECT sha256, der FROM ca_certificates WHERE role = 'audit'");
    while (st.step()) audit_certs[st.text(0)] = st.blob(1);
  }
  {
    auto st = c.prepare("SELECT seq, hash, time, station_id, signature, signer_sha256 FROM checkpoints ORDER BY seq");
    while (st.step()) {
      Cp x;
      x.cp.seq = st.int64(0);
      x.cp.hash = st.text(1);
      x.cp.time = st.text(2);
      x.cp.station_id = st.text(3);
      x.cp.signature = st.blob(4);
      x.cp.signer_sha256 = st.text(5);
      const auto cert = audit_certs.find(x.cp.signer_sha256);
      if (cert == audit_certs.end()) {
        problems.add(x.cp.seq, fmt::format("checkpoint at entry {} names a signer that is not a recorded audit "
                                           "certificate",
                                           x.cp.seq));
      } else if (!verify_with_certificate(cert->second,
                                          checkpoint_message(x.cp.station_id, x.cp.seq, x.cp.hash, x.cp.time),
                                          x.cp.signature)) {
        problems.add(x.cp.seq, fmt::format("checkpoint at entry {} has an invalid signature (forged or altered)",
                                           x.cp.seq));
      } else {
        x.valid = true;
      }
      cps.emplace(x.cp.seq, std::move(x));
    }
  }
  report.checkpoints = static_cast<std::int64_t>(cps.size());

  // The chain, with each entry's record list.
  auto rows = c.prepare("SELECT seq, tbl, row_id, row_hash FROM journal_rows ORDER BY seq, tbl, row_id");
  bool rows_more = rows.step();
  auto st = c.prepare(
      std::string("SELECT ") + kEntryColumns + " FROM journal "
      "ORDER BY seq");
  std::int64_t expected = 1;
  std::string prev = kGenesis;
  std::int64_t last_good_checkpoint = 0;
  bool chain_ok = true;
  const std::int64_t entries_total = total_of("SELECT coalesce(max(seq), 0) FROM journal");
  while (st.step()) {
    Entry e = read_entry(st);
    ++report.entries;
    if (progress && report.entries % kProgressEvery == 0) progress("entries", report.entries, entries_total);
    std::vector<RowHash> listed;
    while (rows_more && rows.int64(0) <= e.seq) {
      if (rows.int64(0) < e.seq) {
        problems.add(rows.int64(0), fmt::format("record list of entry {} belongs to no entry", rows.int64(0)));
      } else {
        listed.push_back({rows.text(1), rows.int64(2), rows.text(3)});
      }
      rows_more = rows.step();
    }
    if (chain_ok) {
      if (e.seq != expected) {
        problems.add(expected, fmt::format("entry {} is missing: the journal goes from {} to {} (removed or reordered)",
                                           expected, expected - 1, e.seq));
        chain_ok = false;
      } else if (e.prev_hash != prev) {
        problems.add(e.seq, fmt::format("entry {} does not follow entry {} (an entry was changed, removed, inserted "
                                        "or reordered)",
                                        e.seq, e.seq - 1));
        chain_ok = false;
      } else if (entry_hash(e) != e.hash) {
        problems.add(e.seq, fmt::format("entry {} was changed (its hash does not match its content)", e.seq));
        chain_ok = false;
      } else if (records_hash(listed) != e.records_hash) {
        problems.add(e.seq, fmt::format("the record list of entry {} was changed", e.seq));
        chain_ok = false;
      }
    }
    if (const auto it = cps.find(e.seq); it != cps.end()) {
      if (it->second.cp.hash != e.hash) {
        problems.add(e.seq, fmt::format("entry {} does not match the signed checkpoint (changed after signing)", e.seq));
        it->second.valid = false;
      } else if (it->second.valid && chain_ok) {
        last_good_checkpoint = e.seq;
      }
    }
    prev = e.hash;
    expected = e.seq + 1;
  }
  while (rows_more) {
    problems.add(rows.int64(0), fmt::format("record list of entry {} belongs to no entry", rows.int64(0)));
    rows_more = rows.step();
  }
  if (progress) progress("entries", report.entries, entries_total);
  const std::int64_t last_seq = expected - 1;
  for (const auto& [seq, x] : cps) {
    if (seq > last_seq)
      problems.add(last_seq + 1, fmt::format("the journal ends at entry {} but a signed checkpoint covers entry {}: "
                                             "entries were removed from the end",
                                             last_seq, seq));
  }
  report.unsigned_tail = report.entries - last_good_checkpoint;
  if (expect) {
    if (expect->seq > last_seq) {
      problems.add(last_seq + 1, fmt::format("the journal ends at entry {} but entry {} was expected: entries were "
                                             "removed from the end",
                                             last_seq, expect->seq));
    } else {
      auto e = c.prepare("SELECT hash FROM journal WHERE seq = ?");
      e.bind(1, expect->seq);
      if (!e.step() || e.text(0) != expect->hash)
        problems.add(expect->seq, fmt::format("entry {} differs from the expected hash", expect->seq));
    }
  }

  // Record rows: each must match the hash its latest journal entry holds.
  std::int64_t rows_checked = 0, rows_total = 0;
  if (progress)
    for (const auto& table : audited_tables()) rows_total += total_of("SELECT count(*) FROM " + table);
  for (const auto& table : audited_tables()) {
    std::unordered_map<std::int64_t, std::pair<std::string, std::int64_t>> latest;
    auto jr = c.prepare("SELECT row_id, row_hash, seq FROM journal_rows WHERE tbl = ? ORDER BY row_id, seq");
    jr.bind(1, table);
    while (jr.step()) latest[jr.int64(0)] = {jr.text(1), jr.int64(2)};
    auto rs = c.prepare("SELECT rowid, * FROM " + table);
    while (rs.step()) {
      if (progress && ++rows_checked % kProgressEvery == 0) progress("records", rows_checked, rows_total);
      const std::int64_t id = rs.int64(0);
      const auto it = latest.find(id);
      if (it == latest.end()) {
        problems.add(std::nullopt, fmt::format("{} row {} is in no journal entry (inserted outside the station)", table, id));
        continue;
      }
      if (hash_current_row(rs.raw(), 1) != it->second.first)
        problems.add(it->second.second, fmt::format("{} row {} differs from what entry {} recorded (changed outside "
                                                    "the station)",
                                                    table, id, it->second.second));
      latest.erase(it);
    }
    for (const auto& [id, h] : latest)
      if (h.first != "deleted")
        problems.add(h.second, fmt::format("{} row {} recorded by entry {} is gone (deleted outside the station)", table,
                                           id, h.second));
  }

  if (progress) progress("records", rows_checked, rows_total);

  if (problems.first()) {
    report.ok = false;
    report.first_bad_seq = problems.first()->seq;
    report.reason = problems.first()->reason;
  }
  return report;
}

}  // namespace station::db
