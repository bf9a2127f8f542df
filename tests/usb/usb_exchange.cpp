// The station side of the USB tests: runs the provisioning exchange (or one step) through
// the real UsbLink and libusb, as a separate program so the tests can run it under
// LD_PRELOAD=libumockdev-preload.so.0 against an emulated device. Prints one line:
//   verdict stage=<s> committed=<0|1> locked=<0|1> ended=<0|1> errc=<name|none> resends=<n>
// then, on failure, "error: <message>".
#include <cstdio>
#include <cstring>
#include <string>

#include "exchange.hpp"
#include "fixtures/usb_link.hpp"

using namespace station::fixtures;

int main(int argc, char** argv) {
  std::string spec = "1209:0001";
  std::string mode = "on-device";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--usb") == 0) spec = argv[i + 1];
    if (std::strcmp(argv[i], "--mode") == 0) mode = argv[i + 1];
  }
  asio::io_context io;
  test::Verdict v;
  try {
    auto link = UsbLink::open(asio::make_strand(io), UsbSelector::parse(spec), "fixture 5");
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
  return 0;
}
