#include "fake_printer.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>

namespace station::label_test {
namespace {

int listen_loopback(int backlog, int& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, backlog) != 0) {
    ::close(fd);
    throw std::runtime_error("bind/listen failed");
  }
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return fd;
}

}  // namespace

std::string FakePrinter::status_reply(bool paper_out, bool paused, bool head_open) {
  // ~HS: three STX..ETX strings (ZPL II guide), here with label length 1245 dots.
  std::string s;
  s += "\x02" "030," + std::string(paper_out ? "1" : "0") + "," + (paused ? "1" : "0") +
       ",1245,000,0,0,0,000,0,0,0\x03\r\n";
  s += "\x02" "000,0," + std::string(head_open ? "1" : "0") + ",0,0,2,6,0,00000000,1,000\x03\r\n";
  s += "\x02" "1234,0\x03\r\n";
  return s;
}

FakePrinter::FakePrinter(Mode mode, std::size_t close_after) : mode_(mode), close_after_(close_after) {
  listen_fd_ = listen_loopback(16, port_);
  thread_ = std::thread([this] { serve(); });
}

FakePrinter::~FakePrinter() {
  stop_ = true;
  thread_.join();
  ::close(listen_fd_);
}

void FakePrinter::serve() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    handle(fd);
  }
}

void FakePrinter::handle(int fd) {
  std::string data;
  bool answered = false;
  char buf[4096];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    if (std::chrono::steady_clock::now() > deadline || stop_) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    std::size_t want = sizeof buf;
    if (mode_ == Mode::close_mid_job) {
      const std::size_t job_bytes = data.size();
      if (job_bytes >= close_after_) {
        // Abort with the rest of the job unread: the kernel answers with a reset.
        linger l{1, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        ::close(fd);
        return;
      }
      want = std::min(want, close_after_ - job_bytes);
    }
    const ssize_t n = ::recv(fd, buf, want, 0);
    if (n <= 0) break;
    data.append(buf, static_cast<std::size_t>(n));
    if (!answered && data.size() >= 3 && data.compare(0, 3, "~HS") == 0) {
      answered = true;
      ++status_queries_;
      data.erase(0, 3);
      std::string reply;
      switch (mode_) {
        case Mode::normal:
        case Mode::close_mid_job: reply = status_reply(false, false, false); break;
        case Mode::paper_out: reply = status_reply(true, false, false); break;
        case Mode::head_open: reply = status_reply(false, true, true); break;
        case Mode::paused: reply = status_reply(false, true, false); break;
        case Mode::silent: break;
      }
      if (!reply.empty()) (void)::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL);
    }
  }
  ::close(fd);
  std::lock_guard lock(mu_);
  jobs_.push_back(std::move(data));
  cv_.notify_all();
}

std::vector<std::string> FakePrinter::jobs(std::size_t count, int ms) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return jobs_.size() >= count; });
  return jobs_;
}

BlackholePort::BlackholePort() {
  listen_fd_ = listen_loopback(0, port_);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port_));
  // Fill the accept queue (backlog 0 holds one) until a connect no longer completes.
  for (int i = 0; i < 8; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    fillers_.push_back(fd);
    ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, 200) == 0) break;  // this one hangs: the queue is full
  }
}

BlackholePort::~BlackholePort() {
  for (int fd : fillers_) ::close(fd);
  ::close(listen_fd_);
}

int closed_port() {
  int port = 0;
  const int fd = listen_loopback(1, port);
  ::close(fd);
  return port;
}

}  // namespace station::label_test
