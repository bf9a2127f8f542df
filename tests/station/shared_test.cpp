// Shared records (db/shared.hpp, docs/records.md): stations push their journals to a real
// PostgreSQL server (a private one per test, tests/support/pg_server.hpp) through the real
// `station` binary; auditors query across stations and verify each station's records against
// its root; tampering with any shared table is found; a database whose history differs from
// what was pushed is refused.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <thread>

#include <nlohmann/json.hpp>

#include "pg_server.hpp"
#include "station_dir.hpp"

namespace station::test {
namespace {

class SharedStation : public StationDir {
 public:
  explicit SharedStation(const PgServer& pg) : env_{{"STATION_SHARED_URL", pg.conninfo()}} {
    write_file(data() / "station.conf",
               read_file(data() / "station.conf") + "\n[shared]\nurl = 'env:STATION_SHARED_URL'\n");
  }
  std::string id() const {
    const auto conf = read_file(data() / "station.conf");
    const auto at = conf.find("id = '") + 6;
    return conf.substr(at, conf.find('\'', at) - at);
  }
  RunResult shared(std::vector<std::string> args) const {
    args.insert(args.begin(), {station_bin(), "shared"});
    args.insert(args.begin() + 3, {"--data", data().string()});
    return run(args, env_);
  }
  nlohmann::json push(const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> args = {"push", "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto r = shared(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json();
  }
  void issue_some(const std::string& prefix, int from, int to) {
    for (int k = from; k <= to; ++k) {
      const auto r = issue(make_pubkey("prime256v1", prefix + std::to_string(k)), prefix + "-" + std::to_string(k));
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
  }
  // The verify command's exit code and JSON, with this station's root trusted.
  std::pair<int, nlohmann::json> verify(const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> args = {"verify", "--json", "--trust", root_pem().string()};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto r = shared(args);
    nlohmann::json j;
    if (!r.out.empty()) j = nlohmann::json::parse(r.out, nullptr, false);
    return {r.exit_code, j};
  }

 private:
  std::map<std::string, std::string> env_;
};

TEST(SharedRecords, TwoStationsPushAndAuditorsQueryAndVerifyAcrossThem) {
  PgServer pg;
  ASSERT_TRUE(pg.ok());
  SharedStation a(pg), b(pg);
  ASSERT_NE(a.id(), b.id());
  a.issue_some("A", 1, 3);
  b.issue_some("B", 1, 2);

  const auto pa = a.push();
  EXPECT_EQ(pa["station_id"], a.id());
  EXPECT_EQ(pa["shared_last_seq"], 0);
  EXPECT_EQ(pa["first_seq"], 1);
  EXPECT_GT(pa["entries"].get<int>(), 3);
  EXPECT_EQ(pa["segments"], 1);
  EXPECT_GE(pa["records"].get<int>(), 6);  // three devices and their identities at least
  b.push();
  // Nothing new: nothing pushed, and the text says so.
  EXPECT_EQ(a.push()["entries"], 0);
  const auto again = a.shared({"push"});
  EXPECT_NE(again.out.find("up to date"), std::string::npos) << again.out;

  // One query across stations: the device, its station, and exactly what its station holds.
  auto q = a.shared({"query", "--json", "--serial", "A-2"});
  ASSERT_EQ(q.exit_code, 0) << q.err;
  auto rows = nlohmann::json::parse(q.out);
  ASSERT_EQ(rows.size(), 1u) << q.out;
  EXPECT_EQ(rows[0]["station_id"], a.id());
  EXPECT_EQ(rows[0]["state"], "issued");
  EXPECT_EQ(rows[0]["status"], "active");
  const auto local = nlohmann::json::parse(
      run({station_bin(), "audit", "query", "--data", a.data().string(), "--serial", "A-2", "--json"}).out);
  ASSERT_EQ(local.size(), 1u);
  EXPECT_EQ(rows[0]["cert_serial"], local[0]["cert_serial"]);
  EXPECT_EQ(rows[0]["pkhash"], local[0]["pkhash"]);
  q = a.shared({"query", "--json", "--pkhash", local[0]["pkhash"].get<std::string>()});
  EXPECT_EQ(nlohmann::json::parse(q.out).size(), 1u) << q.out;
  q = b.shared({"query", "--json", "--station", b.id()});
  rows = nlohmann::json::parse(q.out);
  ASSERT_EQ(rows.size(), 2u) << q.out;
  EXPECT_EQ(rows[0]["serial"], "B-1");
  EXPECT_EQ(rows[1]["serial"], "B-2");

  // Each station verifies against its own root; under another station's root it does not.
  auto [code, v] = a.verify({"--station", a.id()});
  EXPECT_EQ(code, 0) << v.dump();
  EXPECT_EQ(v["stations"][0]["entries"], pa["entries"]);
  std::tie(code, v) = b.verify({"--station", b.id()});
  EXPECT_EQ(code, 0) << v.dump();
  std::tie(code, v) = a.verify({"--station", b.id()});
  EXPECT_EQ(code, 1) << v.dump();
  EXPECT_NE(v["stations"][0]["reason"].get<std::string>().find("trusted"), std::string::npos) << v.dump();

  // More work, pushed a few entries per segment: the segments chain and verify.
  a.issue_some("A", 4, 6);
  const auto p2 = a.push({"--segment", "2"});
  EXPECT_EQ(p2["first_seq"], pa["last_seq"].get<int>() + 1);
  EXPECT_GE(p2["segments"].get<int>(), 2);
  std::tie(code, v) = a.verify({"--station", a.id()});
  EXPECT_EQ(code, 0) << v.dump();
  EXPECT_EQ(v["stations"][0]["segments"].get<int>(), 1 + p2["segments"].get<int>());
  EXPECT_EQ(v["stations"][0]["last_seq"], p2["last_seq"]);
  // The entries after the station's last checkpoint, whichever segment holds it.
  const auto checkpoint = a.row("SELECT coalesce(max(seq), 0) FROM checkpoints").at(0).value();
  EXPECT_EQ(v["stations"][0]["unsigned_tail"], p2["last_seq"].get<long long>() - std::stoll(checkpoint)) << v.dump();
  q = a.shared({"query", "--json", "--station", a.id()});
  EXPECT_EQ(nlohmann::json::parse(q.out).size(), 6u) << q.out;
}

TEST(SharedRecords, TamperingWithAnySharedTableIsFound) {
  PgServer pg;
  ASSERT_TRUE(pg.ok());
  SharedStation a(pg);
  a.issue_some("A", 1, 2);
  a.push();
  a.issue_some("A", 3, 3);
  a.push();
  ASSERT_EQ(a.verify().first, 0);
  auto expect_tampered = [&](const std::string& sql, const std::string& reason, const std::string& undo) {
    const auto r = pg.psql(sql);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto [code, v] = a.verify();
    EXPECT_EQ(code, 1) << sql;
    EXPECT_NE(v.dump().find(reason), std::string::npos) << sql << "\n" << v.dump();
    if (!undo.empty()) {
      const auto u = pg.psql(undo);
      ASSERT_EQ(u.exit_code, 0) << u.err;
      EXPECT_EQ(a.verify().first, 0) << "after undoing " << sql;
    }
  };
  // A device's state rewritten in the table auditors query.
  const std::string state = pg.psql("SELECT cols->>'state' FROM shared_records WHERE tbl = 'devices' AND "
                                    "cols->>'serial' = 'A-1'").out;
  ASSERT_EQ(state, "issued\n");
  expect_tampered("UPDATE shared_records SET cols = jsonb_set(cols, '{state}', '\"done\"') WHERE tbl = 'devices' AND "
                  "cols->>'serial' = 'A-1'",
                  "devices row", "UPDATE shared_records SET cols = jsonb_set(cols, '{state}', '\"issued\"') WHERE "
                  "tbl = 'devices' AND cols->>'serial' = 'A-1'");
  // An identity that was never pushed, slipped in.
  expect_tampered("INSERT INTO shared_records SELECT station_id, tbl, row_id + 1000, seq, cols FROM shared_records "
                  "WHERE tbl = 'identities' LIMIT 1",
                  "no signed segment vouches", "DELETE FROM shared_records WHERE row_id > 1000");
  // An entry's details rewritten; an entry removed.
  const std::string details = pg.psql("SELECT details FROM shared_entries WHERE seq = 3").out;
  expect_tampered("UPDATE shared_entries SET details = '{}' WHERE seq = 3", "entry 3 was changed", "");
  ASSERT_EQ(pg.psql("UPDATE shared_entries SET details = $q$" + details.substr(0, details.size() - 1) +
                    "$q$ WHERE seq = 3").exit_code, 0);
  ASSERT_EQ(a.verify().first, 0);
  expect_tampered("CREATE TABLE e AS SELECT * FROM shared_entries WHERE seq = 2; DELETE FROM shared_entries WHERE seq = 2",
                  "shared_entries holds", "INSERT INTO shared_entries SELECT * FROM e; DROP TABLE e");
  // A whole segment removed: the chain has a hole.
  expect_tampered("CREATE TABLE s AS SELECT * FROM shared_segments WHERE first_seq = 1; "
                  "DELETE FROM shared_segments WHERE first_seq = 1",
                  "are missing from the shared records",
                  "INSERT INTO shared_segments SELECT * FROM s; DROP TABLE s");
  // A signed segment edited in place.
  expect_tampered("UPDATE shared_segments SET bundle = replace(bundle, 'A-1', 'A-9') WHERE first_seq = 1",
                  "segment from entry 1", "");
}

TEST(SharedRecords, ADatabaseWhoseHistoryDiffersFromWhatWasPushedIsRefused) {
  PgServer pg;
  ASSERT_TRUE(pg.ok());
  SharedStation a(pg);
  a.issue_some("A", 1, 1);
  const auto first = a.push();
  const std::string last = std::to_string(first["last_seq"].get<int>());
  const auto entries_before = pg.psql("SELECT count(*) FROM shared_entries").out;
  a.issue_some("A", 2, 2);
  // The shared records say another database pushed under this id (its last entry differs).
  ASSERT_EQ(pg.psql("UPDATE shared_stations SET last_hash = repeat('ab', 32)").exit_code, 0);
  auto r = a.shared({"push"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("different history of station " + a.id() + " at entry " + last), std::string::npos) << r.err;
  EXPECT_EQ(pg.psql("SELECT count(*) FROM shared_entries").out, entries_before);
  // ... or more entries than this database has (it was restored from an older backup).
  ASSERT_EQ(pg.psql("UPDATE shared_stations SET last_seq = 99999").exit_code, 0);
  r = a.shared({"push"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("hold 99999 journal entries"), std::string::npos) << r.err;
  EXPECT_EQ(pg.psql("SELECT count(*) FROM shared_entries").out, entries_before);
}

// `station serve` in the background (stdout and stderr to `log`), stopped by SIGTERM.
class Serving {
 public:
  Serving(const StationDir& st, const fs::path& log) {
    std::vector<std::string> args = {station_bin(), "serve", "--data", st.data().string(), "--listen", "127.0.0.1:0"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    EXPECT_EQ(posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&fa);
  }
  Serving(const Serving&) = delete;
  Serving& operator=(const Serving&) = delete;
  ~Serving() {
    if (pid_ > 0) stop();
  }
  int stop() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
};

TEST(SharedRecords, ServePushesByItselfAndOnceMoreWhenItStops) {
  PgServer pg;
  ASSERT_TRUE(pg.ok());
  StationDir st;
  // The connection string in a file beside the config (file: reference).
  write_file(st.data() / "shared.url", pg.conninfo() + "\n");
  write_file(st.data() / "station.conf", read_file(st.data() / "station.conf") +
                                             "\n[shared]\nurl = 'file:shared.url'\npush_every_s = 1\n");
  auto found = [&](const std::string& serial) {
    const auto r = run({station_bin(), "shared", "query", "--data", st.data().string(), "--serial", serial, "--json"});
    return r.exit_code == 0 && nlohmann::json::parse(r.out).size() == 1;
  };
  {
    Serving serve(st, st.file("serve.log"));
    ASSERT_EQ(st.issue(st.make_pubkey("prime256v1", "s1"), "SRV-1").exit_code, 0);
    bool seen = false;
    for (int k = 0; k < 100 && !seen; ++k) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      seen = found("SRV-1");
    }
    EXPECT_TRUE(seen) << read_file(st.file("serve.log"));
    EXPECT_NE(read_file(st.file("serve.log")).find("pushing records to the shared database every 1 s"),
              std::string::npos);
  }
  // A long interval: what happens after the start is pushed when serve stops.
  write_file(st.data() / "station.conf", [&] {
    auto conf = read_file(st.data() / "station.conf");
    conf.replace(conf.find("push_every_s = 1"), 16, "push_every_s = 3600");
    return conf;
  }());
  {
    Serving serve(st, st.file("serve2.log"));
    std::this_thread::sleep_for(std::chrono::seconds(2));  // past the push at start
    ASSERT_EQ(st.issue(st.make_pubkey("prime256v1", "s2"), "SRV-2").exit_code, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    EXPECT_FALSE(found("SRV-2"));
    EXPECT_EQ(serve.stop(), 0) << read_file(st.file("serve2.log"));
  }
  EXPECT_TRUE(found("SRV-2"));
  const auto v = run({station_bin(), "shared", "verify", "--data", st.data().string(), "--trust", st.root_pem().string()});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
}

TEST(SharedRecords, TheConnectionStringIsASecretAndItsAbsenceIsNamed) {
  StationDir st;
  auto r = run({station_bin(), "shared", "push", "--data", st.data().string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("has no [shared] url"), std::string::npos) << r.err;
  const auto conf = st.config_with("[hsm]", "[shared]\nurl = 'host=db.example password=hunter2'\n\n[hsm]", "pw.conf");
  r = run({station_bin(), "shared", "push", "--config", conf.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("shared.url: holds a password"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("hunter2"), std::string::npos) << r.err;
  const auto uri = st.config_with("[hsm]", "[shared]\nurl = 'postgresql://rec:hunter2@db.example/records'\n\n[hsm]",
                                  "uri.conf");
  r = run({station_bin(), "shared", "push", "--config", uri.string()});
  EXPECT_NE(r.err.find("holds a password"), std::string::npos) << r.err;
  for (const std::string url : {"host=db.example password=hunter2", "postgresql://rec:hunter2@db.example/records"}) {
    r = run({station_bin(), "shared", "query", "--url", url});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("process list"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("hunter2"), std::string::npos) << r.err;
  }
  r = run({station_bin(), "shared", "query", "--url", "env:STATION_TEST_UNSET_URL"}, {{"STATION_TEST_UNSET_URL", ""}});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("STATION_TEST_UNSET_URL is not set"), std::string::npos) << r.err;
  // A server that is not there: named, with the fix.
  r = run({station_bin(), "shared", "query", "--url", "host=/nonexistent port=1 dbname=x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot reach the shared records database"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace station::test
