// The line's live events in-process: a real ProvisioningLine on a real station (SoftHSM2,
// SQLite) over in-process links to the simulator's device logic, watched through its
// EventBus as the HTTP API and the page see it.
#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include "db/sqlite.hpp"
#include "inprocess_line.hpp"
#include "station_dir.hpp"

namespace station::test {
namespace {

// Fixture 1 provisions two devices; fixture 2's only device fails every COMMIT and is set
// aside after the line's three attempts. The tile of fixture 2 must count that device as
// failed in the event that sets it aside, not only when something else changes later.
TEST(LineEvents, ASetAsideDeviceCountsOnItsFixtureTileInTheSameEvent) {
  StationDir st;
  core::Station station(st.data(), std::nullopt);
  const auto batch = open_test_batch(station, "EV", 3);
  InProcessFixtures fx({{2, false}, {1, true}});
  WatchedLine watched(station, batch, fx, std::chrono::milliseconds(5));
  auto& sub = watched.sub;
  const auto& summary = watched.summary;

  // The set-aside device stays in its fixture until an operator takes it out, so nothing
  // else happens on fixture 2 after it is given up: watch until then (and fixture 1 has
  // finished), give the line a moment, and stop it.
  std::vector<core::Event> events;
  bool given_up = false;
  int done = 0;
  collect_until(*sub, events, [&](const core::Event& e) {
    if (e.type == "device" && e.data.value("state", "") == "failed" && e.data.value("fixture", 0) == 2) given_up = true;
    if (e.type == "device" && e.data.value("state", "") == "done") ++done;
    return given_up && done >= 2;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  watched.stop();
  sub->take(events);
  EXPECT_EQ(summary.done, 2);
  EXPECT_EQ(summary.failed, 1);

  // After the device event that gives fixture 2's device up, a fixture event for fixture 2
  // must carry failed = 1.
  bool seen_give_up = false, counted = false;
  std::map<int, nlohmann::json> last_tile;
  for (const auto& e : events) {
    if (e.type == "fixture") {
      const int n = e.data.value("number", 0);
      last_tile[n] = e.data;
      if (seen_give_up && n == 2 && e.data.value("failed", 0) == 1) counted = true;
    } else if (e.type == "device" && e.data.value("state", "") == "failed" && e.data.value("fixture", 0) == 2) {
      seen_give_up = true;
    }
  }
  EXPECT_TRUE(given_up) << "no device event gave fixture 2's device up";
  EXPECT_TRUE(counted) << "fixture 2's tile was not republished with its failed count";
  ASSERT_EQ(last_tile.count(1), 1U);
  ASSERT_EQ(last_tile.count(2), 1U);
  EXPECT_EQ(last_tile[1].value("done", 0), 2);
  EXPECT_EQ(last_tile[2].value("failed", 0), 1);
  EXPECT_EQ(last_tile[2].value("status", ""), "failed");
}

// The HSM goes away mid-batch (every C_Sign answers CKR_DEVICE_REMOVED while a file
// exists, through the forwarding PKCS#11 module in front of SoftHSM2): the fixtures pause
// with "HSM unavailable", an alarm goes out, no device fails for it, and when the HSM comes
// back the same devices finish, each with one certificate.
TEST(LineEvents, AnHsmThatGoesAwayPausesTheFixturesAndNoDeviceFailsForIt) {
  StationDir st;
  const auto gate = st.data() / "hsm-unplugged";
  write_file(gate, "");
  ::setenv("P11SHIM_FAIL_WHILE", gate.c_str(), 1);
  ::setenv("P11SHIM_FAIL_CALL", "C_Sign", 1);
  struct Unset {
    ~Unset() {
      ::unsetenv("P11SHIM_FAIL_WHILE");
      ::unsetenv("P11SHIM_FAIL_CALL");
    }
  } unset;
  const auto conf = st.config_with({{std::string("module = '") + STATION_SOFTHSM_MODULE + "'",
                                     std::string("module = '") + STATION_P11SHIM + "'"}},
                                   "unplugged.conf");
  write_file(conf, read_file(conf) + "\n[line]\nhsm_retry_ms = 50\n");
  core::Station station(st.data(), conf);
  const auto batch = open_test_batch(station, "HSM", 4);
  InProcessFixtures fx({{2, false}, {2, false}});
  WatchedLine watched(station, batch, fx, std::chrono::milliseconds(5));
  auto& sub = watched.sub;
  const auto& summary = watched.summary;

  // Both fixtures reach issuance and pause there; the alarm names the HSM.
  std::vector<core::Event> events;
  std::set<int> paused;
  bool alarm = false;
  const bool both_paused = collect_until(*sub, events, [&](const core::Event& e) {
    if (e.type == "alarm" && e.data.value("hsm", "") == "unavailable") alarm = true;
    if (e.type == "fixture" && e.data.value("status", "") == "paused" && e.data.value("reason", "") == "HSM unavailable")
      paused.insert(e.data.value("number", 0));
    return alarm && paused.size() == 2;
  });
  EXPECT_TRUE(both_paused) << "alarm " << alarm << ", paused fixtures " << paused.size();
  // Let it retry a while (every 50 ms): still nothing failed.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  sub->take(events);
  for (const auto& e : events)
    EXPECT_FALSE(e.type == "device" && e.data.value("state", "") == "failed") << e.data.dump();

  // Plugged back in: the line goes on by itself.
  std::filesystem::remove(gate);
  int done = 0;
  bool back = false;
  const bool finished = collect_until(*sub, events, [&](const core::Event& e) {
    if (e.type == "alarm" && e.data.value("hsm", "") == "ok") back = true;
    if (e.type == "device" && e.data.value("state", "") == "done") ++done;
    return back && done == 4;
  });
  EXPECT_TRUE(finished) << "back " << back << ", done " << done;
  watched.stop();
  EXPECT_EQ(summary.done, 4);
  EXPECT_EQ(summary.failed, 0);

  // The records: four devices done, one active certificate each, no failure journaled.
  db::Connection c(st.data() / "station.db", true);
  auto q = c.prepare(
      "SELECT (SELECT count(*) FROM devices WHERE state = 'done'), (SELECT count(*) FROM identities WHERE status = "
      "'active'), (SELECT count(*) FROM identities), (SELECT count(*) FROM journal WHERE action = 'device.failed')");
  ASSERT_TRUE(q.step());
  EXPECT_EQ(q.int64(0), 4);
  EXPECT_EQ(q.int64(1), 4);
  EXPECT_EQ(q.int64(2), 4);
  EXPECT_EQ(q.int64(3), 0);
  auto why = c.prepare("SELECT details FROM journal WHERE action = 'device.failed'");
  while (why.step()) ADD_FAILURE() << "journaled: " << why.text(0);
}

// The fixture goes on while a device's label record (label.printed + device.done) commits.
// A device that stays in its fixture after BYE is detected again at once (poll 0), before
// that record is durable: it must be found done, never labelled or finished a second time.
TEST(LineEvents, ADeviceDetectedAgainWhileItsLabelRecordCommitsIsLabelledOnce) {
  StationDir st;
  core::Station station(st.data(), std::nullopt);
  const auto batch = open_test_batch(station, "AGAIN", 1);
  InProcessFixtures fx({{1, false}});  // one chip, which stays after BYE
  WatchedLine watched(station, batch, fx, std::chrono::milliseconds(0));
  auto& sub = watched.sub;
  const auto& summary = watched.summary;
  std::vector<core::Event> events;
  bool done = false;
  const bool seen_again = collect_until(*sub, events, [&](const core::Event& e) {
    if (e.type == "device" && e.data.value("state", "") == "done") done = true;
    const auto reason = e.data.find("reason");
    return done && e.type == "fixture" && reason != e.data.end() && reason->is_string() &&
           reason->get<std::string>().rfind("already provisioned", 0) == 0;
  });
  watched.stop();
  EXPECT_TRUE(seen_again) << "the device was not detected again as already provisioned";
  EXPECT_EQ(summary.done, 1);
  EXPECT_EQ(summary.failed, 0);

  db::Connection c(st.data() / "station.db", true);
  auto q = c.prepare(
      "SELECT (SELECT count(*) FROM labels), (SELECT count(*) FROM journal WHERE action = 'label.printed'), "
      "(SELECT count(*) FROM journal WHERE action = 'device.done'), (SELECT count(*) FROM devices WHERE state = 'done')");
  ASSERT_TRUE(q.step());
  EXPECT_EQ(q.int64(0), 1) << "labels printed";
  EXPECT_EQ(q.int64(1), 1);
  EXPECT_EQ(q.int64(2), 1);
  EXPECT_EQ(q.int64(3), 1);
}

}  // namespace
}  // namespace station::test
