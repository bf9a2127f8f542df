// libFuzzer target for station.conf (station/src/core/config.hpp: parse_config). Every input
// must give a config or a station::Error naming the problem, never a crash, leak or
// sanitizer report; an accepted config must keep its invariants (a module and a PIN
// reference, fixtures numbered and sorted with distinct ports, known printers).
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "core/config.hpp"

namespace {

void require(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const auto c = station::core::parse_config(text, "/fuzz/station.conf");
    require(!c.station_id.empty());
    require(!c.hsm.module.empty());
    require(c.hsm.pin.rfind("file:", 0) == 0 || c.hsm.pin.rfind("env:", 0) == 0);
    require(c.profiles.count(c.default_profile) == 1);
    std::set<std::string> ports;
    int last = 0;
    for (const auto& f : c.fixtures) {
      require(f.number > last);
      last = f.number;
      require(ports.insert(f.link.transport + ":" + f.link.port).second);
      require(f.printer.empty() || c.printers.count(f.printer) == 1);
    }
  } catch (const station::Error&) {
    // A clear refusal is the expected outcome for most inputs.
  }
  return 0;
}
