// The station side of the USB tests: runs the provisioning exchange (or one step) through
// the real UsbLink and libusb, as a separate program so the tests can run it under
// LD_PRELOAD=libumockdev-preload.so.0 against an emulated device. Prints one line:
//   verdict stage=<s> committed=<0|1> locked=<0|1> ended=<0|1> errc=<name|none> resends=<n>
// then, on failure, "error: <message>".
//
// With --wait-ms N (and --poll to force the polling mechanism) a UsbWatcher comes first:
//   watch mechanism=<hotplug|polling> present=<0|1>
//   arrived after_ms=<n> arrivals=<k>        (or: no device after_ms=<n>, when N ms pass)
// and --ready-file PATH is created once the watcher is running, so the test knows when to
// plug the device in. With --wait-absent-ms N the watcher then waits for the device to be
// pulled out after the exchange (the link closed): left after_ms=<n> | still present after_ms=<n>.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "exchange.hpp"
#include "fixtures/usb_link.hpp"
#include "fixtures/usb_watch.hpp"

using namespace station::fixtures;

namespace {

long long ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
}

// Waits for the device to arrive (present) or leave, at most `ms`, the way the pipeline
// would: a deadline that cancels the watcher's wait. True when it happened in time.
bool wait_bounded(asio::io_context& io, const asio::any_io_executor& strand, UsbWatcher& watcher, bool present,
                  long ms) {
  bool happened = false;
  asio::steady_timer deadline(strand, std::chrono::milliseconds(ms));
  deadline.async_wait([&](const boost::system::error_code& ec) {
    if (!ec) watcher.cancel();
  });
  asio::co_spawn(
      strand,
      [&]() -> asio::awaitable<void> {
        try {
          // Not co_await (c ? a() : b()): g++ 12 frees that temporary awaitable twice (ASan: use after free).
          if (present)
            co_await watcher.wait_present();
          else
            co_await watcher.wait_absent();
          happened = true;
        } catch (const station::Error& e) {
          if (!UsbWatcher::cancelled(e)) std::printf("error: %s\n", e.what());
        }
        deadline.cancel();
      },
      asio::detached);
  io.restart();
  io.run();
  return happened;
}

}  // namespace

int main(int argc, char** argv) {
  std::string spec = "1209:0001";
  std::string mode = "on-device";
  std::string ready_file;
  long wait_ms = -1;
  long wait_absent_ms = -1;
  UsbWatchOptions watch_options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--poll") {
      watch_options.force_polling = true;
      continue;
    }
    if (i + 1 >= argc) break;
    const char* value = argv[++i];
    if (arg == "--usb") spec = value;
    if (arg == "--mode") mode = value;
    if (arg == "--wait-ms") wait_ms = std::atol(value);
    if (arg == "--wait-absent-ms") wait_absent_ms = std::atol(value);
    if (arg == "--ready-file") ready_file = value;
  }
  asio::io_context io;
  const asio::any_io_executor strand = asio::make_strand(io);
  test::Verdict v;
  std::unique_ptr<UsbWatcher> watcher;
  try {
    if (wait_ms >= 0 || wait_absent_ms >= 0) {
      watcher = std::make_unique<UsbWatcher>(strand, UsbSelector::parse(spec), watch_options);
      std::printf("watch mechanism=%s present=%d\n", watcher->mechanism_name(), watcher->present() ? 1 : 0);
      if (!ready_file.empty()) std::ofstream(ready_file) << "watching\n";
    }
    if (wait_ms >= 0) {
      const auto t0 = std::chrono::steady_clock::now();
      if (wait_bounded(io, strand, *watcher, true, wait_ms))
        std::printf("arrived after_ms=%lld arrivals=%llu\n", ms_since(t0),
                    static_cast<unsigned long long>(watcher->arrivals()));
      else
        std::printf("no device after_ms=%lld\n", ms_since(t0));
    }
    auto link = UsbLink::open(strand, UsbSelector::parse(spec), "fixture 5");
    std::printf("endpoints out=0x%02x in=0x%02x\n", link->endpoint_out(), link->endpoint_in());
    DeviceClient client(std::move(link), test::fast_options("fixture 5"));
    const auto bundle = test::make_bundle(mode == "injected" ? test::KeyMode::injected : test::KeyMode::on_device);
    v = test::provision(io, client, bundle);
  } catch (const station::Error& e) {
    v.stage = "open";
    v.error = e;
  }
  std::printf("verdict stage=%s committed=%d locked=%d ended=%d errc=%s resends=%llu\n", v.stage.c_str(), v.committed ? 1 : 0,
              v.locked ? 1 : 0, v.ended ? 1 : 0, v.error ? station::errc_name(v.error->code()) : "none",
              static_cast<unsigned long long>(v.stats.resends));
  if (v.error) std::printf("error: %s\n", v.error->what());
  // The client (and with it the link) is gone: the device may be pulled out now.
  if (watcher && wait_absent_ms >= 0) {
    const auto t0 = std::chrono::steady_clock::now();
    if (wait_bounded(io, strand, *watcher, false, wait_absent_ms))
      std::printf("left after_ms=%lld\n", ms_since(t0));
    else
      std::printf("still present after_ms=%lld\n", ms_since(t0));
  }
  return 0;
}
