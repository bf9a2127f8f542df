#include "labels/printer_config.hpp"

#include "common/error.hpp"
#include "internal/toml_reader.hpp"

namespace station::labels {
namespace {

using internal::fail;
using internal::Reader;

void millis(Reader& r, std::string_view key, std::chrono::milliseconds& out, long lo, long hi) {
  long v = static_cast<long>(out.count());
  r.integer(key, v);
  if (v < lo || v > hi) {
    fail(r.key(key), std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "] ms");
  }
  out = std::chrono::milliseconds(v);
}

}  // namespace

PrinterConfig printer_from_toml(const toml::table& table, const std::string& name, const std::string& where) {
  PrinterConfig c;
  c.name = name;
  Reader r(table, where);
  if (!r.has("uri")) fail(r.key("uri"), "missing (tcp://HOST:PORT, dir:PATH or cups:QUEUE)");
  r.string("uri", c.uri);
  millis(r, "connect_timeout_ms", c.options.connect_timeout, 100, 120000);
  millis(r, "io_timeout_ms", c.options.io_timeout, 100, 600000);
  millis(r, "status_timeout_ms", c.options.status_timeout, 50, 60000);
  millis(r, "cups_timeout_ms", c.options.cups_timeout, 1000, 3600000);
  std::string status = "auto";
  r.string("status", status);
  if (status == "auto") c.options.status = StatusCheck::auto_;
  else if (status == "require") c.options.status = StatusCheck::require;
  else if (status == "off") c.options.status = StatusCheck::off;
  else fail(r.key("status"), "'" + status + "' is not auto, require or off");
  r.no_unknown_keys();
  try {
    (void)open_printer(c.uri, c.options);  // validates the URI; connects to nothing
  } catch (const Error& e) {
    fail(r.key("uri"), e.what());
  }
  return c;
}

std::map<std::string, PrinterConfig> printers_from_toml(const toml::table& printers, const std::string& where) {
  std::map<std::string, PrinterConfig> out;
  for (auto&& [k, v] : printers) {
    const std::string name(k.str());
    const toml::table* t = v.as_table();
    if (t == nullptr) fail(where + "." + name, "expected a table ([" + where + "." + name + "])");
    out.emplace(name, printer_from_toml(*t, name, where + "." + name));
  }
  return out;
}

}  // namespace station::labels
