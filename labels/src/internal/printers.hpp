// The back-end constructors open_printer() dispatches to.
#pragma once

#include <memory>
#include <string>

#include "labels/printer.hpp"

namespace station::labels::internal {

std::unique_ptr<Printer> make_dir_printer(std::string name, std::string path);
std::unique_ptr<Printer> make_tcp_printer(std::string name, std::string host, std::string port,
                                          const PrinterOptions& options);
std::unique_ptr<Printer> make_cups_printer(std::string name, std::string queue, const PrinterOptions& options);

}  // namespace station::labels::internal
