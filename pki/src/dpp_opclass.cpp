// Global operating classes: IEEE Std 802.11-2020 Annex E, Table E-4, for the bands a DPP
// bootstrapping channel list uses (2.4, 5 and 6 GHz; the 6 GHz classes 131-136 as amended
// by 802.11ax-2021). A channel is known only if the class lists it: unlike hostapd's
// range check (ieee80211_chan_to_freq), 115/37 is not a channel. See docs/dpp.md.
#include <algorithm>
#include <array>

#include "pki/dpp.hpp"

namespace station::pki::dpp {
namespace {

struct OpClass {
  unsigned opclass;
  unsigned start_mhz;  // channel starting frequency: f = start + 5 * channel
  unsigned first;      // channels first, first+step, ..., last
  unsigned last;
  unsigned step;
  std::array<unsigned, 8> listed;  // when listed[0] != 0: exactly these channels (0-terminated)
};

// clang-format off
const OpClass kTable[] = {
    {81,  2407, 1, 13, 1, {}},             // 2.4 GHz, 20 MHz
    {82,  2414, 14, 14, 1, {}},            // 2.4 GHz channel 14 (Japan, DSSS)
    {83,  2407, 1, 9, 1, {}},              // 2.4 GHz, 40 MHz, primary below
    {84,  2407, 5, 13, 1, {}},             // 2.4 GHz, 40 MHz, primary above
    {115, 5000, 36, 48, 4, {}},            // 5 GHz UNII-1, 20 MHz
    {116, 5000, 0, 0, 0, {36, 44}},        // 40 MHz
    {117, 5000, 0, 0, 0, {40, 48}},
    {118, 5000, 52, 64, 4, {}},            // UNII-2, 20 MHz
    {119, 5000, 0, 0, 0, {52, 60}},
    {120, 5000, 0, 0, 0, {56, 64}},
    {121, 5000, 100, 144, 4, {}},          // UNII-2e, 20 MHz
    {122, 5000, 100, 140, 8, {}},          // 40 MHz: 100,108,...,140
    {123, 5000, 104, 144, 8, {}},          // 40 MHz: 104,112,...,144
    {124, 5000, 149, 161, 4, {}},          // UNII-3, 20 MHz
    {125, 5000, 149, 177, 4, {}},          // UNII-3/4, 20 MHz
    {126, 5000, 0, 0, 0, {149, 157, 165, 173}},
    {127, 5000, 0, 0, 0, {153, 161, 169, 177}},
    {128, 5000, 0, 0, 0, {42, 58, 106, 122, 138, 155, 171}},  // 80 MHz centre indices
    {129, 5000, 0, 0, 0, {50, 114, 163}},                     // 160 MHz centre indices
    {130, 5000, 0, 0, 0, {42, 58, 106, 122, 138, 155, 171}},  // 80+80 MHz
    {131, 5950, 1, 233, 4, {}},            // 6 GHz, 20 MHz: 1,5,...,233
    {132, 5950, 3, 227, 8, {}},            // 40 MHz: 3,11,...,227
    {133, 5950, 7, 215, 16, {}},           // 80 MHz: 7,23,...,215
    {134, 5950, 15, 207, 32, {}},          // 160 MHz: 15,47,...,207
    {135, 5950, 7, 215, 16, {}},           // 80+80 MHz
    {136, 5925, 2, 2, 1, {}},              // 6 GHz channel 2
};
// clang-format on

}  // namespace

std::optional<unsigned> channel_frequency(unsigned opclass, unsigned channel) noexcept {
  for (const auto& oc : kTable) {
    if (oc.opclass != opclass) continue;
    bool known = false;
    if (oc.listed[0] != 0) {
      known = channel != 0 && std::find(oc.listed.begin(), oc.listed.end(), channel) != oc.listed.end();
    } else {
      known = channel >= oc.first && channel <= oc.last && (channel - oc.first) % oc.step == 0;
    }
    if (!known) return std::nullopt;
    return oc.start_mhz + 5 * channel;
  }
  return std::nullopt;
}

}  // namespace station::pki::dpp
