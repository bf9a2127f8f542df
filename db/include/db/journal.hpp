// The tamper-evident audit journal (DESIGN.md "The audit journal"; docs/records.md).
//
// Every entry: seq (1, 2, 3, ... without gaps), time, station id, actor, action, subject,
// details (JSON), records_hash (over the record rows the entry created or changed, each
// with the hash of the row after the change), prev_hash, and its own hash over a
// canonical, length-prefixed encoding of all of these. Record changes and the entry that
// describes them commit in one SQLite transaction (WAL, synchronous=FULL), so an entry is
// durable before commit() returns. Concurrent callers share one transaction and one fsync
// (group commit). Checkpoints sign (seq, hash) with the HSM-held audit key.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <filesystem>
#include <functional>
#include <string_view>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/bytes.hpp"
#include "db/highwater.hpp"
#include "db/sqlite.hpp"

namespace station::db {

// A record row an entry created or changed (or deleted).
struct RowRef {
  std::string table;
  std::int64_t id = 0;
  bool deleted = false;
};

struct EntryRequest {
  std::string actor;
  std::string action;   // e.g. "device.issued", "ca.created", "station.init"
  std::string subject;  // e.g. "device:ACME-1", "ca:<key_id>", "batch:B7"
  nlohmann::json details = nlohmann::json::object();
};

struct Entry {
  std::int64_t seq = 0;
  std::string time, station_id, actor, action, subject, details, records_hash, prev_hash, hash;
};

// The journal's columns in Entry order, and an Entry read from a statement that selected
// them (starting at column 0).
inline constexpr const char* kEntryColumns =
    "seq, time, station_id, actor, action, subject, details, records_hash, prev_hash, hash";
Entry read_entry(const Statement& st);

struct RowHash {
  std::string table;
  std::int64_t id = 0;
  std::string hash;  // "deleted" for a deleted row
};

struct Checkpoint {
  std::int64_t seq = 0;
  std::string hash, time, station_id, signer_sha256;
  Bytes signature;
};

// Record changes made on the writer's connection inside the entry's transaction; returns
// the rows touched. Throwing rolls back the changes and fails only this entry.
using Mutation = std::function<std::vector<RowRef>(Connection&)>;

// Signs checkpoint messages with the audit key (the station backs it with the HSM).
class CheckpointSigner {
 public:
  virtual ~CheckpointSigner() = default;
  virtual Bytes sign(ByteView message) = 0;   // DER ECDSA-Sig-Value over SHA-256(message)
  virtual std::string signer_sha256() = 0;    // SHA-256 of the audit certificate's DER
};

struct CheckpointPolicy {
  std::int64_t every_entries = 1000;
  std::chrono::seconds every = std::chrono::seconds(60);
  bool on_close = true;  // sign the unsigned tail when the journal closes
};

// The tables whose rows the journal vouches for.
const std::vector<std::string>& audited_tables();

// The hash of one record row now: SHA-256 over its column names and typed values.
std::string row_hash(Connection& c, const std::string& table, std::int64_t id);
// The same hash from values (as exported in a bundle): {"col": value, ...} in column order,
// blobs as {"b64": "..."}.
std::string row_hash_of_values(const std::vector<std::pair<std::string, nlohmann::json>>& columns);
// A row's column names and values, for export.
std::vector<std::pair<std::string, nlohmann::json>> row_values(Connection& c, const std::string& table, std::int64_t id);

std::string entry_hash(const Entry& e);
std::string records_hash(std::vector<RowHash> rows);
Bytes checkpoint_message(const std::string& station_id, std::int64_t seq, const std::string& hash, const std::string& time);

class Journal {
 public:
  Journal(const std::filesystem::path& db_path, std::string station_id, CheckpointSigner* signer = nullptr,
          CheckpointPolicy policy = {});
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;
  ~Journal();

  using Request = std::pair<EntryRequest, Mutation>;
  // The outcome of a unit (commit_async): its entries once durable, or the failure that
  // rolled all of them back.
  using Completion = std::function<void(std::vector<Entry>, std::exception_ptr)>;

