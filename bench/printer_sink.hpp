// A label printer for the line benchmark: a real loopback TCP listener speaking the raw
// "port 9100" protocol the station's tcp:// printers use. It answers the ~HS status query
// as a ready Zebra does, reads each job to its end and closes in order, so the station's
// printer sees every job taken; it keeps counts only (jobs, bytes), never the jobs, so the
// bench's peak memory stays the station's.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

namespace station::bench {

class PrinterSink {
 public:
  PrinterSink();
  PrinterSink(const PrinterSink&) = delete;
  PrinterSink& operator=(const PrinterSink&) = delete;
  ~PrinterSink();

  // tcp://127.0.0.1:PORT
  std::string uri() const;
  // Jobs received whole (the station half-closed after sending; we closed in order).
  std::uint64_t jobs() const noexcept { return jobs_.load(); }
  std::uint64_t bytes() const noexcept { return bytes_.load(); }

 private:
  void serve();

  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  int port_ = 0;
  std::atomic<std::uint64_t> jobs_{0}, bytes_{0};
  std::thread thread_;
};

}  // namespace station::bench
