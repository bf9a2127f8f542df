// Raw TCP printing (the "port 9100" protocol: the job's bytes, then close). "Took the whole
// job" means: every byte acknowledged by the printer's TCP stack (the send queue, TIOCOUTQ,
// drained) and the printer closed its side in order rather than resetting the connection.
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "common/error.hpp"
#include "internal/handles.hpp"
#include "internal/printers.hpp"

namespace station::labels::internal {
namespace {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string seconds(milliseconds ms) {
  const auto v = ms.count();
  if (v % 1000 == 0) return std::to_string(v / 1000) + " s";
  return std::to_string(v) + " ms";
}

int ms_left(clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

class TcpPrinter final : public Printer {
 public:
  TcpPrinter(std::string name, std::string host, std::string port, const PrinterOptions& o)
      : name_(std::move(name)), host_(std::move(host)), port_(std::move(port)), opt_(o) {}
  const std::string& name() const noexcept override { return name_; }

  void print(const PrintJob& job) override {
    Fd fd = connect_printer();
    if (opt_.status != StatusCheck::off) check_status(fd.get());
    send_all(fd.get(), job.data);
    ::shutdown(fd.get(), SHUT_WR);
    drain(fd.get(), job.data.size());
  }

 private:
  [[noreturn]] void fail(Errc code, const std::string& what, int err = 0) const {
    throw Error(code, "printer " + name_ + ": " + what, err);
  }

  Fd connect_printer() const {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const int gai = ::getaddrinfo(host_.c_str(), port_.c_str(), &hints, &res);
    if (gai != 0) {
      fail(Errc::io_error, "cannot resolve host '" + host_ + "': " + ::gai_strerror(gai) +
                               "; check the printer's address in the printer setting", gai);
    }
    std::unique_ptr<addrinfo, Deleter<::freeaddrinfo>> owner(res);
    const auto deadline = clock::now() + opt_.connect_timeout;
    int last_err = ETIMEDOUT;
    for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
      Fd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol));
      if (!fd) {
        last_err = errno;
        continue;
      }
      int rc = ::connect(fd.get(), ai->ai_addr, ai->ai_addrlen);
      if (rc != 0 && errno == EINPROGRESS) {
        pollfd p{fd.get(), POLLOUT, 0};
        do {
          rc = ::poll(&p, 1, ms_left(deadline));
        } while (rc < 0 && errno == EINTR);
        if (rc == 0) {
          last_err = ETIMEDOUT;
          break;  // the time is spent: do not try further addresses
        }
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
        rc = err == 0 ? 0 : -1;
        errno = err;
      }
      if (rc == 0) {
        const int one = 1;
        ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        return fd;
      }
      last_err = errno;
      if (ms_left(deadline) == 0) break;
    }
    if (last_err == ETIMEDOUT) {
      fail(Errc::timeout, "no connection within " + seconds(opt_.connect_timeout) +
                              "; check that the printer is on, cabled and at this address", ETIMEDOUT);
    }
    if (last_err == ECONNREFUSED) {
      fail(Errc::io_error, "connection refused: nothing listens on port " + port_ +
                               "; check the printer is on and its raw port (usually 9100)", last_err);
    }
    fail(Errc::io_error, std::string("cannot connect: ") + std::strerror(last_err) +
                             "; check the network path to the printer", last_err);
  }

  // Waits for fd to become ready for `events` before the deadline; false on timeout.
  static bool wait_for(int fd, short events, clock::time_point deadline) {
    pollfd p{fd, events, 0};
    for (;;) {
      const int rc = ::poll(&p, 1, ms_left(deadline));
      if (rc > 0) return true;
      if (rc == 0) return false;
      if (errno != EINTR) return false;
    }
  }

