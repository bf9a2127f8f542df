// The journal and the records on a real SQLite file.
#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <mutex>
#include <thread>
#include <tuple>

#include "db/audit.hpp"
#include "db_support.hpp"

namespace station::db {
namespace {

using test::SoftwareAuditSigner;

class JournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Records r(path());  // creates and migrates
    Journal j(path(), "st-1");
    j.commit({"officer", "ca.created", "ca:audit", {}},
             [&](Connection& c) { return std::vector<RowRef>{insert_ca(c, test::audit_record(signer_))}; });
  }
  std::filesystem::path path() const { return dir_ / "station.db"; }
  VerifyReport verify(const std::optional<Expectation>& e = std::nullopt) {
    Records r(path(), true);
    return verify_journal(r.connection(), e);
  }
  void sql(const std::string& s) {
    Connection c(path());
    c.exec(s);
  }

  test::TempDir dir_;
  SoftwareAuditSigner signer_;
};

// Temp files the process holds open, deleted (SQLite unlinks its temp files at once).
int open_sqlite_temp_files() {
  int n = 0;
  for (const auto& fd : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const auto target = std::filesystem::read_symlink(fd.path(), ec).string();
    if (!ec && target.find("etilqs_") != std::string::npos) ++n;
  }
  return n;
}

// Each unit runs in a savepoint; a unit that changes more than 64 KiB of pages would make
// SQLite spill the savepoint's sub-journal to a temp file (created and unlinked on the
// writer, a file system round trip per transaction). It stays in memory.
TEST_F(JournalTest, AUnitsSavepointJournalStaysInMemory) {
  Journal j(path(), "st-1");
  sql("CREATE TABLE IF NOT EXISTS scratch(x BLOB)");
  for (int k = 0; k < 40; ++k) sql("INSERT INTO scratch VALUES(zeroblob(3000))");
  int during = -1;
  j.commit({"op", "scratch.rewritten", "test", {}}, [&](Connection& c) {
    c.exec("UPDATE scratch SET x = zeroblob(3001)");  // ~40 pages, 160 KiB of sub-journal
    during = open_sqlite_temp_files();
    return std::vector<RowRef>{};
  });
  EXPECT_EQ(during, 0) << "the unit's sub-journal went to a temp file";
}

TEST_F(JournalTest, EntriesChainAndRecordRowsVerify) {
  {
    Journal j(path(), "st-1", &signer_);
    for (int n = 1; n <= 5; ++n) {
      const auto e = j.commit({"op", "device.issued", "device:SN-" + std::to_string(n), {{"n", n}}}, test::add_device(n));
      EXPECT_EQ(e.seq, n + 1);
      EXPECT_EQ(e.hash, entry_hash(e));
    }
  }
  const auto r = verify();
  EXPECT_TRUE(r.ok) << r.reason;
  EXPECT_EQ(r.entries, 6);
  EXPECT_EQ(r.checkpoints, 1);  // signed on close
  EXPECT_EQ(r.unsigned_tail, 0);
}

// A long verification reports how far it is: every 65,536 entries and at the end of each
// phase, with the totals, in order (`station audit verify` prints it for a long run).
TEST_F(JournalTest, VerificationReportsItsProgressWithTotals) {
  {
    Journal j(path(), "st-1");
    std::vector<Journal::Request> many;
    for (int n = 0; n < 70000; ++n) many.emplace_back(EntryRequest{"op", "note", "test", {{"n", n}}}, Mutation{});
    j.commit_all(std::move(many));
  }
  Records r(path(), true);
  std::vector<std::tuple<std::string, std::int64_t, std::int64_t>> calls;
  const auto report = verify_journal(r.connection(), std::nullopt, [&](std::string_view phase, std::int64_t done,
                                                                       std::int64_t total) {
    calls.emplace_back(std::string(phase), done, total);
  });
  EXPECT_TRUE(report.ok) << report.reason;
  const std::vector<std::tuple<std::string, std::int64_t, std::int64_t>> expected = {
      {"entries", 65536, 70001}, {"entries", 70001, 70001}, {"records", 1, 1}};
  EXPECT_EQ(calls, expected);
  EXPECT_EQ(verify().entries, 70001);  // and without a callback, the same walk
}

