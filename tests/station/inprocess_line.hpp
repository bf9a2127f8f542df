// A real ProvisioningLine on a real station (SoftHSM2, SQLite) over in-process links to the
// simulator's device logic, run on a thread of its own and watched through its EventBus:
// shared by the suites that drive the line in-process.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "core/batches.hpp"
#include "core/ca_lifecycle.hpp"
#include "core/events.hpp"
#include "core/pipeline.hpp"
#include "simdevice/device.hpp"
#include "simdevice/inprocess_link.hpp"

namespace station::test {

namespace sim = fixtures::sim;

// Fixtures over in-process links to simulated lines of devices (the simulator's device
// logic, no pty): {devices, fail_commit} per fixture, numbered from 1.
struct InProcessFixtures {
  std::vector<std::unique_ptr<sim::Line>> lines;
  std::vector<std::unique_ptr<sim::Endpoint>> endpoints;
  std::vector<core::FixtureSection> sections;

  explicit InProcessFixtures(const std::vector<std::pair<unsigned, bool>>& spec) : InProcessFixtures(options_of(spec)) {}
  // One fixture per LineOptions (e.g. a flash_file: one chip that stays, kept in that file).
  explicit InProcessFixtures(const std::vector<sim::LineOptions>& spec) {
    int k = 0;
    for (const auto& lo : spec) {
      lines.push_back(std::make_unique<sim::Line>(lo));
      endpoints.push_back(std::make_unique<sim::Endpoint>(*lines.back()));
      core::FixtureSection f;
      f.number = ++k;
      f.link.name = "fixture " + std::to_string(k);
      f.link.transport = "serial";
      f.link.port = "in-process";
      sections.push_back(f);
    }
  }
  static std::vector<sim::LineOptions> options_of(const std::vector<std::pair<unsigned, bool>>& spec) {
    std::vector<sim::LineOptions> out;
    for (const auto& [devices, fail_commit] : spec) {
      sim::LineOptions lo;
      lo.devices = devices;
      lo.faults.fail_commit = fail_commit;
      out.push_back(lo);
    }
    return out;
  }
  void attach(core::LineOptions& lo) {
    lo.fixtures = sections;
    lo.open_link = [this](fixtures::asio::any_io_executor ex,
                          const core::FixtureSection& f) -> std::unique_ptr<fixtures::Link> {
      return std::make_unique<sim::InProcessLink>(ex, *endpoints[static_cast<std::size_t>(f.number - 1)]);
    };
  }
};

inline core::Batch open_test_batch(core::Station& station, const std::string& name, std::int64_t quantity,
                                   bool lock = false) {
  const std::string actor = core::os_user();
  core::refresh_crls(station, actor, station.config().resolve(station.config().line.crl_dir));
  core::BatchSettings settings;
  settings.product = "Widget";
  settings.quantity = quantity;
  settings.serial_pattern = name + "-{seq:04}";
  settings.key_mode = "station";
  settings.lock = lock;
  return core::open_batch(station, name, settings, actor);
}

// A ProvisioningLine over in-process fixtures, run on a thread of its own and watched through
// its event bus; stopped (and joined) by stop() or, should a test end early, on destruction.
struct WatchedLine {
  core::EventBus bus{4096};
  std::shared_ptr<core::EventBus::Subscription> sub = bus.subscribe(0, 4096);
  std::unique_ptr<core::ProvisioningLine> line;
  core::LineSummary summary;
  std::thread runner;

  WatchedLine(core::Station& station, const core::Batch& batch, InProcessFixtures& fx, std::chrono::milliseconds poll) {
    core::LineOptions lo;
    lo.batch = batch.name;
    lo.actor = core::os_user();
    lo.poll = poll;
    fx.attach(lo);
    line = std::make_unique<core::ProvisioningLine>(station, lo, &bus);
    runner = std::thread([this] { summary = line->run(); });
  }
  WatchedLine(const WatchedLine&) = delete;
  WatchedLine& operator=(const WatchedLine&) = delete;
  ~WatchedLine() {
    if (runner.joinable()) stop();
  }
  void stop() {
    line->stop();
    runner.join();
  }
};

// Takes what the subscription has until `done(event)` returned true for some event, or the
// time is up; returns whether it did.
inline bool collect_until(core::EventBus::Subscription& sub, std::vector<core::Event>& into,
                   const std::function<bool(const core::Event&)>& done,
                   std::chrono::seconds limit = std::chrono::seconds(120)) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    std::vector<core::Event> more;
    sub.wait(more, std::chrono::milliseconds(100));
    bool hit = false;
    for (const auto& e : more) hit = done(e) || hit;
    into.insert(into.end(), more.begin(), more.end());
    if (hit) return true;
  }
  return false;
}

}  // namespace station::test
