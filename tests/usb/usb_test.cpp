// USB fixtures through the real libusb code path against an emulated device: the test
// process is the device (a UMockdevTestbed with a vendor interface and bulk endpoints
// 0x01/0x81, whose usbdevfs ioctls are answered by the simulator's logic), and the station
// code runs in a child process under LD_PRELOAD=libumockdev-preload.so.0.
#include <gtest/gtest.h>
#include <linux/ioctl.h>
#include <linux/usbdevice_fs.h>
#include <openssl/crypto.h>
#include <umockdev.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <utility>

#include "fixtures/usb_watch.hpp"
#include "simdevice/device.hpp"
#include "support.hpp"

namespace station::fixtures {
namespace {

using station::test::built_binary;
using station::test::run;

// What the emulated device does wrong, counted in bytes the station has sent.
struct UsbFaults {
  long long unplug_after = -1;   // then every URB fails with ENODEV (device gone)
  long long stall_after = -1;    // then the next IN URB completes with EPIPE (once)
  long long silent_after = -1;   // then the device never answers again (timeouts)
};

// Whether this process runs under umockdev's preload library. (umockdev_in_mock_environment()
// cannot tell before a testbed exists, and caches its first answer.)
bool under_umockdev_preload() {
  const char* preload = std::getenv("LD_PRELOAD");
  return preload != nullptr && std::strstr(preload, "libumockdev-preload") != nullptr;
}

class EmulatedUsbDevice {
 public:
  EmulatedUsbDevice(const std::filesystem::path& flash, UsbFaults faults, bool plugged = true)
      : line_(line_options(flash)), endpoint_(line_), faults_(faults) {
    testbed_ = umockdev_testbed_new();
    handler_ = umockdev_ioctl_base_new();
    g_signal_connect(handler_, "handle-ioctl", G_CALLBACK(&EmulatedUsbDevice::on_ioctl), this);
    if (plugged) plug();
  }
  ~EmulatedUsbDevice() {
    for (auto& u : pending_in_) release(u);
    for (auto& u : completed_) release(u);
    g_clear_object(&handler_);
    g_clear_object(&testbed_);
  }

  // Plugs the device in. Under umockdev's preload, adding it sends the "add" uevent by
  // itself, so the station's libusb hears of it; without the preload no uevent can be sent
  // (see UsbHotplug below) and only a fresh look at sysfs finds the device.
  void plug() {
    EXPECT_TRUE(umockdev_testbed_attach_ioctl(testbed_, "/dev/bus/usb/001/002", handler_, nullptr));
    // Bus 1, port 4: the physical port a fixture config would name as @1-4.
    // Device: VID 1209 PID 0001 (pid.codes test PID); one configuration with a vendor
    // interface and bulk OUT 0x01 / IN 0x81 of 512 bytes; no string descriptors.
    GError* error = nullptr;
    umockdev_testbed_add_from_string(testbed_,
                                     "P: /devices/usb1/1-4\n"
                                     "N: bus/usb/001/002\n"
                                     "E: SUBSYSTEM=usb\n"
                                     "E: DEVTYPE=usb_device\n"
                                     "E: BUSNUM=001\n"
                                     "E: DEVNUM=002\n"
                                     "E: DEVNAME=/dev/bus/usb/001/002\n"
                                     "A: busnum=1\\n\n"
                                     "A: devnum=2\\n\n"
                                     "A: bConfigurationValue=1\\n\n"
                                     "A: speed=480\\n\n"
                                     "H: descriptors=12010002000000400912010000010000000109022000010100803209040000"
                                     "02ff000000070501020002000705810200020000\n",
                                     &error);
    EXPECT_EQ(error, nullptr) << (error ? error->message : "");
    g_clear_error(&error);
  }

  // Pulls the device out: the "remove" uevent goes first, as umockdev reads the device's
  // properties for it from the sysfs folder that removing the device deletes.
  void unplug() {
    {
      std::lock_guard lock(mutex_);
      unplugged_ = true;
    }
    if (under_umockdev_preload()) umockdev_testbed_uevent(testbed_, kSysPath, "remove");
    umockdev_testbed_remove_device(testbed_, kSysPath);
  }