TEST_F(JournalTest, AFailedMutationLeavesNeitherRowsNorEntry) {
  Journal j(path(), "st-1", &signer_);
  j.commit({"op", "device.issued", "device:SN-1", {}}, test::add_device(1));
  EXPECT_THROW(j.commit({"op", "device.issued", "device:SN-1", {}}, test::add_device(1)), Error);
  const auto last = j.last();
  ASSERT_TRUE(last);
  EXPECT_EQ(last->seq, 2);
  // The next entry continues the chain without a gap.
  EXPECT_EQ(j.commit({"op", "device.issued", "device:SN-2", {}}, test::add_device(2)).seq, 3);
}

TEST_F(JournalTest, EntriesCommittedTogetherAllLandOrNoneDoes) {
  {
    Journal j(path(), "st-1", &signer_);
    // The unit's second mutation fails (SN-1 exists): its first entry and row go with it.
    j.commit({"op", "device.issued", "device:SN-1", {}}, test::add_device(1));
    std::vector<Journal::Request> unit;
    unit.emplace_back(EntryRequest{"op", "device.issued", "device:SN-2", {}}, test::add_device(2));
    unit.emplace_back(EntryRequest{"op", "device.issued", "device:SN-1", {}}, test::add_device(1));
    EXPECT_THROW(j.commit_together(std::move(unit)), Error);
    EXPECT_EQ(j.last()->seq, 2);
    // A unit that succeeds lands whole and in order; the chain goes on without a gap.
    std::vector<Journal::Request> good;
    good.emplace_back(EntryRequest{"op", "device.keyed", "device:SN-2", {}}, Mutation{});
    good.emplace_back(EntryRequest{"op", "device.issued", "device:SN-2", {}}, test::add_device(2));
    const auto entries = j.commit_together(std::move(good));
    ASSERT_EQ(entries.size(), 2U);
    EXPECT_EQ(entries[0].seq, 3);
    EXPECT_EQ(entries[1].seq, 4);
    EXPECT_EQ(entries[1].prev_hash, entries[0].hash);
  }
  Records r(path(), true);
  auto st = r.connection().prepare("SELECT count(*) FROM devices");
  st.step();
  EXPECT_EQ(st.int64(0), 2);
  const auto report = verify();
  EXPECT_TRUE(report.ok) << report.reason;
}

