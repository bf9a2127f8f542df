// The WAL-gathering VFS (db/src/wal_gather.cpp) on a real SQLite file: a commit reaches
// the WAL in one write, what it gathers is what SQLite wrote, and other connections see a
// commit the moment it is published, with or without a sync. Crash and power-loss
// durability with it in place: durability_test.cpp (it is the default VFS there too).
#include <gtest/gtest.h>

#include <string>

#include "db/sqlite.hpp"
#include "db_support.hpp"

namespace station::db {
namespace {

std::int64_t count(Connection& c, const std::string& sql) {
  auto st = c.prepare(sql);
  EXPECT_TRUE(st.step());
  return st.int64(0);
}

// Inserts `rows` rows of ~3 KB (about one page each) in one transaction.
void insert_pages(Connection& c, int first, int rows) {
  c.exec("BEGIN");
  auto st = c.prepare("INSERT INTO t(k, v) VALUES(?, randomblob(3000))");
  for (int k = first; k < first + rows; ++k) {
    st.bind(1, static_cast<std::int64_t>(k));
    st.step();
    st.reset();
  }
  c.exec("COMMIT");
}

class WalGather : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(gathering_vfs(), nullptr);
    EXPECT_STREQ(sqlite3_vfs_find(nullptr)->zName, gathering_vfs());  // every connection uses it
    Connection c(path());
    c.exec("CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB NOT NULL)");
  }
  std::filesystem::path path() const { return dir_ / "g.db"; }
  test::TempDir dir_;
};

TEST_F(WalGather, ACommitReachesTheWalInOneWrite) {
  Connection c(path());
  insert_pages(c, 0, 1);  // the WAL's header is written (and synced) on its own once
  const auto before = wal_writes();
  insert_pages(c, 1, 20);
  const auto after = wal_writes();
  // SQLite wrote ~21 frames as two writes each; one write reached the file.
  EXPECT_GE(after.writes - before.writes, 40U);
  EXPECT_EQ(after.flushes - before.flushes, 1U);
}

TEST_F(WalGather, ACommitLargerThanARunIsWrittenWholeAndReadsBack) {
  {
    Connection c(path());
    const auto before = wal_writes();
    insert_pages(c, 0, 200);  // ~200 frames: several runs
    EXPECT_GT(wal_writes().flushes - before.flushes, 2U);
    c.exec("UPDATE t SET v = zeroblob(10) WHERE k % 7 = 0");
  }
  Connection r(path(), true);
  EXPECT_EQ(count(r, "SELECT count(*) FROM t"), 200);
  EXPECT_EQ(count(r, "SELECT count(*) FROM t WHERE length(v) = 10"), 29);
  auto st = r.prepare("PRAGMA integrity_check");
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.text(0), "ok");
}

// With synchronous=OFF nothing forces the run out before SQLite publishes the commit in the
// wal-index: the barrier on the database file does, or a reader would find the WAL short.
TEST_F(WalGather, AnotherConnectionSeesACommitMadeWithoutASync) {
  Connection w(path());
  w.exec("PRAGMA synchronous=OFF");
  Connection r(path(), true);
  for (int k = 0; k < 30; ++k) {
    insert_pages(w, k * 3, 3);
    ASSERT_EQ(count(r, "SELECT count(*) FROM t"), (k + 1) * 3);
    ASSERT_EQ(count(r, "SELECT count(*) FROM t WHERE length(v) = 3000"), (k + 1) * 3);
  }
  auto st = r.prepare("PRAGMA integrity_check");
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.text(0), "ok");
}

}  // namespace
}  // namespace station::db
