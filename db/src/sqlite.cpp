#include "db/sqlite.hpp"

#include <spdlog/spdlog.h>

#include <cctype>
#include <unordered_map>

#include <fmt/format.h>

namespace station::db {

// Compiled statements by SQL text, idle ones only: a statement in use is taken out, so two
// live statements never share one. Bounded, since some callers build SQL from filters.
struct StatementCache {
  static constexpr std::size_t kMax = 128;
  std::unordered_map<std::string, sqlite3_stmt*> idle;

  sqlite3_stmt* take(const std::string& sql) {
    const auto it = idle.find(sql);
    if (it == idle.end()) return nullptr;
    sqlite3_stmt* st = it->second;
    idle.erase(it);
    return st;
  }
  void give_back(sqlite3_stmt* st) noexcept {
    ::sqlite3_reset(st);  // ends its read of the database; an error was reported by step()
    ::sqlite3_clear_bindings(st);
    try {
      if (idle.size() < kMax && idle.emplace(::sqlite3_sql(st), st).second) return;
    } catch (...) {
    }
    ::sqlite3_finalize(st);
  }
  ~StatementCache() {
    for (auto& [sql, st] : idle) ::sqlite3_finalize(st);
  }
};

void throw_sqlite(sqlite3* db, int rc, std::string_view what) {
  const char* msg = db != nullptr ? ::sqlite3_errmsg(db) : ::sqlite3_errstr(rc);
  const int primary = rc & 0xff;
  const Errc code = primary == SQLITE_CONSTRAINT ? Errc::constraint_violation
                    : primary == SQLITE_BUSY || primary == SQLITE_LOCKED ? Errc::busy
                    : primary == SQLITE_CANTOPEN || primary == SQLITE_PERM ? Errc::permission_denied
                                                                         : Errc::db_error;
  throw Error(code, fmt::format("{}: {}", what, msg), rc);
}

Connection::Connection(const std::filesystem::path& path, bool read_only) {
  const int flags = read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  (void)gathering_vfs();  // registered as the default VFS before the first connection
  const int rc = ::sqlite3_open_v2(path.c_str(), &db_, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    const std::string msg = db_ != nullptr ? ::sqlite3_errmsg(db_) : ::sqlite3_errstr(rc);
    ::sqlite3_close(db_);
    db_ = nullptr;
    throw Error(rc == SQLITE_CANTOPEN ? Errc::not_found : Errc::db_error,
                fmt::format("cannot open database {}: {}", path.string(), msg), rc);
  }
  cache_ = std::make_unique<StatementCache>();
  ::sqlite3_extended_result_codes(db_, 1);
  ::sqlite3_busy_timeout(db_, 10000);
  if (!read_only) exec("PRAGMA journal_mode=WAL");
  // Readers look up a few rows by index each: a small page cache (the OS caches the file
  // too), so a station's many reader connections keep flat memory as the records grow.
  else exec("PRAGMA cache_size=-512");
  // temp_store=MEMORY: the sub-journal of a savepoint (the journal runs each unit in one)
  // stays in memory; otherwise SQLite spills it past 64 KiB to a temp file it creates and
  // unlinks in /var/tmp, once per transaction on the journal's writer.
  exec("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY");
}

Connection::Connection(Connection&& other) noexcept
    : above_highwater(other.above_highwater), db_(other.db_), cache_(std::move(other.cache_)) {
  other.db_ = nullptr;
}

Connection::~Connection() {
  cache_.reset();  // finalized before the close, which refuses while statements remain
  if (db_ != nullptr) {
    const int rc = ::sqlite3_close(db_);
    if (rc != SQLITE_OK) spdlog::warn("closing the database: {}", ::sqlite3_errstr(rc));
  }
}

namespace {

[[noreturn]] void throw_exec(int rc, const std::string& msg) {
  const int primary = rc & 0xff;
  throw Error(primary == SQLITE_CONSTRAINT ? Errc::constraint_violation : Errc::db_error,
              fmt::format("database: {}", msg), rc);
}

}  // namespace

void Connection::exec(const std::string& sql) {
  // One statement (BEGIN, COMMIT, SAVEPOINT ...): run it through the cache.
  sqlite3_stmt* st = cache_->take(sql);
  if (st == nullptr) {
    const char* tail = nullptr;
    const int rc = ::sqlite3_prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()), &st, &tail);
    if (rc != SQLITE_OK) {
      ::sqlite3_finalize(st);
      throw_exec(rc, ::sqlite3_errmsg(db_));
    }
    bool single = st != nullptr;
    for (const char* p = tail; single && p != nullptr && *p != '\0'; ++p)
      single = std::isspace(static_cast<unsigned char>(*p)) != 0;
    if (!single) {
      ::sqlite3_finalize(st);
      char* err = nullptr;
      const int erc = ::sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
      if (erc != SQLITE_OK) {
        const std::string msg = err != nullptr ? err : ::sqlite3_errstr(erc);
        ::sqlite3_free(err);
        throw_exec(erc, msg);
      }
      return;
    }
  }
  int rc = SQLITE_ROW;
  while (rc == SQLITE_ROW) rc = ::sqlite3_step(st);
  if (rc != SQLITE_DONE) {
    const std::string msg = ::sqlite3_errmsg(db_);
    cache_->give_back(st);
    throw_exec(rc, msg);
  }
  cache_->give_back(st);
}