TEST_F(JournalTest, AsyncCommitsCompleteInQueueOrderOnceDurable) {
  std::vector<std::int64_t> completed;
  std::vector<std::string> failures;
  {
    Journal j(path(), "st-1", &signer_);
    std::mutex m;
    for (int n = 1; n <= 40; ++n) {
      std::vector<Journal::Request> unit;
      // Every fifth unit fails (a device that already exists); the others go on.
      const int device = n % 5 == 0 ? 1 : n;
      unit.emplace_back(EntryRequest{"op", "device.issued", "device:SN-" + std::to_string(n), {}},
                        test::add_device(device));
      j.commit_async(std::move(unit), [&, n](std::vector<Entry> entries, std::exception_ptr error) {
        const std::lock_guard lock(m);
        if (error) failures.push_back(std::to_string(n));
        else completed.push_back(entries.at(0).seq);
      });
    }
    for (;;) {
      {
        const std::lock_guard lock(m);
        if (failures.size() + completed.size() == 40) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    // Failed units are not counted.
    const auto c = j.counters();
    EXPECT_EQ(c.units, 32U);
    EXPECT_EQ(c.entries, 32U);
    EXPECT_GT(c.pages_written, 0U);
  }  // closing the journal completes every queued unit first
  EXPECT_EQ(failures.size(), 8U);
  ASSERT_EQ(completed.size(), 32U);
  for (std::size_t k = 0; k < completed.size(); ++k) EXPECT_EQ(completed[k], static_cast<std::int64_t>(k) + 2);
  // Durable: a fresh connection sees every completed entry.
  Records r(path(), true);
  auto st = r.connection().prepare("SELECT max(seq) FROM journal");
  st.step();
  EXPECT_EQ(st.int64(0), 33);
  const auto report = verify();
  EXPECT_TRUE(report.ok) << report.reason;
}

// `applied` (the line's reservation resumes on it): it runs once the unit is in the writer's
// open transaction, before the unit is durable and before its completion, and a unit queued
// after it is applied only after that completion has run (so it can refuse when the earlier
// unit did not land). A unit that fails in its mutation is never reported applied.
TEST_F(JournalTest, AppliedComesBeforeTheOutcomeAndAUnitQueuedAfterItSeesThatOutcome) {
  Journal j(path(), "st-1");
  std::mutex m;
  std::vector<std::string> seen;
  auto note = [&](const std::string& what) {
    const std::lock_guard lock(m);
    seen.push_back(what);
  };
  std::promise<void> applied;
  std::promise<std::int64_t> durable_seq;
  std::int64_t visible_when_applied = -1;
  {
    std::vector<Journal::Request> unit;
    unit.emplace_back(EntryRequest{"op", "device.reserved", "device:SN-1", {}}, [&](Connection& c) {
      note("mutation 1");
      return test::add_device(1)(c);
    });
    j.commit_async(
        std::move(unit),
        [&](std::vector<Entry> e, std::exception_ptr x) {
          note(x ? "failed 1" : "durable 1");
          durable_seq.set_value(x ? 0 : e.at(0).seq);
        },
        [&] {
          note("applied 1");
          // Not yet visible to another connection: nothing is committed.
          Connection reader(path(), true);
          auto st = reader.prepare("SELECT count(*) FROM devices WHERE serial = 'SN-1'");
          st.step();
          visible_when_applied = st.int64(0);
          applied.set_value();
        });
  }
  applied.get_future().wait();
  std::promise<void> second_done;
  std::vector<Journal::Request> unit2;
  unit2.emplace_back(EntryRequest{"op", "device.issued", "device:SN-1", {}}, [&](Connection&) {
    note("mutation 2");
    return std::vector<RowRef>{};
  });
  j.commit_async(std::move(unit2), [&](std::vector<Entry>, std::exception_ptr) { second_done.set_value(); });
  // A unit whose mutation fails: its completion brings the error, and it is never applied.
  bool failed_applied = false;
  std::promise<std::exception_ptr> failed_outcome;
  std::vector<Journal::Request> bad;
  bad.emplace_back(EntryRequest{"op", "device.reserved", "device:SN-1", {}}, test::add_device(1));  // a duplicate
  j.commit_async(
      std::move(bad), [&](std::vector<Entry>, std::exception_ptr x) { failed_outcome.set_value(x); },
      [&] { failed_applied = true; });
  second_done.get_future().wait();
  EXPECT_GT(durable_seq.get_future().get(), 0);
  EXPECT_TRUE(failed_outcome.get_future().get());
  EXPECT_FALSE(failed_applied);
  EXPECT_EQ(visible_when_applied, 0);
  const std::vector<std::string> expected{"mutation 1", "applied 1", "durable 1", "mutation 2"};
  EXPECT_EQ(seen, expected);
}

// The line queues `written` without waiting and commits `verified` after it: the later unit
// must refuse when the earlier one did not land, whether they share a transaction or not.
TEST_F(JournalTest, AUnitThatDependsOnAnUnwaitedOneRefusesWhenThatOneDidNotLand) {
  Journal j(path(), "st-1", &signer_);
  std::int64_t id = 0;
  j.commit({"op", "device.issued", "device:SN-1", {}}, [&](Connection& c) {
    auto rows = test::add_device(1)(c);
    id = rows.at(0).id;
    return rows;
  });
  const auto to = [&](const std::string& state) {
    return Mutation([id, state](Connection& c) { return std::vector<RowRef>{set_device_state(c, id, state)}; });
  };
  const auto after = [&](const std::string& earlier, const std::string& state) {
    return Mutation([id, earlier, state](Connection& c) {
      require_device_state(c, id, earlier);
      return std::vector<RowRef>{set_device_state(c, id, state)};
    });
  };
  std::exception_ptr written_error;
  // `written` fails as a unit (its second entry collides), `verified` is queued behind it.
  std::vector<Journal::Request> written;
  written.emplace_back(EntryRequest{"op", "device.written", "device:SN-1", {}}, to("written"));
  written.emplace_back(EntryRequest{"op", "device.issued", "device:SN-1", {}}, test::add_device(1));
  j.commit_async(std::move(written), [&](std::vector<Entry>, std::exception_ptr x) { written_error = x; });
  try {
    j.commit({"op", "device.verified", "device:SN-1", {}}, after("written", "verified"));
    ADD_FAILURE() << "verified committed although written did not land";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::db_error);
    EXPECT_NE(std::string(e.what()).find("recorded as 'issued', not 'written'"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(written_error);  // completed before the unit queued after it
  // When `written` lands, `verified` follows it.
  std::vector<Journal::Request> again;
  again.emplace_back(EntryRequest{"op", "device.written", "device:SN-1", {}}, to("written"));
  j.commit_async(std::move(again), [&](std::vector<Entry>, std::exception_ptr x) { written_error = x; });
  const auto v = j.commit({"op", "device.verified", "device:SN-1", {}}, after("written", "verified"));
  EXPECT_FALSE(written_error);
  EXPECT_EQ(v.seq, 4);  // ca, issued, written, verified: the refused units left no entry
  Records r(path(), true);
  auto st = r.connection().prepare("SELECT state FROM devices WHERE id = ?");
  st.bind(1, id);
  ASSERT_TRUE(st.step());
  EXPECT_EQ(st.text(0), "verified");
}

TEST_F(JournalTest, ConcurrentWritersShareCommitsAndKeepOneChain) {
  {
    Journal j(path(), "st-1", &signer_);
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t)
      threads.emplace_back([&, t] {
        for (int k = 0; k < 50; ++k) {
          const int n = t * 1000 + k;
          j.commit({"op", "device.issued", "device:SN-" + std::to_string(n), {}}, test::add_device(n));
        }
      });
    for (auto& th : threads) th.join();
    // The writer's counters: every unit and entry once, no more transactions than units,
    // and each transaction wrote at least one page to the WAL.
    const auto c = j.counters();
    EXPECT_EQ(c.units, 400U);
    EXPECT_EQ(c.entries, 400U);
    EXPECT_GE(c.transactions, 1U);
    EXPECT_LE(c.transactions, 400U);
    EXPECT_GE(c.pages_written, c.transactions);
    EXPECT_GE(j.counters().pages_written, c.pages_written);  // summed across reads, not reset
  }
  const auto r = verify();
  EXPECT_TRUE(r.ok) << r.reason;
  EXPECT_EQ(r.entries, 401);
}

TEST_F(JournalTest, DuplicateSerialMacKeyHashOrCertificateSerialIsRefused) {
  Journal j(path(), "st-1");
  j.commit({"op", "device.issued", "device:SN-1", {}}, test::add_device(1));
  auto [d0, i0] = test::sample_device(1);
  struct Case {
    const char* what;
    std::function<void(DeviceRecord&, IdentityRecord&)> keep_only;
  };
  // Each case makes a fresh device that collides with device 1 in exactly one field.
  const std::vector<Case> cases = {
      {"device serial SN-1", [&](DeviceRecord& d, IdentityRecord&) { d.serial = d0.serial; }},
      {"MAC", [&](DeviceRecord& d, IdentityRecord&) { d.mac = d0.mac; }},
      {"chip id", [&](DeviceRecord& d, IdentityRecord&) { d.chip_id = d0.chip_id; }},
      {"DPP key hash", [&](DeviceRecord&, IdentityRecord& i) { i.pkhash = i0.pkhash; }},
      {"certificate serial", [&](DeviceRecord&, IdentityRecord& i) { i.cert_serial = i0.cert_serial; }},
  };
  int n = 100;
  for (const auto& c : cases) {
    auto [d, i] = test::sample_device(++n);
    c.keep_only(d, i);
    try {
      j.commit({"op", "device.issued", "device:" + d.serial, {}},
               [&](Connection& conn) { return insert_device_with_identity(conn, d, i); });
      FAIL() << c.what << " was accepted twice";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::constraint_violation) << c.what;
      EXPECT_NE(std::string(e.what()).find(c.what), std::string::npos) << e.what();
    }
  }
  Records r(path(), true);
  EXPECT_EQ(query_identities(r.connection(), {}).size(), 1u);
}

TEST_F(JournalTest, ChangedRecordRowIsNamedByItsEntry) {
  {
    Journal j(path(), "st-1", &signer_);
    for (int n = 1; n <= 3; ++n) j.commit({"op", "device.issued", "device:SN-" + std::to_string(n), {}}, test::add_device(n));
  }
  sql("UPDATE identities SET profile = 'forged' WHERE device_id = (SELECT id FROM devices WHERE serial = 'SN-2')");
  const auto r = verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_seq, 3);
  EXPECT_NE(r.reason.find("identities row"), std::string::npos) << r.reason;
}

TEST_F(JournalTest, ExpectationDetectsTruncationOfAnUnsignedTail) {
  Entry third;
  {
    Journal j(path(), "st-1");  // no signer: nothing is checkpointed
    for (int n = 1; n <= 3; ++n) third = j.commit({"op", "note", "x", {{"n", n}}});
  }
  EXPECT_TRUE(verify(Expectation{third.seq, third.hash}).ok);
  sql("DROP TRIGGER journal_append_only_delete; DELETE FROM journal WHERE seq = 4");
  const auto plain = verify();
  EXPECT_TRUE(plain.ok);  // nothing signed covers entry 4: only an expectation can tell
  EXPECT_EQ(plain.unsigned_tail, 3);
  const auto r = verify(Expectation{third.seq, third.hash});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.first_bad_seq, 4);
}