  // How often the station released the interface: it closed its link.
  int released() const { return released_; }

  const sim::FlashImage& flash() { return line_.current() ? line_.current()->flash() : empty_; }
  std::size_t out_urbs() const { return out_urbs_; }
  std::size_t in_urbs() const { return in_urbs_; }
  std::size_t other_endpoint_urbs() const { return other_urbs_; }

 private:
  static constexpr const char* kSysPath = "/sys/devices/usb1/1-4";

  struct Urb {
    UMockdevIoctlData* data = nullptr;    // struct usbdevfs_urb in the client
    UMockdevIoctlData* buffer = nullptr;  // its buffer
    gulong addr = 0;
  };

  static sim::LineOptions line_options(const std::filesystem::path& flash) {
    sim::LineOptions o;
    o.flash_file = flash;
    return o;
  }

  static void release(Urb& u) {
    if (u.buffer) umockdev_ioctl_data_unref(u.buffer);
    if (u.data) umockdev_ioctl_data_unref(u.data);
    u = {};
  }

  static void set_result(Urb& u, int status, int actual) {
    auto* urb = reinterpret_cast<usbdevfs_urb*>(u.data->data);
    urb->status = status;
    urb->actual_length = actual;
  }

  // Completes IN URBs with what the device has to say (or a stall).
  void fill_in_urbs() {
    while (!pending_in_.empty() && (stall_now_ || !to_station_.empty())) {
      Urb u = pending_in_.front();
      pending_in_.pop_front();
      if (stall_now_) {
        stall_now_ = false;
        set_result(u, -EPIPE, 0);
      } else {
        const auto n = std::min<std::size_t>(static_cast<std::size_t>(u.buffer->data_len), to_station_.size());
        std::vector<guint8> chunk(to_station_.begin(), to_station_.begin() + static_cast<std::ptrdiff_t>(n));
        to_station_.erase(to_station_.begin(), to_station_.begin() + static_cast<std::ptrdiff_t>(n));
        umockdev_ioctl_data_update(u.buffer, 0, chunk.data(), static_cast<gint>(chunk.size()));
        set_result(u, 0, static_cast<int>(n));
      }
      completed_.push_back(u);
    }
  }

  void on_bytes_from_station(ByteView bytes) {
    const long long before = out_bytes_;
    out_bytes_ += static_cast<long long>(bytes.size());
    const auto crossed = [&](long long limit) { return limit >= 0 && before <= limit && out_bytes_ > limit; };
    if (crossed(faults_.unplug_after)) unplugged_ = true;
    if (crossed(faults_.silent_after)) silent_ = true;
    if (crossed(faults_.stall_after)) stall_now_ = true;
    if (silent_ || unplugged_) return;
    std::vector<sim::Output> outs;
    endpoint_.receive(bytes, outs);
    for (const auto& o : outs) to_station_.insert(to_station_.end(), o.bytes.begin(), o.bytes.end());
  }

  static gboolean on_ioctl(UMockdevIoctlBase*, UMockdevIoctlClient* client, gpointer self_ptr) {
    auto* self = static_cast<EmulatedUsbDevice*>(self_ptr);
    std::lock_guard lock(self->mutex_);
    const gboolean handled = self->handle(client);
    // This runs on umockdev's own thread, which outlives the test: free OpenSSL's
    // per-thread state (its DRBGs) now, or LeakSanitizer reports it at exit.
    ::OPENSSL_thread_stop();
    return handled;
  }