Statement Connection::prepare(const std::string& sql) {
  if (sqlite3_stmt* st = cache_->take(sql)) return Statement(db_, st, cache_.get());
  sqlite3_stmt* st = nullptr;
  const int rc = ::sqlite3_prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()), &st, nullptr);
  if (rc != SQLITE_OK) {
    ::sqlite3_finalize(st);
    throw_sqlite(db_, rc, "preparing SQL");
  }
  return Statement(db_, st, cache_.get());
}

int Connection::user_version() {
  auto st = prepare("PRAGMA user_version");
  st.step();
  return static_cast<int>(st.int64(0));
}

Statement::Statement(sqlite3* db, const std::string& sql) : db_(db) {
  const int rc = ::sqlite3_prepare_v2(db, sql.c_str(), static_cast<int>(sql.size()), &stmt_, nullptr);
  if (rc != SQLITE_OK) throw_sqlite(db, rc, "preparing SQL");
}

Statement::~Statement() {
  if (stmt_ == nullptr) return;
  if (cache_ != nullptr) cache_->give_back(stmt_);
  else ::sqlite3_finalize(stmt_);
}

Statement& Statement::bind(int index, std::int64_t v) {
  const int rc = ::sqlite3_bind_int64(stmt_, index, v);
  if (rc != SQLITE_OK) throw_sqlite(db_, rc, "binding");
  return *this;
}

Statement& Statement::bind(int index, std::string_view v) {
  const int rc = ::sqlite3_bind_text(stmt_, index, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  if (rc != SQLITE_OK) throw_sqlite(db_, rc, "binding");
  return *this;
}

Statement& Statement::bind(int index, ByteView v) {
  const int rc = ::sqlite3_bind_blob(stmt_, index, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  if (rc != SQLITE_OK) throw_sqlite(db_, rc, "binding");
  return *this;
}

Statement& Statement::bind(int index, const std::optional<std::string>& v) {
  return v ? bind(index, std::string_view(*v)) : bind_null(index);
}

Statement& Statement::bind_null(int index) {
  const int rc = ::sqlite3_bind_null(stmt_, index);
  if (rc != SQLITE_OK) throw_sqlite(db_, rc, "binding");
  return *this;
}

bool Statement::step() {
  const int rc = ::sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  throw_sqlite(db_, rc, "database");
}

void Statement::run() {
  while (step()) {
  }
}

void Statement::reset() {
  ::sqlite3_reset(stmt_);
  ::sqlite3_clear_bindings(stmt_);
}

std::int64_t Statement::int64(int col) const { return ::sqlite3_column_int64(stmt_, col); }

std::string Statement::text(int col) const {
  const auto* p = ::sqlite3_column_text(stmt_, col);
  return p != nullptr ? std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(::sqlite3_column_bytes(stmt_, col)))
                      : std::string();
}

std::optional<std::string> Statement::opt_text(int col) const {
  if (is_null(col)) return std::nullopt;
  return text(col);
}

Bytes Statement::blob(int col) const {
  const auto* p = static_cast<const std::uint8_t*>(::sqlite3_column_blob(stmt_, col));
  const auto n = static_cast<std::size_t>(::sqlite3_column_bytes(stmt_, col));
  return p != nullptr ? Bytes(p, p + n) : Bytes();
}

bool Statement::is_null(int col) const { return ::sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

Transaction::Transaction(Connection& c) : c_(c) { c_.exec("BEGIN IMMEDIATE"); }

Transaction::~Transaction() {
  if (!done_) {
    try {
      c_.exec("ROLLBACK");
    } catch (const Error& e) {
      spdlog::warn("rollback failed: {}", e.what());
    }
  }
}

void Transaction::commit() {
  c_.exec("COMMIT");
  done_ = true;
}

}  // namespace station::db
