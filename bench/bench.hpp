// The benchmark's parts (issue 11; docs/performance.md). Each subcommand of station_bench
// measures one thing in its own process (so peak memory is its own) and prints one JSON
// object; `station_bench report` puts them into the table. scripts/bench runs them all.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/station.hpp"
#include "fixtures/frame.hpp"
#include "fixtures/link.hpp"

namespace station::bench {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0);
// Peak resident set of this process (VmHWM), in MiB.
double peak_rss_mb();
// The folder this program lives in (the counting PKCS#11 module sits beside it).
fs::path self_dir();

// A fresh station (embedded SoftHSM2 token, root/issuing/audit keys, database) in `dir`,
// which must not exist. With `count_signatures` its station.conf loads the counting
// forwarder (p11count.cpp) instead of SoftHSM2 itself.
void make_station(const fs::path& dir, bool count_signatures);
// C_Sign calls through the counting forwarder so far (0 when it is not loaded).
std::uint64_t hsm_signatures();

// Counts what crosses a fixture's link: bytes both ways and the CHALLENGE requests the
// station sends (each answer is verified by DeviceClient::prove_possession, or the device
// fails). Shared by every link the line opens.
struct LinkCounters {
  std::atomic<std::uint64_t> bytes_sent{0}, bytes_received{0}, challenges{0};
};

class CountingLink final : public fixtures::Link {
 public:
  CountingLink(std::unique_ptr<fixtures::Link> inner, std::shared_ptr<LinkCounters> counters)
      : inner_(std::move(inner)), counters_(std::move(counters)), decoder_(fixtures::kMaxPayloadLimit) {}
  std::string describe() const override { return inner_->describe(); }
  fixtures::asio::any_io_executor get_executor() override { return inner_->get_executor(); }
  fixtures::asio::awaitable<void> write(ByteView data, std::error_code& ec) override;
  fixtures::asio::awaitable<std::size_t> read_some(std::span<std::uint8_t> buf, std::error_code& ec) override;
  void cancel() noexcept override { inner_->cancel(); }
  void discard_input() noexcept override { inner_->discard_input(); }
  void close() noexcept override { inner_->close(); }
  unsigned baud() const noexcept override { return inner_->baud(); }

 private:
  std::unique_ptr<fixtures::Link> inner_;
  std::shared_ptr<LinkCounters> counters_;
  fixtures::FrameDecoder decoder_;
};

// Nearest-rank percentile of `v` (sorted in place); 0 when empty.
double percentile(std::vector<double>& v, double p);

struct HsmOptions {
  double seconds = 3;
};
nlohmann::json run_hsm(const fs::path& work, const HsmOptions& o);

struct LineBenchOptions {
  std::int64_t devices = 1000;
  int fixtures = 8;
  // serial: simdevice processes on pseudo-terminals at `baud` (0: in-process links)
  unsigned baud = 0;
  fs::path simdevice;
  // where labels go: "tcp" (a loopback label printer, PrinterSink) or "dir" (the spool folder)
  std::string printer = "tcp";
};
nlohmann::json run_line(const fs::path& work, const LineBenchOptions& o);

struct RecordsOptions {
  std::int64_t devices = 1000000;
  bool line_journal = false;  // the line's nine entries per device instead of one
};
nlohmann::json run_records(const fs::path& work, const RecordsOptions& o);
// The records of `devices` provisioned devices of batch `batch` (serials REC-0000001 ...),
// written through the journal in chunks of 2,048 devices; returns the entries written.
std::int64_t generate_records(core::Station& station, std::int64_t batch, std::int64_t devices, bool line_journal);

struct FloorOptions {
  double seconds = 1;            // per operation
  std::int64_t journal_devices = 4000;
  int fixtures = 8;
  unsigned cores = 0;            // 0: this machine's
};
// The work no pipeline can skip per device, each operation timed alone on one thread
// (floor.cpp): its CPU sum bounds devices/s on the machine's cores.
nlohmann::json run_floor(const fs::path& work, const FloorOptions& o);

// The table and the JSON from the parts' results in `dir`.
nlohmann::json report(const fs::path& dir, std::ostream& table);

}  // namespace station::bench
