// The "station-gather" VFS: the platform's default VFS with one change, for the WAL file of
// a connection that writes. SQLite writes a WAL frame as two pwrite calls (its 24-byte
// header, then the page) and a commit of ~20 pages as ~40 of them before its one fsync;
// here those writes are gathered in memory while they are contiguous and go to the file as
// one pwrite when anything needs the file to hold them:
//
//  - before xSync (a commit with synchronous=FULL, a checkpoint): durability is unchanged,
//    since nothing was durable before the sync either, and a power cut mid-pwrite tears the
//    file as it could tear the many small writes (WAL frames carry checksums and salts, and
//    recovery stops at the first frame that does not match);
//  - before xRead, xTruncate, xFileSize, xFileControl and xClose of that file, and before a
//    write that does not continue the gathered run;
//  - before the connection publishes frames to other connections: SQLite writes the
//    wal-index header only after xShmBarrier on the database file, so a barrier (or an
//    xShmLock) on a database file flushes the run of that connection's WAL first. This
//    matters only for a commit without a sync (the station always syncs); a WAL that cannot
//    be paired with its database file is written through, never gathered.
//
// Everything else goes straight to the default VFS (unix), which owns the files.
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "db/sqlite.hpp"

namespace station::db {
namespace {

constexpr const char* kName = "station-gather";
// A run is at most this long: the unix VFS writes at most 128 KiB - 1 per call (it masks
// the length with 0x1ffff). 30 frames of 4 KiB pages, more than most commits here.
constexpr sqlite3_int64 kMaxGather = 30 * (4096 + 24);

std::atomic<std::uint64_t> g_writes{0};
std::atomic<std::uint64_t> g_flushes{0};

sqlite3_vfs* g_base = nullptr;

struct GatherFile {
  sqlite3_file base;     // our methods
  sqlite3_file* real;    // the default VFS's file, stored right after this struct
  const char* name;      // the name SQLite opened it with (the pager's own string)
  GatherFile* wal;       // a database file: its connection's WAL, while open
  GatherFile* db;        // a WAL: its connection's database file
  bool gather;           // a WAL paired with its database file, opened read-write
  unsigned char* buf;    // kMaxGather bytes, once the WAL is first written
  sqlite3_int64 off;     // the pending run: [off, off + len)
  sqlite3_int64 len;
};

// Open database files, to pair each WAL with its own connection's database file: SQLite
// names a WAL with a string whose sqlite3_filename_database() is the very pointer it gave
// xOpen for that connection's database file.
std::mutex g_files_mutex;
std::vector<GatherFile*> g_db_files;

int flush(GatherFile* f) {
  if (f == nullptr || f->len == 0) return SQLITE_OK;
  const sqlite3_int64 off = f->off;
  const int n = static_cast<int>(f->len);
  f->len = 0;  // on failure the run is gone with it: SQLite sees the write fail
  g_flushes.fetch_add(1, std::memory_order_relaxed);
  return f->real->pMethods->xWrite(f->real, f->buf, n, off);
}

GatherFile* as(sqlite3_file* p) { return reinterpret_cast<GatherFile*>(p); }

int x_close(sqlite3_file* p) {
  GatherFile* f = as(p);
  const int rc = flush(f);
  {
    const std::lock_guard lock(g_files_mutex);
    if (f->db != nullptr) f->db->wal = nullptr;
    if (f->wal != nullptr) f->wal->db = nullptr;  // not expected: SQLite closes the WAL first
    std::erase(g_db_files, f);
  }
  const int rc2 = f->real->pMethods != nullptr ? f->real->pMethods->xClose(f->real) : SQLITE_OK;
  std::free(f->buf);
  f->buf = nullptr;
  return rc != SQLITE_OK ? rc : rc2;
}

int x_read(sqlite3_file* p, void* out, int n, sqlite3_int64 off) {
  GatherFile* f = as(p);
  if (const int rc = flush(f); rc != SQLITE_OK) return rc;
  return f->real->pMethods->xRead(f->real, out, n, off);
}

int x_write(sqlite3_file* p, const void* data, int n, sqlite3_int64 off) {
  GatherFile* f = as(p);
  if (!f->gather) return f->real->pMethods->xWrite(f->real, data, n, off);
  g_writes.fetch_add(1, std::memory_order_relaxed);
  if (f->len > 0 && (off != f->off + f->len || f->len + n > kMaxGather)) {
    if (const int rc = flush(f); rc != SQLITE_OK) return rc;
  }
  if (n > kMaxGather) {
    g_flushes.fetch_add(1, std::memory_order_relaxed);
    return f->real->pMethods->xWrite(f->real, data, n, off);
  }
  if (f->buf == nullptr) {
    f->buf = static_cast<unsigned char*>(std::malloc(kMaxGather));
    if (f->buf == nullptr) {  // no memory to gather in: write through
      g_flushes.fetch_add(1, std::memory_order_relaxed);
      return f->real->pMethods->xWrite(f->real, data, n, off);
    }
  }
  if (f->len == 0) f->off = off;
  std::memcpy(f->buf + f->len, data, static_cast<std::size_t>(n));
  f->len += n;
  return SQLITE_OK;
}

int x_truncate(sqlite3_file* p, sqlite3_int64 size) {
  GatherFile* f = as(p);
  if (const int rc = flush(f); rc != SQLITE_OK) return rc;
  return f->real->pMethods->xTruncate(f->real, size);
}

int x_sync(sqlite3_file* p, int flags) {
  GatherFile* f = as(p);
  if (const int rc = flush(f); rc != SQLITE_OK) return rc;
  return f->real->pMethods->xSync(f->real, flags);
}

int x_file_size(sqlite3_file* p, sqlite3_int64* size) {
  GatherFile* f = as(p);
  if (const int rc = flush(f); rc != SQLITE_OK) return rc;
  return f->real->pMethods->xFileSize(f->real, size);
}

int x_lock(sqlite3_file* p, int level) { return as(p)->real->pMethods->xLock(as(p)->real, level); }
int x_unlock(sqlite3_file* p, int level) { return as(p)->real->pMethods->xUnlock(as(p)->real, level); }
int x_check_reserved(sqlite3_file* p, int* out) {
  return as(p)->real->pMethods->xCheckReservedLock(as(p)->real, out);
}

int x_file_control(sqlite3_file* p, int op, void* arg) {
  GatherFile* f = as(p);
  if (const int rc = flush(f); rc != SQLITE_OK) return rc;
  return f->real->pMethods->xFileControl(f->real, op, arg);
}

int x_sector_size(sqlite3_file* p) { return as(p)->real->pMethods->xSectorSize(as(p)->real); }
int x_device_characteristics(sqlite3_file* p) {
  return as(p)->real->pMethods->xDeviceCharacteristics(as(p)->real);
}

int x_shm_map(sqlite3_file* p, int page, int size, int extend, void volatile** out) {
  return as(p)->real->pMethods->xShmMap(as(p)->real, page, size, extend, out);
}
int x_shm_lock(sqlite3_file* p, int offset, int n, int flags) {
  GatherFile* f = as(p);
  if (const int rc = flush(f->wal); rc != SQLITE_OK) return rc;
  return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}
void x_shm_barrier(sqlite3_file* p) {
  GatherFile* f = as(p);
  // Nothing to report a failure to here. With a sync (the station's every commit) the run
  // was written, or its failure failed the commit, at xSync before this; a commit without a
  // sync whose run cannot be written leaves readers an I/O error on those pages, as a
  // failing disk would.
  (void)flush(f->wal);
  f->real->pMethods->xShmBarrier(f->real);
}
int x_shm_unmap(sqlite3_file* p, int del) { return as(p)->real->pMethods->xShmUnmap(as(p)->real, del); }
int x_fetch(sqlite3_file* p, sqlite3_int64 off, int n, void** out) {
  GatherFile* f = as(p);
  if (const int rc = flush(f); rc != SQLITE_OK) return rc;
  return f->real->pMethods->xFetch(f->real, off, n, out);
}
int x_unfetch(sqlite3_file* p, sqlite3_int64 off, void* ptr) {
  return as(p)->real->pMethods->xUnfetch(as(p)->real, off, ptr);
}

const sqlite3_io_methods kMethods = {
    3,           x_close,       x_read,      x_write,          x_truncate,   x_sync,
    x_file_size, x_lock,        x_unlock,    x_check_reserved, x_file_control, x_sector_size,
    x_device_characteristics, x_shm_map, x_shm_lock, x_shm_barrier, x_shm_unmap, x_fetch,
    x_unfetch};

int x_open(sqlite3_vfs* /*vfs*/, sqlite3_filename name, sqlite3_file* p, int flags, int* out_flags) {
  GatherFile* f = as(p);
  f->base.pMethods = nullptr;
  f->real = reinterpret_cast<sqlite3_file*>(f + 1);
  f->name = name;
  f->wal = nullptr;
  f->db = nullptr;
  f->gather = false;
  f->buf = nullptr;
  f->off = f->len = 0;
  const int rc = g_base->xOpen(g_base, name, f->real, flags, out_flags);
  if (f->real->pMethods == nullptr) return rc;  // not opened (else xClose is still owed)
  f->base.pMethods = &kMethods;
  if (rc != SQLITE_OK || name == nullptr) return rc;
  const std::lock_guard lock(g_files_mutex);
  if ((flags & SQLITE_OPEN_MAIN_DB) != 0) {
    g_db_files.push_back(f);
  } else if ((flags & SQLITE_OPEN_WAL) != 0 && (flags & SQLITE_OPEN_READWRITE) != 0) {
    const char* db_name = ::sqlite3_filename_database(name);
    for (GatherFile* d : g_db_files)
      if (d->name == db_name && d->wal == nullptr) {
        d->wal = f;
        f->db = d;
        f->gather = true;
        break;
      }
  }
  return rc;
}

// The rest of the VFS is the default one's.
int x_delete(sqlite3_vfs*, const char* name, int sync_dir) { return g_base->xDelete(g_base, name, sync_dir); }
int x_access(sqlite3_vfs*, const char* name, int flags, int* out) { return g_base->xAccess(g_base, name, flags, out); }
int x_full_pathname(sqlite3_vfs*, const char* name, int n, char* out) {
  return g_base->xFullPathname(g_base, name, n, out);
}
void* x_dl_open(sqlite3_vfs*, const char* name) { return g_base->xDlOpen(g_base, name); }
void x_dl_error(sqlite3_vfs*, int n, char* out) { g_base->xDlError(g_base, n, out); }
void (*x_dl_sym(sqlite3_vfs*, void* h, const char* sym))(void) { return g_base->xDlSym(g_base, h, sym); }
void x_dl_close(sqlite3_vfs*, void* h) { g_base->xDlClose(g_base, h); }
int x_randomness(sqlite3_vfs*, int n, char* out) { return g_base->xRandomness(g_base, n, out); }
int x_sleep(sqlite3_vfs*, int us) { return g_base->xSleep(g_base, us); }
int x_current_time(sqlite3_vfs*, double* out) { return g_base->xCurrentTime(g_base, out); }
int x_get_last_error(sqlite3_vfs*, int n, char* out) { return g_base->xGetLastError(g_base, n, out); }
int x_current_time_int64(sqlite3_vfs*, sqlite3_int64* out) { return g_base->xCurrentTimeInt64(g_base, out); }

sqlite3_vfs g_vfs;

}  // namespace

const char* gathering_vfs() {
  static std::once_flag once;
  static bool ok = false;
  std::call_once(once, [] {
    g_base = ::sqlite3_vfs_find(nullptr);
    if (g_base == nullptr || g_base->iVersion < 2) return;
    g_vfs = sqlite3_vfs{};
    g_vfs.iVersion = 2;
    g_vfs.szOsFile = static_cast<int>(sizeof(GatherFile)) + g_base->szOsFile;
    g_vfs.mxPathname = g_base->mxPathname;
    g_vfs.zName = kName;
    g_vfs.xOpen = x_open;
    g_vfs.xDelete = x_delete;
    g_vfs.xAccess = x_access;
    g_vfs.xFullPathname = x_full_pathname;
    g_vfs.xDlOpen = x_dl_open;
    g_vfs.xDlError = x_dl_error;
    g_vfs.xDlSym = x_dl_sym;
    g_vfs.xDlClose = x_dl_close;
    g_vfs.xRandomness = x_randomness;
    g_vfs.xSleep = x_sleep;
    g_vfs.xCurrentTime = x_current_time;
    g_vfs.xGetLastError = x_get_last_error;
    g_vfs.xCurrentTimeInt64 = x_current_time_int64;
    // The default from now on, over the one that was: a VFS a test installs later as the
    // default (a simulated power loss) sits on top of this one and sees what reaches the file.
    ok = ::sqlite3_vfs_register(&g_vfs, 1) == SQLITE_OK;
  });
  return ok ? kName : nullptr;
}

WalWrites wal_writes() { return {g_writes.load(), g_flushes.load()}; }

}  // namespace station::db
