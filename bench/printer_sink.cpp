#include "printer_sink.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <vector>

#include "common/error.hpp"

namespace station::bench {
namespace {

// ~HS: three STX..ETX strings (ZPL II programming guide): not paused, paper in, head closed.
constexpr std::string_view kReady =
    "\x02" "030,0,0,1245,000,0,0,0,000,0,0,0\x03\r\n"
    "\x02" "000,0,0,0,0,2,6,0,00000000,1,000\x03\r\n"
    "\x02" "1234,0\x03\r\n";

}  // namespace

PrinterSink::PrinterSink() {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(listen_fd_, 64) != 0 || ::pipe2(wake_, O_CLOEXEC) != 0) {
    const int err = errno;
    if (listen_fd_ >= 0) ::close(listen_fd_);
    throw Error(Errc::io_error, std::string("bench: printer sink: cannot listen on 127.0.0.1: ") + std::strerror(err));
  }
  socklen_t len = sizeof a;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  thread_ = std::thread([this] { serve(); });
}

PrinterSink::~PrinterSink() {
  const char c = 'q';
  (void)!::write(wake_[1], &c, 1);
  thread_.join();
  ::close(listen_fd_);
  ::close(wake_[0]);
  ::close(wake_[1]);
}

std::string PrinterSink::uri() const { return "tcp://127.0.0.1:" + std::to_string(port_); }

// One thread, every connection in one poll(): a job is whatever arrives until the client's
// half-close; a ~HS at the start of a connection is answered at once.
void PrinterSink::serve() {
  struct Conn {
    std::uint64_t bytes = 0;
  };
  std::map<int, Conn> conns;
  std::vector<pollfd> fds;
  char buf[16384];
  for (;;) {
    fds.clear();
    fds.push_back({wake_[0], POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    for (const auto& [fd, c] : conns) fds.push_back({fd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[0].revents != 0) break;
    if (fds[1].revents != 0) {
      for (;;) {
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) break;
        conns[fd] = Conn{};
      }
    }
    for (std::size_t k = 2; k < fds.size(); ++k) {
      if (fds[k].revents == 0) continue;
      const int fd = fds[k].fd;
      auto& c = conns[fd];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n > 0) {
        std::string_view got(buf, static_cast<std::size_t>(n));
        if (c.bytes == 0 && got.starts_with("~HS")) {
          (void)!::send(fd, kReady.data(), kReady.size(), MSG_NOSIGNAL);
          got.remove_prefix(3);
        }
        c.bytes += static_cast<std::uint64_t>(n);
        bytes_ += got.size();
        continue;
      }
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n == 0 && c.bytes > 3) ++jobs_;  // the client's half-close ends the job
      ::close(fd);
      conns.erase(fd);
    }
  }
  for (const auto& [fd, c] : conns) ::close(fd);
}

}  // namespace station::bench
