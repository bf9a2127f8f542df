#include <string>

#include "common/error.hpp"
#include "internal/printers.hpp"
#include "labels/printer.hpp"

namespace station::labels {
namespace {

[[noreturn]] void bad_spec(std::string_view spec, const std::string& why) {
  throw Error(Errc::invalid_argument, "printer '" + std::string(spec) + "': " + why +
                                          "; use tcp://HOST:PORT, dir:PATH or cups:QUEUE");
}

}  // namespace

std::unique_ptr<Printer> open_printer(std::string_view spec, const PrinterOptions& options) {
  const std::string name(spec);
  if (spec.starts_with("tcp://")) {
    std::string_view rest = spec.substr(6);
    std::string host, port;
    if (rest.starts_with("[")) {  // [v6 address]:port
      const auto close = rest.find(']');
      if (close == std::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':') {
        bad_spec(spec, "an IPv6 address needs the form [ADDR]:PORT");
      }
      host = rest.substr(1, close - 1);
      port = rest.substr(close + 2);
    } else {
      const auto colon = rest.rfind(':');
      if (colon == std::string_view::npos) bad_spec(spec, "the port is missing (raw printing is usually port 9100)");
      host = rest.substr(0, colon);
      port = rest.substr(colon + 1);
    }
    if (host.empty()) bad_spec(spec, "the host is missing");
    if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
        std::stoi(port) < 1 || std::stoi(port) > 65535) {
      bad_spec(spec, "'" + port + "' is not a port number (1-65535)");
    }
    return internal::make_tcp_printer(name, host, port, options);
  }
  if (spec.starts_with("dir:")) return internal::make_dir_printer(name, std::string(spec.substr(4)));
  if (spec.starts_with("cups:")) {
    const std::string queue(spec.substr(5));
    if (queue.empty() || queue.find_first_of(" \t/#") != std::string::npos) {
      bad_spec(spec, "a CUPS queue name has no spaces, '/' or '#'");
    }
    return internal::make_cups_printer(name, queue, options);
  }
  bad_spec(spec, "unknown kind of printer");
}

}  // namespace station::labels
