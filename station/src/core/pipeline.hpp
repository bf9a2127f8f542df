// The station on the line: every fixture driven at once, each device taken through
//   detected -> reserved -> keyed -> issued -> written -> verified -> [locked] -> labelled -> done
// or failed(reason), each state journaled durably before the next side effect (DESIGN.md,
// per-device pipeline). Idempotent by chip id: a device that comes back continues with the
// serial and MAC it reserved; a certificate issued but not proven on the device is voided
// and recorded for revocation. docs/pipeline.md describes the states, the recovery rules
// and what an operator sees.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.hpp"
#include "core/events.hpp"
#include "core/station.hpp"
#include "fixtures/link.hpp"

namespace station::core {

struct LineOptions {
  std::string batch;                      // empty: the only open batch
  std::vector<FixtureSection> fixtures;   // empty: the config's [fixtures]
  std::string actor;                      // who runs the line (journal actor)
  std::chrono::milliseconds poll{250};    // HELLO polling of an empty fixture
  int max_attempts = 3;                   // per device at one fixture before it is set aside
  unsigned threads = 2;                   // io threads (fixtures are coroutines on strands)
  // Stop once this many devices have left their fixtures (done or set aside); 0: run until
  // stop() (or, with stop_when_complete, until the batch is complete).
  std::int64_t stop_after_devices = 0;
  bool stop_when_complete = false;
  bool stop_when_closed = false;          // stop when the batch is closed (serve: next batch)
  // Demo/test: stop when every fixture has been empty for this long (0: never).
  std::chrono::milliseconds stop_when_idle{0};
  std::function<void(const nlohmann::json& device)> on_device;  // each device that left
  // Opens a fixture's link (default: fixtures::open_link with the fixture's config). The
  // benchmark passes in-process simulator links here; give the link the executor passed.
  std::function<std::unique_ptr<fixtures::Link>(boost::asio::any_io_executor, const FixtureSection&)> open_link;
};

struct DeviceOutcome {
  std::string serial, chip_id, fixture, state, reason;
};

struct LineSummary {
  std::string batch;
  std::int64_t done = 0;           // devices done in this run
  std::int64_t failed = 0;         // devices set aside in this run (each once)
  std::vector<DeviceOutcome> failures;
  double seconds = 0;
};

class ProvisioningLine final : public LineView {
 public:
  ProvisioningLine(Station& station, LineOptions options, EventBus* bus = nullptr);
  ~ProvisioningLine() override;
  ProvisioningLine(const ProvisioningLine&) = delete;
  ProvisioningLine& operator=(const ProvisioningLine&) = delete;

  // Runs every fixture until stop() or a stop condition of the options. Blocks.
  LineSummary run();
  void stop();  // thread-safe, async-signal-unsafe

  std::vector<FixtureView> fixtures() const override;
  nlohmann::json progress() const override;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// At start: finds every device left in flight by a crash or power cut and resumes or voids
// it, one journal entry ("device.recovered") per device: a key made but not certified is
// forgotten (back to reserved); a certificate issued but not known to be written is voided
// and recorded for revocation (cessationOfOperation); a device proven on the device with
// nothing left to write (locked, or verified in a batch without lock) gets its label and is
// done (the stop may have come after it was released); other written/verified devices are
// verified again when they come back; a labelled device is done. One line per device.
std::vector<std::string> recover_in_flight(Station& station, const std::string& actor);

// Test hook: with STATION_CRASH_AFTER=<state>:<n> the process kills itself (SIGKILL) right
// after journaling `state` for the n-th time; `station init` has two more points,
// `init.keys` (keys made on the token) and `init.journal` (records written, no station.conf).
void crash_point(const std::string& state);

}  // namespace station::core