  gboolean handle(UMockdevIoctlClient* client) {
    const gulong request = umockdev_ioctl_client_get_request(client);
    UMockdevIoctlData* arg = umockdev_ioctl_client_get_arg(client);
    switch (request) {
      case USBDEVFS_GET_CAPABILITIES: {
        UMockdevIoctlData* d = umockdev_ioctl_data_resolve(arg, 0, sizeof(guint32), nullptr);
        guint32 caps = USBDEVFS_CAP_BULK_CONTINUATION | USBDEVFS_CAP_NO_PACKET_SIZE_LIM | USBDEVFS_CAP_REAP_AFTER_DISCONNECT |
                       USBDEVFS_CAP_ZERO_PACKET;
        umockdev_ioctl_data_update(d, 0, reinterpret_cast<guint8*>(&caps), sizeof caps);
        umockdev_ioctl_data_unref(d);
        umockdev_ioctl_client_complete(client, 0, 0);
        return TRUE;
      }
      case USBDEVFS_RELEASEINTERFACE:
        ++released_;
        umockdev_ioctl_client_complete(client, unplugged_ ? -1 : 0, unplugged_ ? ENODEV : 0);
        return TRUE;
      case USBDEVFS_CLAIMINTERFACE:
      case USBDEVFS_DISCONNECT_CLAIM:
      case USBDEVFS_CLEAR_HALT:
      case USBDEVFS_RESET:
      case USBDEVFS_RESETEP:
      case USBDEVFS_SETINTERFACE:
        umockdev_ioctl_client_complete(client, unplugged_ ? -1 : 0, unplugged_ ? ENODEV : 0);
        return TRUE;
      case USBDEVFS_GETDRIVER:
      case USBDEVFS_IOCTL:
        umockdev_ioctl_client_complete(client, -1, ENODATA);  // no kernel driver bound
        return TRUE;
      case USBDEVFS_SUBMITURB: {
        if (unplugged_) {
          umockdev_ioctl_client_complete(client, -1, ENODEV);
          return TRUE;
        }
        Urb u;
        u.data = umockdev_ioctl_data_resolve(arg, 0, sizeof(usbdevfs_urb), nullptr);
        const auto* urb = reinterpret_cast<const usbdevfs_urb*>(u.data->data);
        u.buffer = umockdev_ioctl_data_resolve(u.data, offsetof(usbdevfs_urb, buffer), static_cast<gsize>(urb->buffer_length),
                                               nullptr);
        u.addr = u.data->client_addr;
        if (urb->type != USBDEVFS_URB_TYPE_BULK || (urb->endpoint != 0x01 && urb->endpoint != 0x81)) {
          ++other_urbs_;
          release(u);
          umockdev_ioctl_client_complete(client, -1, EINVAL);
          return TRUE;
        }
        if (urb->endpoint == 0x01) {
          ++out_urbs_;
          on_bytes_from_station(ByteView(u.buffer->data, static_cast<std::size_t>(u.buffer->data_len)));
          set_result(u, 0, u.buffer->data_len);
          completed_.push_back(u);
        } else {
          ++in_urbs_;
          pending_in_.push_back(u);
        }
        fill_in_urbs();
        umockdev_ioctl_client_complete(client, 0, 0);
        return TRUE;
      }
      case USBDEVFS_REAPURB:
      case USBDEVFS_REAPURBNDELAY: {
        if (unplugged_) {
          // The device is gone: what was in flight completes with ENODEV, then reaping fails.
          for (auto& u : pending_in_) {
            set_result(u, -ENODEV, 0);
            completed_.push_back(u);
          }
          pending_in_.clear();
        }
        if (completed_.empty()) {
          umockdev_ioctl_client_complete(client, -1, unplugged_ ? ENODEV : EAGAIN);
          return TRUE;
        }
        Urb u = completed_.front();
        completed_.pop_front();
        UMockdevIoctlData* ptr = umockdev_ioctl_data_resolve(arg, 0, sizeof(gpointer), nullptr);
        umockdev_ioctl_data_set_ptr(ptr, 0, u.data);
        umockdev_ioctl_data_unref(ptr);
        release(u);
        umockdev_ioctl_client_complete(client, 0, 0);
        return TRUE;
      }
      case USBDEVFS_DISCARDURB: {
        const gulong addr = *reinterpret_cast<gulong*>(arg->data);
        const auto it = std::find_if(pending_in_.begin(), pending_in_.end(), [&](const Urb& u) { return u.addr == addr; });
        if (it == pending_in_.end()) {
          umockdev_ioctl_client_complete(client, -1, EINVAL);
          return TRUE;
        }
        Urb u = *it;
        pending_in_.erase(it);
        set_result(u, -ENOENT, 0);
        completed_.push_back(u);
        umockdev_ioctl_client_complete(client, 0, 0);
        return TRUE;
      }
      default:
        return FALSE;
    }
  }

