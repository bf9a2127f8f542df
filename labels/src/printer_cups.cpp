// CUPS: `lp -d QUEUE -o raw` hands the job to the scheduler unchanged (no filters); then we
// wait until CUPS reports the job completed, i.e. its backend delivered every byte, so the
// caller's "printed" means the same as for tcp://. A job CUPS cannot deliver in time is
// cancelled, so a reprint never doubles up.
#include <chrono>
#include <string>
#include <thread>

#include "common/error.hpp"
#include "internal/printers.hpp"
#include "internal/process.hpp"

namespace station::labels::internal {
namespace {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

class CupsPrinter final : public Printer {
 public:
  CupsPrinter(std::string name, std::string queue, const PrinterOptions& o)
      : name_(std::move(name)), queue_(std::move(queue)), opt_(o) {}
  const std::string& name() const noexcept override { return name_; }

  void print(const PrintJob& job) override {
    const auto deadline = clock::now() + opt_.cups_timeout;
    const auto lp = run_process({"lp", "-d", queue_, "-o", "raw", "-t", job.label.empty() ? "label" : job.label},
                                job.data, left(deadline));
    if (lp.timed_out) fail(Errc::timeout, "lp did not finish within the CUPS timeout; check that cupsd runs");
    if (lp.exit_code != 0) {
      fail(Errc::io_error, "lp failed (exit " + std::to_string(lp.exit_code) + "): " + trim(lp.err) +
                               "; check the queue exists and accepts jobs (lpstat -p " + queue_ + ")",
           lp.exit_code);
    }
    // "request id is zebra-12 (0 file(s))"
    const std::string marker = "request id is ";
    const auto at = lp.out.find(marker);
    if (at == std::string::npos) fail(Errc::protocol_error, "unexpected answer from lp: " + trim(lp.out));
    const auto end = lp.out.find(' ', at + marker.size());
    const std::string job_id = lp.out.substr(at + marker.size(), end - at - marker.size());

    while (clock::now() < deadline) {
      const auto done = run_process({"lpstat", "-W", "completed", "-o", queue_}, {}, left(deadline));
      if (done.exit_code == 0 && has_job(done.out, job_id)) return;
      const auto pending = run_process({"lpstat", "-o", queue_}, {}, left(deadline));
      if (pending.exit_code == 0 && !has_job(pending.out, job_id)) {
        // Neither pending nor completed: cancelled or aborted by CUPS.
        const auto again = run_process({"lpstat", "-W", "completed", "-o", queue_}, {}, left(deadline));
        if (again.exit_code == 0 && has_job(again.out, job_id)) return;
        fail(Errc::io_error, "CUPS dropped job " + job_id + " (cancelled or aborted); see lpstat -p " + queue_ +
                                 " and the CUPS error log, then reprint");
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
    const auto state = run_process({"lpstat", "-l", "-p", queue_}, {}, milliseconds(2000));
    run_process({"cancel", job_id}, {}, milliseconds(2000));
    fail(Errc::timeout, "CUPS did not deliver job " + job_id + " within " +
                            std::to_string(opt_.cups_timeout.count() / 1000) + " s, so it was cancelled (" +
                            trim(state.out) + "); check the printer behind queue " + queue_ + ", then reprint");
  }

 private:
  static bool has_job(const std::string& listing, const std::string& job_id) {
    std::size_t pos = 0;
    while ((pos = listing.find(job_id, pos)) != std::string::npos) {
      const bool start = pos == 0 || listing[pos - 1] == '\n';
      const std::size_t after = pos + job_id.size();
      if (start && (after == listing.size() || listing[after] == ' ')) return true;
      pos = after;
    }
    return false;
  }
  static milliseconds left(clock::time_point deadline) {
    const auto l = std::chrono::duration_cast<milliseconds>(deadline - clock::now());
    return l.count() > 0 ? l : milliseconds(1);
  }
  [[noreturn]] void fail(Errc code, const std::string& what, int native = 0) const {
    throw Error(code, "printer " + name_ + ": " + what, native);
  }

  std::string name_, queue_;
  PrinterOptions opt_;
};

}  // namespace

std::unique_ptr<Printer> make_cups_printer(std::string name, std::string queue, const PrinterOptions& options) {
  return std::make_unique<CupsPrinter>(std::move(name), std::move(queue), options);
}

}  // namespace station::labels::internal
