// The line's live events in-process: a real ProvisioningLine on a real station (SoftHSM2,
// SQLite) over in-process links to the simulator's device logic, watched through its
// EventBus as the HTTP API and the page see it.
#include <gtest/gtest.h>

#include <map>
#include <thread>

#include "core/batches.hpp"
#include "core/ca_lifecycle.hpp"
#include "core/events.hpp"
#include "core/pipeline.hpp"
#include "simdevice/device.hpp"
#include "simdevice/inprocess_link.hpp"
#include "station_dir.hpp"

namespace station::test {
namespace {

namespace sim = fixtures::sim;

// Fixture 1 provisions two devices; fixture 2's only device fails every COMMIT and is set
// aside after the line's three attempts. The tile of fixture 2 must count that device as
// failed in the event that sets it aside, not only when something else changes later.
TEST(LineEvents, ASetAsideDeviceCountsOnItsFixtureTileInTheSameEvent) {
  StationDir st;
  core::Station station(st.data(), std::nullopt);
  const std::string actor = core::os_user();
  core::refresh_crls(station, actor, station.config().resolve(station.config().line.crl_dir));
  core::BatchSettings settings;
  settings.product = "Widget";
  settings.quantity = 3;
  settings.serial_pattern = "EV-{seq:04}";
  settings.key_mode = "station";
  const auto batch = core::open_batch(station, "WO-EV", settings, actor);

  std::vector<std::unique_ptr<sim::Line>> lines;
  std::vector<std::unique_ptr<sim::Endpoint>> endpoints;
  std::vector<core::FixtureSection> fixtures;
  for (int k = 1; k <= 2; ++k) {
    sim::LineOptions lo;
    lo.devices = k == 1 ? 2 : 1;
    lo.faults.fail_commit = k == 2;
    lines.push_back(std::make_unique<sim::Line>(lo));
    endpoints.push_back(std::make_unique<sim::Endpoint>(*lines.back()));
    core::FixtureSection f;
    f.number = k;
    f.link.name = "fixture " + std::to_string(k);
    f.link.transport = "serial";
    f.link.port = "in-process";
    fixtures.push_back(f);
  }

  core::EventBus bus(4096);
  const auto sub = bus.subscribe(0, 4096);
  core::LineOptions lo;
  lo.batch = batch.name;
  lo.fixtures = fixtures;
  lo.actor = actor;
  lo.poll = std::chrono::milliseconds(5);
  lo.open_link = [&](fixtures::asio::any_io_executor ex, const core::FixtureSection& f) -> std::unique_ptr<fixtures::Link> {
    return std::make_unique<sim::InProcessLink>(ex, *endpoints[static_cast<std::size_t>(f.number - 1)]);
  };
  core::ProvisioningLine line(station, lo, &bus);
  core::LineSummary summary;
  std::thread runner([&] { summary = line.run(); });

  // The set-aside device stays in its fixture until an operator takes it out, so nothing
  // else happens on fixture 2 after it is given up: watch until then (and fixture 1 has
  // finished), give the line a moment, and stop it.
  std::vector<core::Event> events;
  bool given_up = false;
  int done = 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while ((!given_up || done < 2) && std::chrono::steady_clock::now() < until) {
    std::vector<core::Event> more;
    sub->wait(more, std::chrono::milliseconds(200));
    for (const auto& e : more) {
      if (e.type == "device" && e.data.value("state", "") == "failed" && e.data.value("fixture", 0) == 2) given_up = true;
      if (e.type == "device" && e.data.value("state", "") == "done") ++done;
    }
    events.insert(events.end(), more.begin(), more.end());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  line.stop();
  runner.join();
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

}  // namespace
}  // namespace station::test