  sim::Line line_;
  sim::Endpoint endpoint_;
  UsbFaults faults_;
  sim::FlashImage empty_;
  UMockdevTestbed* testbed_ = nullptr;
  UMockdevIoctlBase* handler_ = nullptr;
  std::mutex mutex_;
  std::deque<Urb> pending_in_;
  std::deque<Urb> completed_;
  std::deque<std::uint8_t> to_station_;
  long long out_bytes_ = 0;
  bool unplugged_ = false;
  bool silent_ = false;
  bool stall_now_ = false;
  std::size_t out_urbs_ = 0;
  std::size_t in_urbs_ = 0;
  std::size_t other_urbs_ = 0;
  std::atomic<int> released_{0};
};

// The station's code under umockdev's preload (it must be dynamically linked; ASan then
// must not insist on coming first).
station::test::RunResult run_preloaded(const std::vector<std::string>& argv,
                                       std::map<std::string, std::string> env = {}) {
  env["LD_PRELOAD"] = "libumockdev-preload.so.0";
  env["ASAN_OPTIONS"] = "verify_asan_link_order=0:detect_leaks=0";
  return run(argv, env);
}

std::string exchange_line(const station::test::RunResult& r) {
  const auto at = r.out.find("verdict ");
  return at == std::string::npos ? std::string() : r.out.substr(at, r.out.find('\n', at) - at);
}

class UsbExchange : public ::testing::TestWithParam<const char*> {};

TEST_P(UsbExchange, FullProvisioningOverBulkEndpointsWithTheRealLibusbPath) {
  station::test::TempDir dir("fx-usb");
  EmulatedUsbDevice device(dir / "device.flash", {});
  const auto r = run_preloaded({built_binary("usb_exchange").string(), "--usb", "1209:0001@1-4", "--mode", GetParam()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("endpoints out=0x01 in=0x81"), std::string::npos) << r.out;
  EXPECT_EQ(exchange_line(r), "verdict stage=bye committed=1 locked=1 ended=1 errc=none resends=0") << r.out << r.err;
  // umockdev saw bulk transfers on the expected endpoints, and nothing else.
  EXPECT_GE(device.out_urbs(), 15U);
  EXPECT_GE(device.in_urbs(), 15U);
  EXPECT_EQ(device.other_endpoint_urbs(), 0U);
  const auto flash = sim::Flash::load(dir / "device.flash");
  EXPECT_TRUE(flash.locked);
  EXPECT_EQ(flash.items.size(), 7U);  // key + six items
}

INSTANTIATE_TEST_SUITE_P(BothKeyModes, UsbExchange, ::testing::Values("on-device", "injected"),
                         [](const auto& p) { return std::string(p.param) == "injected" ? "InjectedKey" : "OnDeviceKey"; });

TEST(UsbFixture, FailsCleanlyWithoutTheEmulatedDevice) {
  station::test::TempDir dir("fx-usb");
  EmulatedUsbDevice device(dir / "device.flash", {}, /*plugged=*/false);
  const auto r = run_preloaded({built_binary("usb_exchange").string(), "--usb", "1209:0001@1-4"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(exchange_line(r), "verdict stage=open committed=0 locked=0 ended=0 errc=not found resends=0") << r.out;
  EXPECT_NE(r.out.find("error: fixture 5 (usb 1209:0001@1-4): no such USB device; check the cable"), std::string::npos)
      << r.out;
}

TEST(UsbFixture, AWrongPortIsNotTheDevice) {
  station::test::TempDir dir("fx-usb");
  EmulatedUsbDevice device(dir / "device.flash", {});
  const auto r = run_preloaded({built_binary("usb_exchange").string(), "--usb", "1209:0001@1-3"});
  EXPECT_NE(exchange_line(r).find("errc=not found"), std::string::npos) << r.out << r.err;
}

TEST(UsbFixture, UnplugMidTransferIsReportedAndNotProvisioned) {
  station::test::TempDir dir("fx-usb");
  EmulatedUsbDevice device(dir / "device.flash", UsbFaults{.unplug_after = 1500});
  const auto r = run_preloaded({built_binary("usb_exchange").string(), "--usb", "1209:0001"});
  EXPECT_EQ(exchange_line(r), "verdict stage=put committed=0 locked=0 ended=0 errc=I/O error resends=0") << r.out << r.err;
  EXPECT_NE(r.out.find("error: fixture 5 (usb 1209:0001): device disconnected during PUT"), std::string::npos) << r.out;
  EXPECT_TRUE(device.flash().items.empty());
}

TEST(UsbFixture, AStalledEndpointGivesItsOwnError) {
  station::test::TempDir dir("fx-usb");
  EmulatedUsbDevice device(dir / "device.flash", UsbFaults{.stall_after = 1500});
  const auto r = run_preloaded({built_binary("usb_exchange").string(), "--usb", "1209:0001"});
  EXPECT_NE(exchange_line(r).find("committed=0"), std::string::npos) << r.out << r.err;
  EXPECT_NE(r.out.find("USB endpoint stalled"), std::string::npos) << r.out;
  EXPECT_TRUE(device.flash().items.empty());
}

TEST(UsbFixture, ASilentDeviceTimesOutAndIsNotProvisioned) {
  station::test::TempDir dir("fx-usb");
  EmulatedUsbDevice device(dir / "device.flash", UsbFaults{.silent_after = 1500});
  const auto r = run_preloaded({built_binary("usb_exchange").string(), "--usb", "1209:0001"});
  EXPECT_NE(exchange_line(r).find("stage=put committed=0 locked=0 ended=0 errc=timed out"), std::string::npos)
      << r.out << r.err;
  EXPECT_NE(r.out.find("device did not answer PUT within"), std::string::npos) << r.out;
  EXPECT_TRUE(device.flash().items.empty());
}

// Hot-plug: a fixture waits for its device to be plugged in (UsbWatcher in usb_exchange),
// provisions it, and sees it pulled out.
//
// umockdev delivers uevents to the libudev monitor (and so to libusb) of a process under
// its preload, but it builds each uevent in the process that calls umockdev_testbed_uevent()
// (or adds a device), looking the device up there with libudev (uevent_sender.c). A test
// process outside the preload looks in the real /sys, finds nothing ("uevent_sender_send: No
// such device") and sends nothing, so libusb's hot-plug callbacks never fire. umockdev's
// README says to run such test suites under the preload (umockdev-wrapper); the tests that
// need uevents therefore run themselves again under it. The polling tests stay outside on
// purpose: no uevent can reach libusb there, as in a container without udevd.

// Runs the current test again in a child under umockdev's preload and passes its result on.
void rerun_under_preload() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string filter = std::string(info->test_suite_name()) + "." + info->name();
  const auto r = run_preloaded({std::filesystem::read_symlink("/proc/self/exe").string(), "--gtest_filter=" + filter});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("[  PASSED  ] 1 test"), std::string::npos) << r.out << r.err;
}

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

std::string line_starting(const station::test::RunResult& r, const std::string& prefix) {
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(prefix, 0) == 0) return line;
  return {};
}

// "arrived after_ms=<n> arrivals=<k>" as {n, k}, or {-1, -1}.
std::pair<long, long> arrival(const station::test::RunResult& r) {
  long ms = -1, count = -1;
  if (std::sscanf(line_starting(r, "arrived ").c_str(), "arrived after_ms=%ld arrivals=%ld", &ms, &count) != 2)
    return {-1, -1};
  return {ms, count};
}

constexpr const char* kProvisioned = "verdict stage=bye committed=1 locked=1 ended=1 errc=none resends=0";

// Starts usb_exchange waiting (at most 5 s) for its device, plugs the device in 300 ms after
// the watcher is running, and returns what the program printed once it has provisioned it.
station::test::RunResult plug_in_while_watching(const std::vector<std::string>& options,
                                                const std::map<std::string, std::string>& env = {}) {
  station::test::TempDir dir("fx-usb");
  EmulatedUsbDevice device(dir / "device.flash", {}, /*plugged=*/false);
  const auto ready = dir / "watching";
  std::vector<std::string> argv{built_binary("usb_exchange").string(), "--usb", "1209:0001@1-4", "--wait-ms", "5000",
                                "--ready-file", ready.string()};
  argv.insert(argv.end(), options.begin(), options.end());
  auto child = std::async(std::launch::async, [&] { return run_preloaded(argv, env); });
  EXPECT_TRUE(wait_until([&] { return std::filesystem::exists(ready); }, std::chrono::seconds(5)))
      << "usb_exchange did not start watching";
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  device.plug();
  auto r = child.get();
  EXPECT_TRUE(sim::Flash::load(dir / "device.flash").locked) << r.out << r.err;
  return r;
}

// Starts usb_exchange with the device plugged in and a watcher that waits for it (at once: it
// is there), then (at most 5 s) for it to leave; pulls the device out once the program has
// provisioned it and closed its link.
station::test::RunResult pull_out_after_provisioning(const std::vector<std::string>& options,
                                                     const std::map<std::string, std::string>& env = {}) {
  station::test::TempDir dir("fx-usb");
  EmulatedUsbDevice device(dir / "device.flash", {});
  std::vector<std::string> argv{built_binary("usb_exchange").string(), "--usb", "1209:0001@1-4", "--wait-ms", "5000",
                                "--wait-absent-ms", "5000"};
  argv.insert(argv.end(), options.begin(), options.end());
  auto child = std::async(std::launch::async, [&] { return run_preloaded(argv, env); });
  EXPECT_TRUE(wait_until([&] { return device.released() > 0; }, std::chrono::seconds(8)))
      << "usb_exchange never released the interface";
  device.unplug();
  return child.get();
}

TEST(UsbHotplug, ADevicePluggedInLaterIsSeenByHotplugCallbacksAndProvisioned) {
  if (!under_umockdev_preload()) return rerun_under_preload();
  const auto r = plug_in_while_watching({});
  // libusb 1.0.26 on Linux (udev backend) has the capability, and its udev monitor hears
  // umockdev's uevent: the real callback path, not the polling fallback.
  EXPECT_EQ(line_starting(r, "watch "), "watch mechanism=hotplug present=0") << r.out << r.err;
  const auto [ms, count] = arrival(r);
  EXPECT_EQ(count, 1) << r.out << r.err;
  EXPECT_GE(ms, 250) << r.out;  // it waited for the plug, not found the device at start
  EXPECT_EQ(exchange_line(r), kProvisioned) << r.out << r.err;
}

TEST(UsbHotplug, ADevicePluggedInLaterIsSeenByPollingWithoutAnyUevent) {
  // Outside the preload on purpose: no uevent reaches libusb, so only polling sees the device.
  const auto r = plug_in_while_watching({"--poll"});
  EXPECT_EQ(line_starting(r, "watch "), "watch mechanism=polling present=0") << r.out << r.err;
  const auto [ms, count] = arrival(r);
  EXPECT_EQ(count, 1) << r.out << r.err;
  EXPECT_GE(ms, 250) << r.out;
  EXPECT_LT(ms, 300 + 500 + 1500) << r.out;  // within a poll interval (500 ms) of the plug, plus start-up slack
  EXPECT_EQ(exchange_line(r), kProvisioned) << r.out << r.err;
}

TEST(UsbHotplug, APulledOutDeviceIsSeenLeavingByHotplugCallbacks) {
  if (!under_umockdev_preload()) return rerun_under_preload();
  const auto r = pull_out_after_provisioning({});
  EXPECT_EQ(line_starting(r, "watch "), "watch mechanism=hotplug present=1") << r.out << r.err;
  const auto [ms, count] = arrival(r);
  EXPECT_EQ(count, 0) << r.out << r.err;  // present from the start: not an arrival
  EXPECT_LT(ms, 1000) << r.out;  // at once, not at the 5 s limit
  EXPECT_EQ(exchange_line(r), kProvisioned) << r.out << r.err;
  EXPECT_EQ(line_starting(r, "left ").rfind("left after_ms=", 0), 0U) << r.out << r.err;
}

TEST(UsbHotplug, APulledOutDeviceIsSeenLeavingByPollingWhenStationUsbPollIsSet) {
  const auto r = pull_out_after_provisioning({}, {{"STATION_USB_POLL", "1"}});
  EXPECT_EQ(line_starting(r, "watch "), "watch mechanism=polling present=1") << r.out << r.err;
  const auto [ms, count] = arrival(r);
  EXPECT_EQ(count, 0) << r.out << r.err;  // present from the start: not an arrival
  EXPECT_LT(ms, 1000) << r.out;  // at once, not at the 5 s limit
  EXPECT_EQ(exchange_line(r), kProvisioned) << r.out << r.err;
  EXPECT_EQ(line_starting(r, "left ").rfind("left after_ms=", 0), 0U) << r.out << r.err;
}

TEST(UsbHotplug, DestroyingTheWatcherCancelsItsPendingWait) {
  if (!under_umockdev_preload()) return rerun_under_preload();  // so libusb sees the (empty) testbed
  station::test::TempDir dir("fx-usb");
  EmulatedUsbDevice device(dir / "device.flash", {}, /*plugged=*/false);
  asio::io_context io;
  const asio::any_io_executor strand = asio::make_strand(io);
  auto watcher = std::make_unique<UsbWatcher>(strand, UsbSelector::parse("1209:0001@1-4"));
  EXPECT_FALSE(watcher->present());
  std::optional<Error> error;
  bool finished = false;
  asio::co_spawn(
      strand,
      [&]() -> asio::awaitable<void> {
        try {
          co_await watcher->wait_present();
        } catch (const Error& e) {
          error = e;
        }
        finished = true;
      },
      asio::detached);
  io.run_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(finished);  // nothing arrived
  watcher.reset();
  io.run_for(std::chrono::seconds(2));
  ASSERT_TRUE(finished);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code(), Errc::timeout);
  EXPECT_TRUE(UsbWatcher::cancelled(*error));
  EXPECT_STREQ(error->what(), "watching usb 1209:0001@1-4: waiting for the device to arrive was cancelled");
}

TEST(UsbHotplug, AWaitForADeviceThatNeverComesEndsAtItsDeadline) {
  station::test::TempDir dir("fx-usb");
  EmulatedUsbDevice device(dir / "device.flash", {}, /*plugged=*/false);
  const auto r = run_preloaded({built_binary("usb_exchange").string(), "--usb", "1209:0001@1-4", "--wait-ms", "300"});
  EXPECT_EQ(line_starting(r, "watch "), "watch mechanism=hotplug present=0") << r.out << r.err;
  long ms = -1;
  EXPECT_EQ(std::sscanf(line_starting(r, "no device ").c_str(), "no device after_ms=%ld", &ms), 1) << r.out << r.err;
  EXPECT_GE(ms, 300) << r.out;
  EXPECT_LT(ms, 2000) << r.out;  // cancel() ended the wait; it did not run to some other limit
  EXPECT_EQ(exchange_line(r), "verdict stage=open committed=0 locked=0 ended=0 errc=not found resends=0") << r.out;
}

#ifdef STATION_HAVE_STATION_BINARY
TEST(UsbProbe, StationFixtureProbeUsbPrintsTheDevice) {
  station::test::TempDir dir("fx-usb");
  EmulatedUsbDevice device(dir / "device.flash", {});
  const auto r = run_preloaded({built_binary("station").string(), "fixture", "probe", "--usb", "1209:0001@1-4", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const auto flash = sim::Flash::load(dir / "device.flash");
  EXPECT_NE(r.out.find("\"chip_id\":\"" + hex_encode(flash.chip_id) + "\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"port\":\"usb 1209:0001@1-4\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"state\":\"empty\""), std::string::npos) << r.out;
  EXPECT_GE(device.in_urbs(), 1U);
}

TEST(UsbProbe, TheSameCommandFailsCleanlyWithoutTheDevice) {
  station::test::TempDir dir("fx-usb");
  EmulatedUsbDevice device(dir / "device.flash", {}, /*plugged=*/false);
  const auto r = run_preloaded({built_binary("station").string(), "fixture", "probe", "--usb", "1209:0001@1-4", "--json"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err.rfind("station: fixture (usb 1209:0001@1-4): no such USB device; check the cable", 0), 0U) << r.err;
}
#endif

}  // namespace
}  // namespace station::fixtures
