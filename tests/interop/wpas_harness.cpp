#include "wpas_harness.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "support.hpp"

namespace station::test::interop {
namespace {

constexpr const char* kIface = "dppa";
constexpr const char* kPeer = "dppb";
constexpr const char* kNetnsPrefix = "station-dpp-";

std::string find_program(const std::string& name) {
  std::vector<std::string> dirs;
  if (const char* path = std::getenv("PATH")) {
    std::stringstream ss(path);
    for (std::string d; std::getline(ss, d, ':');)
      if (!d.empty()) dirs.push_back(d);
  }
  for (const char* d : {"/usr/sbin", "/sbin", "/usr/bin", "/bin"}) dirs.emplace_back(d);
  for (const auto& d : dirs) {
    const auto p = std::filesystem::path(d) / name;
    if (::access(p.c_str(), X_OK) == 0) return p.string();
  }
  return {};
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (const char c : s) {
    if (c == '\'') out += "'\\''";
    else out.push_back(c);
  }
  return out + "'";
}

// Namespaces left by a test process that died (its pid is in the name) are removed.
void sweep_stale_namespaces(const std::string& ip) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/run/netns", ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(kNetnsPrefix, 0) != 0) continue;
    const auto pid = static_cast<pid_t>(std::atol(name.c_str() + std::strlen(kNetnsPrefix)));
    if (pid <= 0 || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
    test::run({ip, "netns", "del", name});
  }
}

std::filesystem::path make_run_dir() {
  // Unix socket paths are limited to 108 bytes: keep the folder short.
  const char* base = std::getenv("TMPDIR");
  std::string root = base != nullptr && std::strlen(base) < 40 ? base : "/tmp";
  std::string tmpl = root + "/stwpas-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp: " + std::string(std::strerror(errno)));
  return tmpl;
}

}  // namespace

bool interop_required() {
  const char* v = std::getenv("STATION_REQUIRE_INTEROP");
  return v != nullptr && std::string(v) == "1";
}