  void send_bytes(int fd, std::string_view data, std::size_t total_before, std::size_t job_size) const {
    std::size_t sent = 0;
    while (sent < data.size()) {
      const auto deadline = clock::now() + opt_.io_timeout;
      if (!wait_for(fd, POLLOUT, deadline)) {
        fail(Errc::timeout, "the printer took no data for " + seconds(opt_.io_timeout) + " after " +
                                std::to_string(total_before + sent) + " of " + std::to_string(job_size) +
                                " bytes; check it is not stopped, then reprint");
      }
      const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        const int err = errno;
        fail(Errc::io_error, "the printer closed the connection mid-job after " +
                                 std::to_string(total_before + sent) + " of " + std::to_string(job_size) +
                                 " bytes (" + std::strerror(err) + "); check the printer, then reprint",
             err);
      }
      sent += static_cast<std::size_t>(n);
    }
  }

  void send_all(int fd, const std::string& data) const { send_bytes(fd, data, 0, data.size()); }

  // ~HS where the printer answers: paper out, head open, paused (and the other flags that stop
  // a Zebra) stop the print before any job byte is sent.
  std::optional<HostStatus> status() override {
    Fd fd = connect_printer();
    auto st = query_status(fd.get());
    ::shutdown(fd.get(), SHUT_WR);
    return st;
  }

  std::optional<HostStatus> query_status(int fd) const {
    send_bytes(fd, "~HS", 0, 3);
    std::string reply;
    const auto deadline = clock::now() + opt_.status_timeout;
    std::optional<HostStatus> st;
    char buf[512];
    while (!st) {
      if (!wait_for(fd, POLLIN, deadline)) break;
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) {
        const int err = n < 0 ? errno : 0;
        fail(Errc::io_error, std::string("the printer closed the connection while answering ~HS") +
                                 (err != 0 ? std::string(" (") + std::strerror(err) + ")" : std::string()) +
                                 "; check the printer, then reprint",
             err);
      }
      reply.append(buf, static_cast<std::size_t>(n));
      st = parse_host_status(reply);
    }
    return st;
  }

  void check_status(int fd) const {
    const std::optional<HostStatus> st = query_status(fd);
    if (!st) {
      if (opt_.status == StatusCheck::require) {
        fail(Errc::timeout, "no ~HS status answer within " + seconds(opt_.status_timeout) +
                                "; check that it is a ZPL printer, or turn the status check off");
      }
      return;  // auto: not every ZPL-compatible printer answers ~HS
    }
    if (!st->ready()) {
      std::string fix;
      if (st->paper_out) fix += "load labels; ";
      if (st->head_open) fix += "close the print head; ";
      if (st->ribbon_out) fix += "replace the ribbon; ";
      if (st->paused) fix += "resume the printer (PAUSE key); ";
      fail(Errc::device_error, "not ready (" + st->problems() + "): " + fix + "then reprint");
    }
  }

  // After our FIN: wait until the printer acknowledged every byte and closed its side.
  void drain(int fd, std::size_t job_size) const {
    const auto deadline = clock::now() + opt_.io_timeout;
    char buf[512];
    for (;;) {
      if (!wait_for(fd, POLLIN, deadline)) break;
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n > 0) continue;  // printer chatter: ignore
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n == 0) {
        int unacked = 0;
        if (::ioctl(fd, TIOCOUTQ, &unacked) == 0 && unacked > 0) {
          fail(Errc::io_error, "the printer closed the connection with " + std::to_string(unacked) + " of " +
                                   std::to_string(job_size) + " bytes not taken; check the printer, then reprint");
        }
        return;
      }
      const int err = errno;
      fail(Errc::io_error, std::string("the printer closed the connection mid-job (") + std::strerror(err) +
                               "); check the printer for an error, then reprint",
           err);
    }
    // Some printers keep the connection open: then every byte must at least be acknowledged.
    int unacked = 0;
    if (::ioctl(fd, TIOCOUTQ, &unacked) != 0 || unacked > 0) {
      fail(Errc::timeout, "the printer did not take the whole job within " + seconds(opt_.io_timeout) + " (" +
                              std::to_string(unacked) + " of " + std::to_string(job_size) +
                              " bytes unacknowledged); check it, then reprint");
    }
  }

  std::string name_, host_, port_;
  PrinterOptions opt_;
};

}  // namespace

std::unique_ptr<Printer> make_tcp_printer(std::string name, std::string host, std::string port,
                                          const PrinterOptions& options) {
  return std::make_unique<TcpPrinter>(std::move(name), std::move(host), std::move(port), options);
}

}  // namespace station::labels::internal
