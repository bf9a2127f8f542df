// Owners for an SQLite connection and its statements (pattern: Botan utils/sqlite3), and
// the one place an SQLite result code becomes a station::Error.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/bytes.hpp"
#include "common/error.hpp"

namespace station::db {

// Throws Error(Errc::db_error or Errc::constraint_violation, "<what>: <sqlite message>", rc).
[[noreturn]] void throw_sqlite(sqlite3* db, int rc, std::string_view what);

class Statement;
struct StatementCache;

// Registers (once) and names the VFS every connection opens with (db/src/wal_gather.cpp):
// the platform's default, with the WAL frames of each commit gathered into one write before
// its fsync. It becomes SQLite's default VFS. nullptr if it could not be registered
// (connections then use the default VFS as it is).
const char* gathering_vfs();
// Its counts since the process started: WAL writes SQLite made, and writes that reached
// the file.
struct WalWrites {
  std::uint64_t writes = 0;
  std::uint64_t flushes = 0;
};
WalWrites wal_writes();

// A connection in WAL mode with synchronous=FULL and foreign keys on. Statements made by
// prepare() (and single statements run by exec()) are kept compiled after use and reused
// for the same SQL text: parsing and planning cost more than most of the station's queries.
class Connection {
 public:
  explicit Connection(const std::filesystem::path& path, bool read_only = false);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  Connection(Connection&& other) noexcept;
  ~Connection();

  sqlite3* raw() const noexcept { return db_; }
  void exec(const std::string& sql);
  Statement prepare(const std::string& sql);
  std::int64_t last_insert_rowid() const noexcept { return ::sqlite3_last_insert_rowid(db_); }
  int user_version();

  // Set by db::require_above_highwater once this connection's counters were found above
  // their marks (counters only grow, so the check is made once per connection).
  bool above_highwater = false;

 private:
  sqlite3* db_ = nullptr;
  std::unique_ptr<StatementCache> cache_;
};

class Statement {
 public:
  Statement(sqlite3* db, const std::string& sql);
  // A statement of `cache` (compiled or reused); reset and returned to it on destruction.
  Statement(sqlite3* db, sqlite3_stmt* stmt, StatementCache* cache) noexcept : db_(db), stmt_(stmt), cache_(cache) {}
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement(Statement&& other) noexcept : db_(other.db_), stmt_(other.stmt_), cache_(other.cache_) {
    other.stmt_ = nullptr;
  }
  ~Statement();

  // Binding by 1-based index; std::nullopt binds NULL.
  Statement& bind(int index, std::int64_t v);
  Statement& bind(int index, std::string_view v);
  Statement& bind(int index, const char* v) { return bind(index, std::string_view(v)); }
  Statement& bind(int index, const std::string& v) { return bind(index, std::string_view(v)); }
  Statement& bind(int index, ByteView v);
  Statement& bind(int index, const std::optional<std::string>& v);
  Statement& bind_null(int index);

  // Steps once: true when a row is available.
  bool step();
  // Runs to completion (for statements without rows).
  void run();
  void reset();

  std::int64_t int64(int col) const;
  std::string text(int col) const;
  std::optional<std::string> opt_text(int col) const;
  Bytes blob(int col) const;
  bool is_null(int col) const;
  sqlite3_stmt* raw() const noexcept { return stmt_; }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  StatementCache* cache_ = nullptr;
};

// BEGIN IMMEDIATE .. COMMIT, rolled back on destruction unless committed.
class Transaction {
 public:
  explicit Transaction(Connection& c);
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();
  void commit();

 private:
  Connection& c_;
  bool done_ = false;
};

}  // namespace station::db