TEST_F(JournalTest, QueriesBySerialAndKeyHashUseIndexesAtTenThousandDevices) {
  {
    Connection c(path());
    Transaction tx(c);
    for (int n = 1; n <= 10000; ++n) {
      auto [d, i] = test::sample_device(n);
      insert_device_with_identity(c, d, i);
    }
    tx.commit();
  }
  Records r(path(), true);
  auto plan = [&](const std::string& where) {
    auto st = r.connection().prepare(
        "EXPLAIN QUERY PLAN SELECT d.serial FROM identities i JOIN devices d ON d.id = i.device_id "
        "LEFT JOIN batches b ON b.id = d.batch_id WHERE " + where);
    st.bind(1, "x");
    std::string out;
    while (st.step()) out += st.text(3) + "\n";
    return out;
  };
  const auto by_serial = plan("d.serial = ?");
  EXPECT_NE(by_serial.find("SEARCH d USING INDEX sqlite_autoindex_devices_1 (serial=?)"), std::string::npos) << by_serial;
  EXPECT_EQ(by_serial.find("SCAN i\n"), std::string::npos) << by_serial;
  const auto by_pkhash = plan("i.pkhash = ?");
  EXPECT_NE(by_pkhash.find("SEARCH i USING INDEX sqlite_autoindex_identities_3 (pkhash=?)"), std::string::npos)
      << by_pkhash;
  const auto by_cert = plan("i.cert_serial = ?");
  EXPECT_NE(by_cert.find("USING INDEX sqlite_autoindex_identities_1 (cert_serial=?)"), std::string::npos) << by_cert;
  QueryFilter f;
  f.pkhash = test::sample_device(4242).second.pkhash;
  const auto rows = query_identities(r.connection(), f);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].serial, "SN-4242");
}

