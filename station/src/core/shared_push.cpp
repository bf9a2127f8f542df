#include "core/shared_push.hpp"

#include <cstdlib>
#include <fstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/error.hpp"
#include "core/station.hpp"
#include "db/records.hpp"
#include "db/shared.hpp"

namespace station::core {

SecretString conninfo_of(const std::string& ref, const std::filesystem::path& base, const std::string& where) {
  if (ref.rfind("env:", 0) == 0) {
    const char* v = std::getenv(ref.substr(4).c_str());
    if (v == nullptr || *v == '\0')
      throw Error(Errc::config_error, fmt::format("{} = {}: the variable {} is not set", where, ref, ref.substr(4)));
    return SecretString(std::string(v));
  }
  if (ref.rfind("file:", 0) == 0) {
    std::filesystem::path p = ref.substr(5);
    if (p.is_relative()) p = base / p;
    std::ifstream in(p, std::ios::binary);
    std::string line;
    if (!in || !std::getline(in, line))
      throw Error(Errc::config_error, fmt::format("{} = {}: {} is missing or empty", where, ref, p.string()));
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    return SecretString(std::move(line));
  }
  return SecretString(std::string(ref));
}

SecretString shared_conninfo(const StationConfig& config) {
  if (config.shared.url.empty())
    throw Error(Errc::config_error, fmt::format("{} has no [shared] url: add one (docs/records.md, \"Shared records\")",
                                                config.config_file.string()));
  return conninfo_of(config.shared.url, config.data_dir, "[shared] url");
}

SharedPusher::SharedPusher(Station& station, std::chrono::milliseconds every) : station_(station), every_(every) {
  (void)station_.audit_signer();  // made here, on the caller's thread (it opens the HSM once)
  thread_ = std::thread([this] { loop(); });
}

SharedPusher::~SharedPusher() {
  {
    const std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void SharedPusher::loop() {
  for (;;) {
    push_once();
    std::unique_lock lock(mutex_);
    if (stopping_) return;
    if (wake_.wait_for(lock, every_, [this] { return stopping_; })) {
      lock.unlock();
      push_once();  // what the station did since the last push, before it stops
      return;
    }
  }
}

void SharedPusher::push_once() {
  try {
    const auto conninfo = shared_conninfo(station_.config());
    db::Records records(station_.config().resolve(station_.config().database), true);
    const auto r = db::shared::push(records.connection(), station_.audit_signer(), station_.config().station_id,
                                    conninfo);
    if (r.entries > 0)
      spdlog::info("shared records: pushed entries {} to {} ({} segments)", r.first_seq, r.last_seq, r.segments);
    if (!last_error_.empty()) spdlog::warn("shared records: pushing again (was: {})", last_error_);
    last_error_.clear();
  } catch (const std::exception& e) {
    // Said once per distinct failure, not at every interval.
    if (last_error_ != e.what()) spdlog::warn("shared records: push failed, retrying every {} s: {}",
                                              std::chrono::duration_cast<std::chrono::seconds>(every_).count(),
                                              e.what());
    last_error_ = e.what();
  }
}

}  // namespace station::core
