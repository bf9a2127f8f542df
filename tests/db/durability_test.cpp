// Durability of the journal: power loss simulated by an SQLite VFS that forgets every
// write not followed by an fsync, and SIGKILL of a process in the middle of appending.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "db/highwater.hpp"
#include "db/journal.hpp"
#include "db/records.hpp"
#include "db_support.hpp"
#include "support.hpp"

namespace station::db {
namespace {

// ---------------------------------------------------------------------------------------
// A VFS that keeps, per file, the bytes every unsynced write overwrote, so a simulated
// power loss can put back exactly what a disk would still hold: everything up to each
// file's last successful xSync. After the power loss every I/O call fails.

struct Undo {
  sqlite3_int64 offset;
  std::string old_bytes;   // what was there before (may be shorter than the write)
  sqlite3_int64 old_size;  // the file size before the write
};

std::mutex g_mutex;
std::map<std::string, std::vector<Undo>> g_undo;
std::atomic<bool> g_dead{false};
sqlite3_vfs* g_real_vfs = nullptr;

struct PlFile {
  sqlite3_file base;
  sqlite3_file* real;
  std::string* path;
};

sqlite3_file* real(sqlite3_file* f) { return reinterpret_cast<PlFile*>(f)->real; }

sqlite3_int64 file_size(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return 0;
  const auto size = ::lseek(fd, 0, SEEK_END);
  ::close(fd);
  return size;
}

// Called with g_mutex held.
void remember(const std::string& path, sqlite3_int64 offset, int amount) {
  Undo u{offset, std::string(static_cast<std::size_t>(amount), '\0'), file_size(path)};
  const int fd = ::open(path.c_str(), O_RDONLY);
  ssize_t n = fd >= 0 ? ::pread(fd, u.old_bytes.data(), static_cast<std::size_t>(amount), offset) : 0;
  if (fd >= 0) ::close(fd);
  u.old_bytes.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  g_undo[path].push_back(std::move(u));
}

int pl_close(sqlite3_file* f) {
  auto* p = reinterpret_cast<PlFile*>(f);
  const int rc = p->real->pMethods != nullptr ? p->real->pMethods->xClose(p->real) : SQLITE_OK;
  delete p->path;
  return rc;
}
int pl_read(sqlite3_file* f, void* buf, int n, sqlite3_int64 off) {
  if (g_dead) return SQLITE_IOERR_READ;
  return real(f)->pMethods->xRead(real(f), buf, n, off);
}
// Writes longer than one 4 KiB frame that reached a WAL: the station's gathered runs.
std::atomic<int> g_gathered_wal_writes{0};

// Writes, truncations and syncs hold g_mutex, so the power loss happens between them,
// never in the middle of one.
int pl_write(sqlite3_file* f, const void* buf, int n, sqlite3_int64 off) {
  const std::lock_guard lock(g_mutex);
  if (g_dead) return SQLITE_IOERR_WRITE;
  const auto& path = *reinterpret_cast<PlFile*>(f)->path;
  if (n > 4096 + 24 && path.ends_with("-wal")) ++g_gathered_wal_writes;
  remember(*reinterpret_cast<PlFile*>(f)->path, off, n);
  return real(f)->pMethods->xWrite(real(f), buf, n, off);
}
int pl_truncate(sqlite3_file* f, sqlite3_int64 size) {
  const std::lock_guard lock(g_mutex);
  if (g_dead) return SQLITE_IOERR_TRUNCATE;
  const auto& path = *reinterpret_cast<PlFile*>(f)->path;
  const auto old = file_size(path);
  if (old > size) remember(path, size, static_cast<int>(old - size));
  return real(f)->pMethods->xTruncate(real(f), size);
}
void power_loss_locked();
// Set: the next sync of a WAL is where the machine dies, before that sync completes.
std::atomic<bool> g_die_at_wal_sync{false};

int pl_sync(sqlite3_file* f, int flags) {
  const std::lock_guard lock(g_mutex);
  if (g_dead) return SQLITE_IOERR_FSYNC;
  if (g_die_at_wal_sync && reinterpret_cast<PlFile*>(f)->path->ends_with("-wal")) {
    g_die_at_wal_sync = false;
    power_loss_locked();
    return SQLITE_IOERR_FSYNC;
  }
  const int rc = real(f)->pMethods->xSync(real(f), flags);
  if (rc == SQLITE_OK) g_undo.erase(*reinterpret_cast<PlFile*>(f)->path);  // durable now
  return rc;
}
int pl_size(sqlite3_file* f, sqlite3_int64* s) { return real(f)->pMethods->xFileSize(real(f), s); }
int pl_lock(sqlite3_file* f, int l) { return real(f)->pMethods->xLock(real(f), l); }
int pl_unlock(sqlite3_file* f, int l) { return real(f)->pMethods->xUnlock(real(f), l); }
int pl_check(sqlite3_file* f, int* out) { return real(f)->pMethods->xCheckReservedLock(real(f), out); }
int pl_fcntl(sqlite3_file* f, int op, void* arg) { return real(f)->pMethods->xFileControl(real(f), op, arg); }
int pl_sector(sqlite3_file* f) { return real(f)->pMethods->xSectorSize(real(f)); }
int pl_caps(sqlite3_file* f) { return real(f)->pMethods->xDeviceCharacteristics(real(f)); }
int pl_shm_map(sqlite3_file* f, int pg, int sz, int ext, void volatile** pp) {
  if (g_dead) return SQLITE_IOERR_SHMMAP;
  return real(f)->pMethods->xShmMap(real(f), pg, sz, ext, pp);
}
int pl_shm_lock(sqlite3_file* f, int off, int n, int flags) { return real(f)->pMethods->xShmLock(real(f), off, n, flags); }
void pl_shm_barrier(sqlite3_file* f) { real(f)->pMethods->xShmBarrier(real(f)); }
int pl_shm_unmap(sqlite3_file* f, int del) { return real(f)->pMethods->xShmUnmap(real(f), del); }

const sqlite3_io_methods kMethods = {2,          pl_close,  pl_read,   pl_write,  pl_truncate,    pl_sync,
                                     pl_size,    pl_lock,   pl_unlock, pl_check,  pl_fcntl,       pl_sector,
                                     pl_caps,    pl_shm_map, pl_shm_lock, pl_shm_barrier, pl_shm_unmap,
                                     nullptr,    nullptr};

int pl_open(sqlite3_vfs* vfs, const char* name, sqlite3_file* f, int flags, int* out_flags) {
  auto* p = reinterpret_cast<PlFile*>(f);
  p->real = reinterpret_cast<sqlite3_file*>(p + 1);
  p->path = new std::string(name != nullptr ? name : "");
  const int rc = g_real_vfs->xOpen(g_real_vfs, name, p->real, flags, out_flags);
  p->base.pMethods = rc == SQLITE_OK && p->real->pMethods != nullptr ? &kMethods : nullptr;
  if (p->base.pMethods == nullptr) delete p->path;
  (void)vfs;
  return rc;
}

sqlite3_vfs g_vfs;

// Installed as the default VFS before the first connection of this process, so that the
// station's own VFS (db/src/wal_gather.cpp), registered at the first connection, sits on top
// of it: the power loss then forgets what the station's writes left unsynced, gathered or not.
bool install_powerloss_vfs() {
  g_real_vfs = sqlite3_vfs_find(nullptr);
  g_vfs = *g_real_vfs;
  g_vfs.zName = "powerloss";
  g_vfs.szOsFile = static_cast<int>(sizeof(PlFile)) + g_real_vfs->szOsFile;
  g_vfs.xOpen = pl_open;
  g_vfs.pAppData = nullptr;
  return sqlite3_vfs_register(&g_vfs, 1) == SQLITE_OK;
}
const bool g_installed = install_powerloss_vfs();

// The machine dies: every write since each file's last sync is lost.
void power_loss_locked() {
  g_dead = true;
  for (auto& [path, undos] : g_undo) {
    const int fd = ::open(path.c_str(), O_WRONLY);
    if (fd < 0) continue;
    for (auto it = undos.rbegin(); it != undos.rend(); ++it) {
      if (!it->old_bytes.empty()) (void)::pwrite(fd, it->old_bytes.data(), it->old_bytes.size(), it->offset);
      if (::ftruncate(fd, it->old_size) != 0) break;
    }
    ::close(fd);
  }
  g_undo.clear();
}
void power_loss() {
  const std::lock_guard lock(g_mutex);
  power_loss_locked();
}

TEST(JournalDurability, EveryAcknowledgedEntrySurvivesPowerLoss) {
  test::TempDir dir;
  const auto path = dir / "station.db";
  ASSERT_TRUE(g_installed);
  { Records r(path); }
  ASSERT_STREQ(sqlite3_vfs_find(nullptr)->zName, gathering_vfs());
  std::mutex acked_mutex;
  std::vector<Entry> acked;
  {
    auto journal = std::make_unique<Journal>(path, "st-1");
    std::vector<std::thread> writers;
    std::atomic<bool> stop{false};
    for (int t = 0; t < 4; ++t)
      writers.emplace_back([&, t] {
        for (int k = 0; !stop; ++k) {
          try {
            const auto e = journal->commit({"op", "note", "w" + std::to_string(t), {{"k", k}}});
            const std::lock_guard lock(acked_mutex);
            acked.push_back(e);
          } catch (const Error&) {
            return;  // the machine is dead: not acknowledged
          }
        }
      });
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      const std::lock_guard lock(acked_mutex);
      if (acked.size() >= 300) break;
    }
    power_loss();
    stop = true;
    for (auto& w : writers) w.join();
    journal.reset();
  }
  g_dead = false;  // the VFS stays, beneath the station's, and passes everything through
  EXPECT_GT(g_gathered_wal_writes.load(), 0) << "the station's gathered WAL writes did not pass through the power loss";
  std::filesystem::remove(dir / "station.db-shm");

