// Batches: serial patterns, counters shared across batches, state changes, the manifest.
#include <gtest/gtest.h>

#include <set>

#include "core/batches.hpp"
#include "db/highwater.hpp"
#include "station_dir.hpp"

namespace station::test {
namespace {

std::chrono::system_clock::time_point day(int y, int m, int d) {
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = m - 1;
  tm.tm_mday = d;
  return std::chrono::system_clock::from_time_t(::timegm(&tm));
}

TEST(SerialPattern, RendersDateFieldsAndAZeroPaddedSequence) {
  const auto p = core::parse_serial_pattern("ACME-{yyyy}{mm}-{seq:06}-X", day(2026, 11, 22));
  EXPECT_EQ(p.prefix, "ACME-202611-");
  EXPECT_EQ(p.suffix, "-X");
  EXPECT_EQ(p.render(42), "ACME-202611-000042-X");
  EXPECT_EQ(p.render(1234567), "ACME-202611-1234567-X");
  EXPECT_EQ(core::parse_serial_pattern("S{yy}{dd}{seq}", day(2031, 1, 5)).render(7), "S31057");
}

TEST(SerialPattern, RefusesPatternsThatCannotMakeUniquePrintableSerials) {
  for (const char* bad : {"NO-SEQ-{yyyy}", "A{seq}B{seq}", "A {seq}", "A{seq:x}", "A{month}{seq}", "A{seq", "A;{seq}"}) {
    try {
      core::parse_serial_pattern(bad, day(2026, 1, 1));
      FAIL() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::invalid_argument) << bad;
      EXPECT_NE(std::string(e.what()).find("serial pattern"), std::string::npos) << e.what();
    }
  }
}

class Batches : public ::testing::Test {
 protected:
  std::string reserve(core::Station& station, const core::Batch& b) {
    std::string serial;
    station.journal().commit({"tester", "serial.reserved", "batch:" + b.name, {}}, [&](db::Connection& c) {
      auto [s, row] = core::next_serial(c, b);
      serial = s;
      return std::vector<db::RowRef>{row};
    });
    return serial;
  }
  core::BatchSettings settings(const std::string& pattern) {
    core::BatchSettings s;
    s.product = "Widget";
    s.quantity = 3;
    s.serial_pattern = pattern;
    return s;
  }
  StationDir st_;
};

TEST_F(Batches, TwoBatchesWithTheSamePatternNeverShareASerial) {
  std::set<std::string> seen;
  {
    core::Station station(st_.data(), std::nullopt);
    const auto a = core::open_batch(station, "WO-1", settings("ACME-{yyyy}-{seq:04}"), "tester");
    const auto b = core::open_batch(station, "WO-2", settings("ACME-{yyyy}-{seq:04}"), "tester");
    const auto c = core::open_batch(station, "WO-3", settings("OTHER-{seq:04}"), "tester");
    for (int k = 0; k < 3; ++k) {
      EXPECT_TRUE(seen.insert(reserve(station, a)).second);
      EXPECT_TRUE(seen.insert(reserve(station, b)).second);
    }
    EXPECT_EQ(reserve(station, c), "OTHER-0001");  // its own prefix counts from 1
  }
  // A restarted station continues the counter.
  core::Station station(st_.data(), std::nullopt);
  const auto a = core::find_batch(station, "WO-1");
  ASSERT_TRUE(a);
  const std::string next = reserve(station, *a);
  EXPECT_TRUE(seen.insert(next).second);
  EXPECT_EQ(next.substr(next.size() - 4), "0007");
  const auto v = run({station_bin(), "audit", "verify", "--data", st_.data().string()});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
}

TEST_F(Batches, OpenPauseResumeCloseThroughTheCliAndTheManifestVerifies) {
  auto batch = [&](const std::vector<std::string>& args) {
    std::vector<std::string> argv = {station_bin(), "batch"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--data", st_.data().string(), "--json"});
    return run(argv);
  };
  auto r = batch({"open", "WO-7", "--product", "Widget", "--quantity", "10", "--serial-pattern", "W-{seq:05}",
                  "--key-mode", "on-device", "--lock"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["state"], "open");
  EXPECT_EQ(j["quantity"], 10);
  EXPECT_EQ(j["key_mode"], "on-device");
  EXPECT_EQ(j["lock"], true);
  EXPECT_EQ(batch({"open", "WO-7", "--product", "Widget", "--quantity", "1"}).exit_code, 1);  // names are never reused
  EXPECT_EQ(nlohmann::json::parse(batch({"pause", "WO-7"}).out)["state"], "paused");
  r = batch({"pause", "WO-7"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("is paused; it cannot become paused"), std::string::npos) << r.err;
  EXPECT_EQ(nlohmann::json::parse(batch({"resume", "WO-7"}).out)["state"], "open");
  r = batch({"close", "WO-7"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["state"], "closed");
  EXPECT_EQ(j["missing"], 10);
  const auto v = run({station_bin(), "audit", "verify", "--bundle", j["manifest"].get<std::string>(), "--trust",
                      st_.root_pem().string(), "--json"});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  const auto all = nlohmann::json::parse(batch({"show"}).out);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0]["name"], "WO-7");
  EXPECT_EQ(run({"sqlite3", (st_.data() / "station.db").string(),
                 "SELECT group_concat(action, ' ') FROM journal WHERE subject = 'batch:WO-7'"})
                .out,
            "batch.opened batch.paused batch.resumed batch.closed batch.reconciled\n");
}

TEST_F(Batches, BadSettingsAreRefusedByName) {
  auto open = [&](const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {station_bin(), "batch", "open", "WO-X", "--data", st_.data().string(),
                                     "--product", "Widget"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run(argv);
  };
  EXPECT_NE(open({"--quantity", "0"}).err.find("batch quantity"), std::string::npos);
  EXPECT_NE(open({"--quantity", "5", "--key-mode", "maybe"}).err.find("batch key mode"), std::string::npos);
  EXPECT_NE(open({"--quantity", "5", "--mac-source", "pool:zz"}).err.find("batch MAC source"), std::string::npos);
  EXPECT_NE(open({"--quantity", "5", "--profile", "nope"}).err.find("no certificate profile 'nope'"), std::string::npos);
  EXPECT_NE(open({"--quantity", "5", "--serial-pattern", "X"}).err.find("needs a {seq}"), std::string::npos);
}

TEST_F(Batches, PoolMacsCountPerOuiAndStopWhenThePoolIsUsedUp) {
  core::Station station(st_.data(), std::nullopt);
  auto s = settings("P-{seq:04}");
  s.mac_source = "pool:02a0b1:0000fe-0000ff";
  const auto a = core::open_batch(station, "WO-A", s, "tester");
  const auto b = core::open_batch(station, "WO-B", s, "tester");
  auto mac = [&](const core::Batch& batch) {
    std::string m;
    station.journal().commit({"tester", "mac.reserved", "batch:" + batch.name, {}}, [&](db::Connection& c) {
      auto [value, row] = core::next_mac(c, batch);
      m = value;
      return std::vector<db::RowRef>{row};
    });
    return m;
  };
  EXPECT_EQ(mac(a), "02a0b10000fe");
  EXPECT_EQ(mac(b), "02a0b10000ff");  // the other batch continues the OUI's counter
  try {
    mac(a);
    FAIL() << "a MAC outside the pool was handed out";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::constraint_violation);
    EXPECT_NE(std::string(e.what()).find("used up"), std::string::npos) << e.what();
  }
}

// A database restored from an older backup must not hand out serials or MACs again.
TEST_F(Batches, ARestoredBackupRefusesToAllocateUntilCountersAreRaisedAboveTheMarks) {
  const auto db = st_.data() / "station.db";
  const auto backup = st_.data().parent_path() / "backup.db";
  std::string before_restore;
  {
    core::Station station(st_.data(), std::nullopt);
    auto s = settings("R-{seq:04}");
    s.mac_source = "pool:02a0b1:000000-0000ff";
    const auto a = core::open_batch(station, "WO-R", s, "tester");
    reserve(station, a);
    reserve(station, a);
    const auto r = run({station_bin(), "db", "backup", "--data", st_.data().string(), "--out", backup.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    for (int k = 0; k < 3; ++k) before_restore = reserve(station, a);
    EXPECT_EQ(before_restore, "R-0005");
    station.journal().checkpoint();  // exports the marks beside the database
  }
  const auto marks = db::read_highwater(db::highwater_path(db));
  ASSERT_TRUE(marks);
  EXPECT_EQ(marks->counters.at("R-{seq}"), 6);

  // The operator restores the backup (the station is stopped).
  std::filesystem::copy_file(backup, db, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::remove(db.string() + "-wal");
  std::filesystem::remove(db.string() + "-shm");
  {
    core::Station station(st_.data(), std::nullopt);
    const auto a = core::find_batch(station, "WO-R");
    ASSERT_TRUE(a);
    try {
      reserve(station, *a);
      FAIL() << "a restored database handed out a serial again";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::tampered);
      EXPECT_NE(std::string(e.what()).find("R-{seq}: 3 < 6"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("station db resume-after-restore"), std::string::npos) << e.what();
    }
    // A checkpoint signed by the restored database does not lower the marks.
    station.journal().checkpoint();
  }
  EXPECT_EQ(db::read_highwater(db::highwater_path(db))->counters.at("R-{seq}"), 6);

  const auto r = run({station_bin(), "db", "resume-after-restore", "--data", st_.data().string()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("raised R-{seq}: 3 -> 6"), std::string::npos) << r.out;
  core::Station station(st_.data(), std::nullopt);
  const auto a = core::find_batch(station, "WO-R");
  EXPECT_EQ(reserve(station, *a), "R-0006");  // never R-0003..R-0005 again
  {
    auto st = station.records().connection().prepare(
        "SELECT count(*) FROM journal WHERE action = 'db.resumed_after_restore' AND details LIKE '%\"marks_seq\"%'");
    st.step();
    EXPECT_EQ(st.int64(0), 1);
  }
  const auto q = run({station_bin(), "audit", "verify", "--data", st_.data().string()});
  EXPECT_EQ(q.exit_code, 0) << q.out << q.err;
  const auto again = run({station_bin(), "db", "resume-after-restore", "--data", st_.data().string()});
  EXPECT_NE(again.out.find("nothing to raise"), std::string::npos) << again.out;
}

// The disk that held the database and the marks beside it is lost: the backup comes back,
// and the audit export made after it (kept elsewhere, e.g. with the auditors) carries the
// counters. A bundle that was altered, or that another station exported, is refused.
TEST_F(Batches, AnAuditExportMadeAfterTheBackupCarriesTheMarksWhenTheFileBesideTheDatabaseIsLost) {
  const auto db = st_.data() / "station.db";
  const auto backup = st_.data().parent_path() / "backup.db";
  const auto bundle = st_.data().parent_path() / "export.jsonl";
  {
    core::Station station(st_.data(), std::nullopt);
    const auto a = core::open_batch(station, "WO-E", settings("E-{seq:04}"), "tester");
    reserve(station, a);
    const auto r = run({station_bin(), "db", "backup", "--data", st_.data().string(), "--out", backup.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    for (int k = 0; k < 4; ++k) reserve(station, a);  // E-0002 .. E-0005
  }
  const auto e = run({station_bin(), "audit", "export", "--data", st_.data().string(), "--out", bundle.string()});
  ASSERT_EQ(e.exit_code, 0) << e.err;

  std::filesystem::copy_file(backup, db, std::filesystem::copy_options::overwrite_existing);
  for (const auto* tail : {"-wal", "-shm", "-highwater.json"}) std::filesystem::remove(db.string() + tail);
  const auto none = run({station_bin(), "db", "resume-after-restore", "--data", st_.data().string()});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_NE(none.err.find("--marks FILE"), std::string::npos) << none.err;

  // An export whose counter was lowered after the fact is not trusted.
  std::string text = read_file(bundle);
  const std::string counter = R"(["prefix","E-{seq}"],["next",6])";
  const auto at = text.find(counter);
  ASSERT_NE(at, std::string::npos) << "the export carries no E-{seq} counter at 6";
  const auto forged = st_.data().parent_path() / "forged.jsonl";
  write_file(forged, text.replace(at, counter.size(), R"(["prefix","E-{seq}"],["next",3])"));
  const auto f = run({station_bin(), "db", "resume-after-restore", "--data", st_.data().string(), "--marks",
                      forged.string()});
  EXPECT_EQ(f.exit_code, 1);
  EXPECT_NE(f.err.find("does not verify"), std::string::npos) << f.err;

  const auto r = run({station_bin(), "db", "resume-after-restore", "--data", st_.data().string(), "--marks",
                      bundle.string()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("raised E-{seq}: 2 -> 6"), std::string::npos) << r.out;
  core::Station station(st_.data(), std::nullopt);
  EXPECT_EQ(reserve(station, *core::find_batch(station, "WO-E")), "E-0006");  // never E-0002..E-0005 again
  auto q = station.records().connection().prepare(
      "SELECT details FROM journal WHERE action = 'db.resumed_after_restore'");
  ASSERT_TRUE(q.step());
  EXPECT_EQ(nlohmann::json::parse(q.text(0))["marks_from"], "audit bundle");
}

}  // namespace
}  // namespace station::test
