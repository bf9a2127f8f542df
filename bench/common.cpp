#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "bench.hpp"
#include "common/error.hpp"
#include "fixtures/messages.hpp"

namespace station::bench {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double peak_rss_mb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
  return 0;
}

fs::path self_dir() {
  std::error_code ec;
  return fs::read_symlink("/proc/self/exe", ec).parent_path();
}

namespace {
fs::path counting_module() { return self_dir() / "libstation_bench_p11count.so"; }
}  // namespace

void make_station(const fs::path& dir, bool count_signatures) {
  core::InitOptions init;
  init.data_dir = dir;
  core::init_station(init);
  if (!count_signatures) return;
  // Swap the module line of station.conf for the counting forwarder, which loads the real one.
  const fs::path conf = dir / "station.conf";
  std::ifstream in(conf);
  std::ostringstream out;
  std::string line;
  bool swapped = false;
  while (std::getline(in, line)) {
    if (!swapped && line.rfind("module = '", 0) == 0) {
      const std::string real = line.substr(10, line.size() - 11);
      ::setenv("STATION_BENCH_P11_REAL", real.c_str(), 1);
      line = "module = '" + counting_module().string() + "'";
      swapped = true;
    }
    out << line << "\n";
  }
  in.close();
  if (!swapped) throw Error(Errc::internal, "bench: no hsm module line in " + conf.string());
  std::ofstream(conf, std::ios::trunc) << out.str();
}

std::uint64_t hsm_signatures() {
  void* h = ::dlopen(counting_module().c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (h == nullptr) return 0;
  using Fn = unsigned long long (*)();
  auto* fn = reinterpret_cast<Fn>(::dlsym(h, "station_bench_p11_signs"));
  const std::uint64_t n = fn != nullptr ? fn() : 0;
  ::dlclose(h);
  return n;
}

fixtures::asio::awaitable<void> CountingLink::write(ByteView data, std::error_code& ec) {
  counters_->bytes_sent += data.size();
  decoder_.feed(data);
  while (auto ev = decoder_.next())
    if (ev->error == fixtures::FrameError::none &&
        ev->frame.type == static_cast<std::uint8_t>(fixtures::MsgType::challenge))
      ++counters_->challenges;
  co_await inner_->write(data, ec);
}

fixtures::asio::awaitable<std::size_t> CountingLink::read_some(std::span<std::uint8_t> buf, std::error_code& ec) {
  const std::size_t n = co_await inner_->read_some(buf, ec);
  counters_->bytes_received += n;
  co_return n;
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
}

}  // namespace station::bench
