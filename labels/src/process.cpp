#include "internal/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pthread.h>

#include <cerrno>
#include <cstring>

#include "common/error.hpp"
#include "internal/handles.hpp"

extern char** environ;

namespace station::labels::internal {
namespace {

// write() to a pipe whose reader has gone raises SIGPIPE, which would kill the station.
// Block it for this thread around the write and swallow the one it caused.
ssize_t write_no_sigpipe(int fd, const char* data, std::size_t n) {
  sigset_t pipe_set, old_set;
  ::sigemptyset(&pipe_set);
  ::sigaddset(&pipe_set, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
  sigset_t pending;
  ::sigpending(&pending);
  const bool was_pending = ::sigismember(&pending, SIGPIPE) == 1;
  const ssize_t w = ::write(fd, data, n);
  const int saved = errno;
  if (w < 0 && saved == EPIPE && !was_pending) {
    const timespec zero{0, 0};
    ::sigtimedwait(&pipe_set, nullptr, &zero);
  }
  ::pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
  errno = saved;
  return w;
}

}  // namespace

ProcessResult run_process(const std::vector<std::string>& argv, const std::string& input,
                          std::chrono::milliseconds timeout) {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + timeout;
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (::pipe2(in_pipe, O_CLOEXEC) != 0) throw_errno("pipe");
  Fd in_r(in_pipe[0]), in_w(in_pipe[1]);
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) throw_errno("pipe");
  Fd out_r(out_pipe[0]), out_w(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) throw_errno("pipe");
  Fd err_r(err_pipe[0]), err_w(err_pipe[1]);

  std::vector<std::string> args = argv;
  std::vector<char*> argp;
  for (auto& a : args) argp.push_back(a.data());
  argp.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  ::posix_spawn_file_actions_init(&fa);
  ::posix_spawn_file_actions_adddup2(&fa, in_r.get(), 0);
  ::posix_spawn_file_actions_adddup2(&fa, out_w.get(), 1);
  ::posix_spawn_file_actions_adddup2(&fa, err_w.get(), 2);
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, argp[0], &fa, nullptr, argp.data(), environ);
  ::posix_spawn_file_actions_destroy(&fa);
  in_r.reset();
  out_w.reset();
  err_w.reset();
  if (rc != 0) {
    throw Error(Errc::not_found, "cannot run " + argv[0] + ": " + std::strerror(rc) +
                                     " (install it: scripts/setup-deps)", rc);
  }
  ProcessResult result;
  std::size_t written = 0;
  if (input.empty()) in_w.reset();
  else ::fcntl(in_w.get(), F_SETFL, O_NONBLOCK);
  char buf[4096];
  while (out_r || err_r) {
    pollfd pfd[3] = {{out_r.get(), POLLIN, 0}, {err_r.get(), POLLIN, 0}, {in_w.get(), POLLOUT, 0}};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
    if (left <= 0) {
      result.timed_out = true;
      break;
    }
    const int n = ::poll(pfd, 3, static_cast<int>(left));
    if (n < 0 && errno == EINTR) continue;
    for (int i = 0; i < 2; ++i) {
      Fd& fd = i == 0 ? out_r : err_r;
      if (fd && (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        const ssize_t r = ::read(fd.get(), buf, sizeof buf);
        if (r > 0) (i == 0 ? result.out : result.err).append(buf, static_cast<std::size_t>(r));
        else if (r == 0 || errno != EINTR) fd.reset();
      }
    }
    if (in_w && (pfd[2].revents & (POLLOUT | POLLERR | POLLHUP)) != 0) {
      const ssize_t w = write_no_sigpipe(in_w.get(), input.data() + written, input.size() - written);
      if (w > 0) written += static_cast<std::size_t>(w);
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == input.size()) in_w.reset();
    }
  }
  if (result.timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (result.timed_out) result.exit_code = -1;
  else result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

}  // namespace station::labels::internal
