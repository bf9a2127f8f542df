// libFuzzer target for audit bundles (db/audit.hpp): what `station audit verify --bundle`
// and `station db resume-after-restore --marks` read from a file someone hands over. Every
// input must give a report (ok or not) or a station::Error naming the problem, never a
// crash, leak or sanitizer report; a bundle's marks are read only from text that parses.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "db/audit.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    std::istringstream in(text);
    // No trusted root: every signature check fails, but every line is still parsed.
    const auto report = station::db::verify_bundle(in, {});
    if (report.ok) __builtin_trap();  // nothing verifies without a trusted root
  } catch (const station::Error&) {
  }
  try {
    if (station::db::is_bundle(text)) (void)station::db::highwater_of_bundle(text);
  } catch (const station::Error&) {
  }
  return 0;
}
