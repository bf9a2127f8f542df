// station fixture probe: says HELLO to the device in a fixture through the real transport
// and prints what it reports (docs/protocol.md §4.1). It sends no BYE, so a device (or a
// line simulator) stays in its session and nothing is written.
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/cli.hpp"
#include "common/error.hpp"
#include "fixtures/client.hpp"
#include "fixtures/serial_link.hpp"
#include "fixtures/usb_link.hpp"

namespace station::cli {
namespace {

namespace fx = station::fixtures;
using Json = nlohmann::ordered_json;

struct ProbeOptions {
  std::string port;
  std::string usb;
  unsigned baud = 115200;
  bool json = false;
};

Json curves_json(std::uint8_t mask) {
  Json arr = Json::array();
  for (const auto c : fx::kAllCurves)
    if ((mask & fx::curve_bit(c)) != 0) arr.push_back(std::string(fx::curve_name(c)));
  return arr;
}

void print(const ProbeOptions& o, const fx::DeviceInfo& d) {
  const bool has_digest = d.state != fx::DeviceState::empty;
  if (o.json) {
    const Json out{
        {"port", o.usb.empty() ? o.port : "usb " + o.usb},
        {"protocol_version", fx::kProtocolVersion},
        {"chip_id", hex_encode(d.chip_id)},
        {"mac", fx::mac_to_string(d.mac)},
        {"model", d.model},
        {"hardware", d.hardware},
        {"firmware", d.firmware},
        {"capabilities",
         {{"keygen", (d.capabilities & fx::kCapKeygen) != 0},
          {"key_injection", (d.capabilities & fx::kCapKeyInjection) != 0},
          {"lock", (d.capabilities & fx::kCapLock) != 0},
          {"cert_key", (d.capabilities & fx::kCapCertKey) != 0},
          {"curves", curves_json(d.curves)},
          {"storage", d.storage},
          {"max_frame", d.max_payload}}},
        {"state", fx::device_state_name(d.state)},
        {"digest", has_digest ? Json(hex_encode(d.digest)) : Json(nullptr)},
    };
    std::cout << out.dump() << "\n";
    return;
  }
  const auto yes = [&](std::uint16_t bit) { return (d.capabilities & bit) != 0 ? "yes" : "no"; };
  std::string curves;
  for (const auto& c : curves_json(d.curves)) curves += (curves.empty() ? "" : ", ") + c.get<std::string>();
  std::cout << "port          " << (o.usb.empty() ? o.port : "usb " + o.usb) << "\n"
            << "chip id       " << hex_encode(d.chip_id) << "\n"
            << "mac           " << fx::mac_to_string(d.mac) << "\n"
            << "model         " << d.model << "\n"
            << "hardware      " << d.hardware << "\n"
            << "firmware      " << d.firmware << "\n"
            << "state         " << fx::device_state_name(d.state) << "\n"
            << "digest        " << (has_digest ? hex_encode(d.digest) : std::string("-")) << "\n"
            << "key gen       " << yes(fx::kCapKeygen) << "\n"
            << "key injection " << yes(fx::kCapKeyInjection) << "\n"
            << "lock          " << yes(fx::kCapLock) << "\n"
            << "cert key      " << yes(fx::kCapCertKey) << "\n"
            << "curves        " << curves << "\n"
            << "storage       " << d.storage << " bytes\n"
            << "max frame     " << d.max_payload << " bytes\n";
}

void probe(const ProbeOptions& o) {
  if (o.port.empty() && o.usb.empty())
    throw Error(Errc::invalid_argument, "fixture probe: give --port PATH (serial) or --usb VID:PID[@BUS-PORT]");
  fx::asio::io_context io;
  fx::ClientOptions co;
  co.fixture = "fixture";
  std::unique_ptr<fx::Link> link;
  if (!o.usb.empty())
    link = fx::UsbLink::open(io.get_executor(), fx::UsbSelector::parse(o.usb), co.fixture);
  else
    link = fx::SerialLink::open(io.get_executor(), fx::SerialOptions{o.port, o.baud}, co.fixture);
  fx::DeviceClient client(std::move(link), co);
  auto fut = fx::asio::co_spawn(client.get_executor(), client.hello(), fx::asio::use_future);
  io.run();
  print(o, fut.get());
}

}  // namespace

void register_fixture(CLI::App& app, Context& /*ctx*/) {
  auto* fixture = app.add_subcommand("fixture", "Talk to the device in a fixture");
  fixture->require_subcommand(1);
  auto opts = std::make_shared<ProbeOptions>();
  auto* p = fixture->add_subcommand("probe", "Send HELLO and print what the device reports (writes nothing)");
  auto* port = p->add_option("--port", opts->port, "Serial port of the fixture (/dev/ttyUSB0, /dev/serial/by-path/..., a pty)");
  auto* usb = p->add_option("--usb", opts->usb, "USB fixture: VID:PID[@BUS-PORT] in hex, e.g. 1209:0001@1-4.2");
  port->excludes(usb);
  p->add_option("--baud", opts->baud, "Line rate (default 115200; 8N1, no flow control)");
  p->add_flag("--json", opts->json, "One JSON object: chip_id, mac, model, firmware, capabilities, state, ...");
  p->callback([opts] { probe(*opts); });
}

}  // namespace station::cli