std::unique_ptr<WpaSupplicant> WpaSupplicant::start(std::string* why_not) {
  const auto fail = [&](const std::string& why) -> std::unique_ptr<WpaSupplicant> {
    if (why_not != nullptr) *why_not = why;
    return nullptr;
  };
  // STATION_WPA_SUPPLICANT names another build of the daemon to test against.
  const char* chosen = std::getenv("STATION_WPA_SUPPLICANT");
  const std::string wpas = chosen != nullptr ? std::string(chosen) : find_program("wpa_supplicant");
  const std::string ip = find_program("ip");
  if (chosen != nullptr && ::access(chosen, X_OK) != 0)
    return fail("STATION_WPA_SUPPLICANT=" + wpas + " is not an executable program");
  if (wpas.empty()) return fail("wpa_supplicant is not installed (Debian package wpasupplicant)");
  if (ip.empty()) return fail("ip is not installed (Debian package iproute2)");
  const bool root = ::geteuid() == 0;
  const std::string unshare = find_program("unshare");
  if (!root && unshare.empty()) return fail("not root and unshare (util-linux) is missing");

  std::unique_ptr<WpaSupplicant> w(new WpaSupplicant());
  try {
    w->dir_ = make_run_dir();
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  const auto conf = w->dir_ / "wpas.conf";
  test::write_file(conf, "ctrl_interface=" + (w->dir_ / "ctrl").string() + "\nupdate_config=0\n");

  // Inside the namespace: the veth pair, then wpa_supplicant in the foreground (same pid).
  const std::string script = ip + " link add " + kIface + " type veth peer name " + kPeer + " && " + ip +
                             " link set " + kIface + " up && " + ip + " link set " + kPeer + " up && exec " +
                             shell_quote(wpas) + " -Dwired -i " + kIface + " -c " + shell_quote(conf.string());
  std::vector<std::string> argv;
  if (root) {
    static std::atomic<unsigned> counter{0};
    sweep_stale_namespaces(ip);
    w->netns_ = kNetnsPrefix + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    const auto r = test::run({ip, "netns", "add", w->netns_});
    if (r.exit_code != 0) {
      w->netns_.clear();
      return fail("ip netns add failed: " + r.err);
    }
    argv = {ip, "netns", "exec", w->netns_, "/bin/sh", "-c", script};
  } else {
    argv = {unshare, "-Urn", "/bin/sh", "-c", script};
  }

  // Everything the child needs is prepared before fork(): after it, only async-signal-safe calls.
  const auto log_path = w->dir_ / "wpas.log";
  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (log_fd < 0) return fail("cannot create " + log_path.string());
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    return fail("fork: " + std::string(std::strerror(errno)));
  }
  if (pid == 0) {
    // The daemon dies with the test process, so a crashed test leaves no daemon behind.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(log_fd);
  w->pid_ = pid;

  // Wait for the control socket to answer PING.
  const auto ctrl = w->dir_ / "ctrl" / kIface;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  for (;;) {
    int status = 0;
    if (::waitpid(w->pid_, &status, WNOHANG) == w->pid_) {
      w->pid_ = -1;
      return fail("wpa_supplicant exited at start-up (status " + std::to_string(status) + "): " + w->log());
    }
    if (std::filesystem::exists(ctrl)) {
      try {
        if (w->request("PING", 1000) == "PONG") break;
      } catch (const std::exception&) {
        // not ready yet
      }
    }
    if (std::chrono::steady_clock::now() > deadline)
      return fail("wpa_supplicant's control socket did not answer within 15 s: " + w->log());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return w;
}

WpaSupplicant::~WpaSupplicant() { stop(); }

void WpaSupplicant::stop() noexcept {
  if (sock_ >= 0) {
    ::close(sock_);
    sock_ = -1;
  }
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int status = 0;
    bool gone = false;
    for (int i = 0; i < 200 && !gone; ++i) {
      gone = ::waitpid(pid_, &status, WNOHANG) == pid_;
      if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!gone) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
    pid_ = -1;
  }
  try {
    if (!netns_.empty()) test::run({find_program("ip"), "netns", "del", netns_});
  } catch (...) {
  }
  netns_.clear();
  if (!dir_.empty() && std::getenv("STATION_KEEP_TEST_DIRS") == nullptr) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string WpaSupplicant::request(const std::string& command, int timeout_ms) {
  // Errors name the command only: its arguments may hold a private key (dpp_bootstrap_gen key=).
  const std::string name = command.substr(0, command.find(' '));
  if (sock_ < 0) {
    sock_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock_ < 0) throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
    local_ = dir_ / "client";
    sockaddr_un local{};
    local.sun_family = AF_UNIX;
    std::strncpy(local.sun_path, local_.c_str(), sizeof local.sun_path - 1);
    ::unlink(local_.c_str());
    sockaddr_un peer{};
    peer.sun_family = AF_UNIX;
    const auto ctrl = dir_ / "ctrl" / kIface;
    std::strncpy(peer.sun_path, ctrl.c_str(), sizeof peer.sun_path - 1);
    if (::bind(sock_, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0 ||
        ::connect(sock_, reinterpret_cast<sockaddr*>(&peer), sizeof peer) != 0) {
      const std::string err = std::strerror(errno);
      ::close(sock_);
      sock_ = -1;
      throw std::runtime_error("control socket " + ctrl.string() + ": " + err);
    }
  }
  if (::send(sock_, command.data(), command.size(), 0) < 0)
    throw std::runtime_error("send " + name + ": " + std::strerror(errno));
  std::vector<char> buf(65536);
  for (;;) {
    pollfd pfd{sock_, POLLIN, 0};
    const int n = ::poll(&pfd, 1, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error("no reply to " + name + " from wpa_supplicant");
    const ssize_t got = ::recv(sock_, buf.data(), buf.size(), 0);
    if (got < 0) throw std::runtime_error("recv: " + std::string(std::strerror(errno)));
    std::string reply(buf.data(), static_cast<std::size_t>(got));
    if (!reply.empty() && reply[0] == '<') continue;  // an unsolicited event, not our reply
    while (!reply.empty() && reply.back() == '\n') reply.pop_back();
    return reply;
  }
}

std::optional<int> WpaSupplicant::qr_code(const std::string& uri) {
  const auto reply = request("DPP_QR_CODE " + uri);
  if (reply.empty() || reply.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return std::stoi(reply);
}

std::optional<BootstrapInfo> WpaSupplicant::read_uri(const std::string& uri) {
  const auto id = qr_code(uri);
  if (!id) return std::nullopt;
  auto info = bootstrap_info(*id);
  bootstrap_remove(*id);
  return info;
}

BootstrapInfo WpaSupplicant::bootstrap_info(int id) {
  const auto reply = request("DPP_BOOTSTRAP_INFO " + std::to_string(id));
  if (reply == "FAIL") throw std::runtime_error("dpp_bootstrap_info " + std::to_string(id) + ": FAIL");
  BootstrapInfo bi;
  std::stringstream ss(reply);
  for (std::string line; std::getline(ss, line);) {
    const auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    bi.all[line.substr(0, eq)] = line.substr(eq + 1);
  }
  const auto get = [&](const char* k) { return bi.all.count(k) != 0 ? bi.all[k] : std::string(); };
  bi.type = get("type");
  bi.mac_addr = get("mac_addr");
  bi.info = get("info");
  bi.num_freq = static_cast<unsigned>(std::stoul("0" + get("num_freq")));
  bi.use_freq = static_cast<unsigned>(std::stoul("0" + get("use_freq")));
  bi.curve = get("curve");
  bi.pkhash = get("pkhash");
  bi.version = std::stoi("0" + get("version"));
  return bi;
}

int WpaSupplicant::bootstrap_gen(const std::string& params) {
  const auto reply = request("DPP_BOOTSTRAP_GEN " + params);
  if (reply.empty() || reply.find_first_not_of("0123456789") != std::string::npos)
    throw std::runtime_error("dpp_bootstrap_gen failed: " + reply);
  return std::stoi(reply);
}

std::string WpaSupplicant::bootstrap_get_uri(int id) {
  const auto reply = request("DPP_BOOTSTRAP_GET_URI " + std::to_string(id));
  if (reply == "FAIL") throw std::runtime_error("dpp_bootstrap_get_uri " + std::to_string(id) + ": FAIL");
  return reply;
}

void WpaSupplicant::bootstrap_remove(int id) {
  const auto reply = request("DPP_BOOTSTRAP_REMOVE " + std::to_string(id));
  if (reply != "OK") throw std::runtime_error("dpp_bootstrap_remove " + std::to_string(id) + ": " + reply);
}

std::string WpaSupplicant::log() const {
  std::ifstream in(dir_ / "wpas.log");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace station::test::interop
