// Zebra ~HS host status (ZPL II Programming Guide, ~HS): three strings, each framed by
// STX (0x02) ... ETX (0x03) and followed by CR LF.
//   1: aaa,b,c,dddd,eee,f,g,h,iii,j,k,l   b paper out, c paused, eee formats in buffer,
//                                         f buffer full, j corrupt RAM, k/l under/over temp
//   2: mmm,n,o,p,q,r,s,t,uuuuuuuu,v,www   o head up (open), p ribbon out
//   3: xxxx,y                             password, static RAM
#include <string>
#include <vector>

#include "labels/printer.hpp"

namespace station::labels {
namespace {

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t p = s.find(sep, start);
    out.push_back(s.substr(start, p == std::string_view::npos ? std::string_view::npos : p - start));
    if (p == std::string_view::npos) return out;
    start = p + 1;
  }
}

bool flag(std::string_view f) { return !f.empty() && f.front() == '1'; }

}  // namespace

std::optional<HostStatus> parse_host_status(std::string_view reply) {
  std::vector<std::string_view> strings;
  std::size_t pos = 0;
  while (strings.size() < 3) {
    const std::size_t stx = reply.find('\x02', pos);
    if (stx == std::string_view::npos) break;
    const std::size_t etx = reply.find('\x03', stx + 1);
    if (etx == std::string_view::npos) break;
    strings.push_back(reply.substr(stx + 1, etx - stx - 1));
    pos = etx + 1;
  }
  if (strings.size() < 3) return std::nullopt;
  const auto s1 = split(strings[0], ',');
  const auto s2 = split(strings[1], ',');
  if (s1.size() < 12 || s2.size() < 4) return std::nullopt;
  HostStatus st;
  st.paper_out = flag(s1[1]);
  st.paused = flag(s1[2]);
  try {
    st.formats_in_buffer = std::stoi(std::string(s1[4]));
  } catch (...) {
    return std::nullopt;
  }
  st.buffer_full = flag(s1[5]);
  st.corrupt_ram = flag(s1[9]);
  st.under_temperature = flag(s1[10]);
  st.over_temperature = flag(s1[11]);
  st.head_open = flag(s2[2]);
  st.ribbon_out = flag(s2[3]);
  return st;
}

bool HostStatus::ready() const noexcept {
  return !(paper_out || paused || head_open || ribbon_out || buffer_full || corrupt_ram || under_temperature ||
           over_temperature);
}

std::string HostStatus::problems() const {
  std::string out;
  auto add = [&](bool on, const char* what) {
    if (!on) return;
    if (!out.empty()) out += ", ";
    out += what;
  };
  add(paper_out, "paper out");
  add(head_open, "head open");
  add(paused, "paused");
  add(ribbon_out, "ribbon out");
  add(buffer_full, "receive buffer full");
  add(corrupt_ram, "corrupt RAM");
  add(under_temperature, "head too cold");
  add(over_temperature, "head too hot");
  return out.empty() ? "ready" : out;
}

}  // namespace station::labels