TEST_F(JournalTest, NewerSchemaIsRefused) {
  sql("PRAGMA user_version = 99");
  try {
    Records r(path());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::unsupported);
    EXPECT_NE(std::string(e.what()).find("newer"), std::string::npos);
  }
}

TEST_F(JournalTest, JournalIsAppendOnlyThroughSql) {
  { Journal j(path(), "st-1"); j.commit({"op", "note", "x", {}}); }
  EXPECT_THROW(sql("UPDATE journal SET actor = 'someone else' WHERE seq = 1"), Error);
  EXPECT_THROW(sql("DELETE FROM journal WHERE seq = 1"), Error);
}

}  // namespace
}  // namespace station::db

namespace station::db {
namespace {

// Two writers on one file (a CLI command beside a running station) keep one chain.
TEST(JournalProcesses, TwoJournalsOnOneFileInterleaveWithoutBreakingTheChain) {
  test::TempDir dir;
  const auto path = dir / "station.db";
  { Records r(path); }
  Journal a(path, "st-1"), b(path, "st-1");
  for (int k = 0; k < 20; ++k) {
    EXPECT_EQ(a.commit({"a", "note", "x", {{"k", k}}}).seq, 2 * k + 1);
    EXPECT_EQ(b.commit({"b", "note", "x", {{"k", k}}}).seq, 2 * k + 2);
  }
  Records r(path, true);
  const auto report = verify_journal(r.connection());
  EXPECT_TRUE(report.ok) << report.reason;
  EXPECT_EQ(report.entries, 40);
}

}  // namespace
}  // namespace station::db