  Records r(path, true);
  const auto report = verify_journal(r.connection());
  EXPECT_TRUE(report.ok) << report.reason;
  ASSERT_GE(acked.size(), 300u);
  EXPECT_GE(report.entries, static_cast<std::int64_t>(acked.size()));
  auto st = r.connection().prepare("SELECT hash FROM journal WHERE seq = ?");
  for (const auto& e : acked) {
    st.bind(1, e.seq);
    ASSERT_TRUE(st.step()) << "acknowledged entry " << e.seq << " was lost";
    EXPECT_EQ(st.text(0), e.hash);
    st.reset();
  }
}

// A checkpoint signed in the same transaction as an allocation, and the machine dies before
// that transaction is durable: the high-water marks beside the database must not claim the
// allocation (they would make the station refuse to allocate, as if restored from a backup).
TEST(JournalDurability, HighWaterMarksNeverRunAheadOfTheDatabase) {
  test::TempDir dir;
  const auto path = dir / "station.db";
  ASSERT_TRUE(g_installed);
  { Records r(path); }

  // The signer runs inside the checkpoint's transaction: it notes whether the allocation
  // is in that transaction (applied, not yet committed) and arms the power loss.
  struct DyingSigner final : CheckpointSigner {
    test::SoftwareAuditSigner inner;
    std::atomic<bool>* allocated;
    std::atomic<bool>* allocation_durable;
    bool same_transaction = false;
    Bytes sign(ByteView m) override {
      same_transaction = *allocated && !*allocation_durable;
      if (same_transaction) g_die_at_wal_sync = true;
      return inner.sign(m);
    }
    std::string signer_sha256() override { return inner.signer_sha256(); }
  };
  std::atomic<bool> allocated{false}, durable{false};
  DyingSigner signer;
  signer.allocated = &allocated;
  signer.allocation_durable = &durable;
  auto count = [](Connection& c, std::int64_t next) {
    c.exec("INSERT INTO serial_counters(prefix, next) VALUES('HW-', " + std::to_string(next) +
           ") ON CONFLICT(prefix) DO UPDATE SET next = excluded.next");
    auto st = c.prepare("SELECT rowid FROM serial_counters WHERE prefix = 'HW-'");
    st.step();
    return std::vector<RowRef>{{"serial_counters", st.int64(0)}};
  };
  {
    Journal journal(path, "st-1", &signer, CheckpointPolicy{1000000, std::chrono::hours(1), false});
    journal.commit({"op", "ca.recorded", "ca:audit", {}},
                   [&](Connection& c) { return std::vector<RowRef>{insert_ca(c, test::audit_record(signer.inner))}; });
    journal.commit({"op", "serial.reserved", "batch:1", {{"next", 5}}}, [&](Connection& c) { return count(c, 5); });
    journal.checkpoint();  // marks: HW- 5, durable
    ASSERT_EQ(read_highwater(highwater_path(path))->counters.at("HW-"), 5);

    // Hold the writer in a unit of its own while the allocation and a checkpoint queue
    // behind it, so both go into the next transaction.
    std::promise<void> entered, release;
    auto released = release.get_future().share();
    journal.commit_async({{EntryRequest{"op", "hold", "batch:1", {}},
                           [&](Connection&) {
                             entered.set_value();
                             released.wait();
                             return std::vector<RowRef>{};
                           }}},
                         [](std::vector<Entry>, std::exception_ptr) {});
    entered.get_future().wait();
    std::exception_ptr allocation_error;
    std::promise<void> allocation_done;
    journal.commit_async({{EntryRequest{"op", "serial.reserved", "batch:1", {{"next", 9}}},
                           [&](Connection& c) {
                             allocated = true;
                             return count(c, 9);
                           }}},
                         [&](std::vector<Entry>, std::exception_ptr x) {
                           allocation_error = x;
                           durable = !x;
                           allocation_done.set_value();
                         });
    std::exception_ptr checkpoint_error;
    std::thread checkpointer([&] {
      try {
        journal.checkpoint();
      } catch (...) {
        checkpoint_error = std::current_exception();
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the checkpoint queues
    release.set_value();
    checkpointer.join();
    allocation_done.get_future().wait();
    ASSERT_TRUE(signer.same_transaction) << "the checkpoint did not share the allocation's transaction";
    EXPECT_TRUE(allocation_error) << "the allocation was acknowledged although the machine died before its sync";
    EXPECT_TRUE(checkpoint_error);
  }
  g_dead = false;
  std::filesystem::remove(dir / "station.db-shm");

  Records r(path, true);
  EXPECT_EQ(read_counters(r.connection()).at("HW-"), 5) << "the allocation outlived the power loss";
  const auto marks = read_highwater(highwater_path(path));
  ASSERT_TRUE(marks);
  EXPECT_EQ(marks->counters.at("HW-"), 5) << "the marks claim an allocation the database does not hold";
  EXPECT_TRUE(counters_below(r.connection(), *marks).empty());
  const auto report = verify_journal(r.connection());
  EXPECT_TRUE(report.ok) << report.reason;
}

// A separate process appends and prints every acknowledged entry; it is SIGKILLed at a
// random moment; everything it acknowledged must be there and the chain must verify.
TEST(JournalDurability, EveryAcknowledgedEntrySurvivesSigkill) {
  std::mt19937 rng(std::random_device{}());
  for (int round = 0; round < 5; ++round) {
    test::TempDir dir;
    const auto path = dir / "station.db";
    { Records r(path); }
    int out[2];
    ASSERT_EQ(::pipe(out), 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::dup2(out[1], 1);
      ::close(out[0]);
      const std::string bin = test::built_binary("journal_writer").string();
      ::execl(bin.c_str(), bin.c_str(), path.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(out[1]);
    const std::size_t kill_after = 20 + rng() % 200;
    std::string text;
    char buf[4096];
    std::size_t lines = 0;
    while (lines < kill_after) {
      const ssize_t n = ::read(out[0], buf, sizeof buf);
      if (n <= 0) break;
      text.append(buf, static_cast<std::size_t>(n));
      lines = static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
    }
    ::kill(pid, SIGKILL);
    // Whatever it printed before dying was acknowledged too.
    for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
    ::close(out[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the writer ended by itself";

    Records r(path, true);
    const auto report = verify_journal(r.connection());
    EXPECT_TRUE(report.ok) << report.reason;
    std::istringstream in(text);
    std::int64_t seq = 0;
    std::string hash;
    std::size_t checked = 0;
    auto st = r.connection().prepare("SELECT hash FROM journal WHERE seq = ?");
    while (in >> seq >> hash) {
      st.bind(1, seq);
      ASSERT_TRUE(st.step()) << "acknowledged entry " << seq << " was lost (round " << round << ")";
      EXPECT_EQ(st.text(0), hash);
      st.reset();
      ++checked;
    }
    EXPECT_GE(checked, kill_after);
  }
}

}  // namespace
}  // namespace station::db
