// A loopback TCP listener standing in for a ZPL line printer on port 9100: it stores each
// job (everything received until the client closes), answers ~HS with a configurable status,
// and can misbehave: reset the connection mid-job, stay silent on ~HS, or never accept
// (a full backlog, so connects hang like an unplugged printer's).
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace station::label_test {

class FakePrinter {
 public:
  enum class Mode {
    normal,         // answers ~HS "ready", stores the job
    paper_out,      // answers ~HS with paper out
    head_open,      // answers ~HS with head open and paused
    paused,         // answers ~HS with paused
    silent,         // never answers ~HS (a ZPL printer without status)
    close_mid_job,  // reads `close_after` job bytes, then resets the connection
  };

  explicit FakePrinter(Mode mode = Mode::normal, std::size_t close_after = 0);
  FakePrinter(const FakePrinter&) = delete;
  FakePrinter& operator=(const FakePrinter&) = delete;
  ~FakePrinter();

  int port() const noexcept { return port_; }
  std::string spec() const { return "tcp://127.0.0.1:" + std::to_string(port_); }

  // Jobs completely received (the client closed in order), waiting up to `ms` for `count`.
  std::vector<std::string> jobs(std::size_t count = 0, int ms = 5000);
  int status_queries() const noexcept { return status_queries_.load(); }

  static std::string status_reply(bool paper_out, bool paused, bool head_open);

 private:
  void serve();
  void handle(int fd);

  Mode mode_;
  std::size_t close_after_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> status_queries_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> jobs_;
  std::thread thread_;
};

// A listening socket whose accept queue is full and never drained: SYNs to it are dropped,
// so a connect() hangs until its timeout, as to a switched-off printer.
class BlackholePort {
 public:
  BlackholePort();
  BlackholePort(const BlackholePort&) = delete;
  BlackholePort& operator=(const BlackholePort&) = delete;
  ~BlackholePort();
  int port() const noexcept { return port_; }

 private:
  int listen_fd_ = -1;
  int port_ = 0;
  std::vector<int> fillers_;
};

// A port on 127.0.0.1 with nothing listening (connects are refused).
int closed_port();

}  // namespace station::label_test
