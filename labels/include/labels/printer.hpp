// Printer back ends behind one narrow interface, chosen by a spec string:
//   tcp://HOST:PORT   raw TCP (Zebra port 9100), with ~HS status checks where the printer answers
//   dir:PATH          one file per label in an existing folder (previews, tests, a spool folder)
//   cups:QUEUE        a CUPS queue through `lp -o raw` (waits until CUPS has sent the job)
//
// print() returns only when the printer took the whole job, and otherwise throws
// station::Error whose message names the printer and the fix:
//   timeout          no connection/answer within the configured time (retry once it is back)
//   io_error         refused, reset, closed mid-job, lp failed (native() holds errno / status)
//   device_error     the printer reports paper out, head open, paused, ribbon out, ...
//   invalid_argument a malformed printer spec
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace station::labels {

struct PrintJob {
  std::string label;       // the label's id (the device serial): file name, CUPS job title
  std::string data;        // the printer language bytes (ZPL)
  std::string extension = "zpl";  // for dir: printers
};

enum class StatusCheck {
  off,     // never send ~HS
  auto_,   // send ~HS; a printer that does not answer within status_timeout is printed to anyway
  require  // a printer that does not answer ~HS is an error
};

struct PrinterOptions {
  std::chrono::milliseconds connect_timeout{3000};
  std::chrono::milliseconds io_timeout{5000};       // each send/receive, and the final drain
  std::chrono::milliseconds status_timeout{1000};   // the ~HS answer
  StatusCheck status = StatusCheck::auto_;
  std::chrono::milliseconds cups_timeout{30000};    // lp plus CUPS delivering the job
};

// Zebra host status (~HS, ZPL II Programming Guide: three STX...ETX strings). Only the flags
// that stop printing are kept.
struct HostStatus {
  bool paper_out = false;
  bool paused = false;
  bool head_open = false;
  bool ribbon_out = false;
  bool buffer_full = false;
  bool corrupt_ram = false;
  bool under_temperature = false;
  bool over_temperature = false;
  int formats_in_buffer = 0;

  bool ready() const noexcept;
  // "paper out, head open" (or "ready").
  std::string problems() const;
};

// Parses a complete ~HS answer; nullopt when it is not one (too few strings or fields).
std::optional<HostStatus> parse_host_status(std::string_view reply);

// print() may be called from several threads at once: each call is its own connection, file
// or CUPS job (a line printer serialises concurrent connections itself).
class Printer {
 public:
  virtual ~Printer() = default;
  // The spec it was opened with, as it appears in messages and print reports.
  virtual const std::string& name() const noexcept = 0;
  virtual void print(const PrintJob& job) = 0;
  // The printer's own status, for the operator's page: tcp:// printers that answer ~HS within
  // status_timeout; nullopt for those that do not and for dir:/cups: (CUPS keeps its own
  // queue state). Throws like print() when the printer cannot be reached.
  virtual std::optional<HostStatus> status() { return std::nullopt; }
};

// Throws Error(invalid_argument) for a spec that is not one of the forms above.
std::unique_ptr<Printer> open_printer(std::string_view spec, const PrinterOptions& options = {});

}  // namespace station::labels
