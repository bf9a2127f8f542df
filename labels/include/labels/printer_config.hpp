// Printers from configuration (TOML, via toml++): the station's config loader hands over its
// `[printers]` table, one sub-table per printer name:
//
//   [printers.line1]
//   uri = "tcp://10.0.0.7:9100"   # required: tcp://HOST:PORT, dir:PATH or cups:QUEUE
//   connect_timeout_ms = 3000     # optional, PrinterOptions' defaults otherwise
//   io_timeout_ms = 5000
//   status = "auto"               # ~HS check: auto, require, off
//   status_timeout_ms = 1000
//   cups_timeout_ms = 30000
//
// Unknown keys, wrong types, out-of-range times and malformed URIs are refused with the key's
// full name, as Error(Errc::config_error). Nothing is contacted at load.
#pragma once

#include <map>
#include <memory>
#include <string>

#include <toml++/toml.h>

#include "labels/printer.hpp"

namespace station::labels {

struct PrinterConfig {
  std::string name;   // the table's name, e.g. "line1"
  std::string uri;    // the spec open_printer() takes
  PrinterOptions options;

  std::unique_ptr<Printer> open() const { return open_printer(uri, options); }
};

PrinterConfig printer_from_toml(const toml::table& table, const std::string& name, const std::string& where);
std::map<std::string, PrinterConfig> printers_from_toml(const toml::table& printers,
                                                        const std::string& where = "printers");

}  // namespace station::labels
