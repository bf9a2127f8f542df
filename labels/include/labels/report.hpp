// Every print is reported (label, printer, time, result) through PrintReporter, the
// interface the station's audit journal implements. print_and_report() is the one way the
// station prints: it reports success and failure alike, then rethrows a failure.
#pragma once

#include <chrono>
#include <functional>
#include <iosfwd>
#include <string>

#include "common/error.hpp"
#include "labels/printer.hpp"

namespace station::labels {

struct PrintReport {
  std::string label;                              // PrintJob::label (the device serial)
  std::string printer;                            // Printer::name()
  std::chrono::system_clock::time_point time;     // when the printer took (or refused) the job
  bool ok = false;
  Errc code = Errc::ok;                           // the error's code when !ok
  std::string result;                             // "printed" or the error message
  std::size_t bytes = 0;                          // job size
};

class PrintReporter {
 public:
  virtual ~PrintReporter() = default;
  // A reporter that throws fails the print call (the journal is write-ahead: a print that
  // cannot be recorded must not count as done).
  virtual void report(const PrintReport& r) = 0;
};

// One JSON object per line: {"label","printer","time" (RFC 3339 UTC),"ok","code","result","bytes"}.
class JsonLinesReporter final : public PrintReporter {
 public:
  explicit JsonLinesReporter(std::ostream& out) : out_(out) {}
  void report(const PrintReport& r) override;

 private:
  std::ostream& out_;
};

using Clock = std::function<std::chrono::system_clock::time_point()>;

void print_and_report(Printer& printer, const PrintJob& job, PrintReporter& reporter,
                      const Clock& clock = [] { return std::chrono::system_clock::now(); });

std::string rfc3339(std::chrono::system_clock::time_point t);

}  // namespace station::labels