  // Applies `mutation` and appends the entry in one transaction; returns once durable.
  Entry commit(EntryRequest request, Mutation mutation = {});
  // Appends many entries in order, up to 512 to a transaction (bulk imports, the benchmark's
  // records at scale); returns once all are durable. Each fails alone like commit(); the
  // first failure is rethrown after every entry has its outcome.
  std::vector<Entry> commit_all(std::vector<Request> requests);
  // Appends the entries in order as one unit: all of them are durable or none is (a
  // failing mutation rolls back the unit's earlier entries too, and is rethrown).
  std::vector<Entry> commit_together(std::vector<Request> requests);
  // commit_together without waiting: returns at once; `done` runs on the writer thread
  // once the unit is durable or has failed (keep it short: hand the outcome over and return;
  // it must not call into the journal). Units complete in the order they were queued, so a
  // unit that completed durably implies every unit queued before it has completed.
  //
  // `applied`, when given, runs on the writer thread as soon as the unit's mutations and
  // entries are in the writer's open transaction, before its commit: what the mutations
  // produced may be read then, but nothing is durable, and `done` still brings the outcome
  // (a unit applied may yet fail with its transaction). Every unit of a later transaction is
  // applied after this unit's `done` has run, so a unit queued after `applied` can refuse
  // (throw in its mutation) when this one did not land.
  void commit_async(std::vector<Request> requests, Completion done, std::function<void()> applied = {});
  // Signs a checkpoint over the last entry now (Errc::not_found if the journal is empty).
  Checkpoint checkpoint();

  std::optional<Entry> last();

  // What the writer has done since the journal opened: committed transactions (each one
  // fsync), the units and entries in them, and the database pages it wrote to the WAL
  // (SQLITE_DBSTATUS_CACHE_WRITE). The benchmark divides them by devices.
  struct Counters {
    std::uint64_t transactions = 0;
    std::uint64_t units = 0;
    std::uint64_t entries = 0;
    std::uint64_t pages_written = 0;
  };
  Counters counters();

 private:
  struct Pending;
  void writer_loop();
  void run_batch(std::vector<std::unique_ptr<Pending>>& batch);
  void enqueue(std::unique_ptr<Pending> p);
  Entry append_locked(const EntryRequest& r, const std::vector<RowRef>& rows);
  Checkpoint checkpoint_locked();
  void write_marks_due();
  void reload_tail();

  std::string station_id_;
  CheckpointSigner* signer_;
  CheckpointPolicy policy_;
  Connection conn_;
  std::mutex conn_mutex_;  // the connection is used by the writer thread and by last()
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Pending>> queue_;
  bool stopping_ = false;
  // Writer-thread state.
  std::int64_t last_seq_ = 0;
  std::string last_hash_;
  std::string last_time_;
  std::int64_t last_checkpoint_seq_ = 0;
  std::chrono::steady_clock::time_point last_checkpoint_at_;
  Counters counters_;  // under conn_mutex_
  std::optional<HighWater> marks_due_;  // a checkpoint's marks, written once it has committed
  std::thread writer_;
};

// What `station audit verify` reports.
struct VerifyReport {
  bool ok = true;
  std::int64_t entries = 0;
  std::int64_t checkpoints = 0;
  std::int64_t unsigned_tail = 0;          // entries after the last valid checkpoint
  std::optional<std::int64_t> first_bad_seq;
  std::string reason;
};

struct Expectation {
  std::int64_t seq = 0;
  std::string hash;
};

// How far a long verification is: `done` of `total` in `phase` ("entries": the chain walk,
// total = the last seq; "records": rows checked, total = rows in the audited tables). Called
// every 65,536 items and once at the end of each phase.
using VerifyProgress = std::function<void(std::string_view phase, std::int64_t done, std::int64_t total)>;

// Recomputes the chain, checks every checkpoint signature against the audit certificate
// it names (which must be in ca_certificates), and checks that every record row matches
// the hash its latest journal entry holds.
VerifyReport verify_journal(Connection& c, const std::optional<Expectation>& expect = std::nullopt,
                            const VerifyProgress& progress = {});

// Verifies an ECDSA signature over SHA-256(message) with the certificate's public key.
bool verify_with_certificate(ByteView cert_der, ByteView message, ByteView signature);

}  // namespace station::db
