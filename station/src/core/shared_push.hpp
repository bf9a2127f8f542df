// Shared records from a station (db/shared.hpp, docs/records.md "Shared records"): the
// connection string from its reference, and the pusher `station serve` runs.
#pragma once

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>

#include "common/secure.hpp"
#include "core/config.hpp"

namespace station::core {

class Station;

// The connection string from `ref` (file:PATH, env:VAR, or the string itself); `where` names
// the setting in messages. Relative paths are relative to `base`.
SecretString conninfo_of(const std::string& ref, const std::filesystem::path& base, const std::string& where);
// The station's [shared] url, resolved. Errc::config_error when it has none.
SecretString shared_conninfo(const StationConfig& config);

// Pushes the station's journal to the shared records every `every` on a thread of its own,
// with a read-only connection of its own (the line is never held up); a failed push is
// logged and retried at the next interval. Stops, after a last push, when destroyed.
class SharedPusher {
 public:
  SharedPusher(Station& station, std::chrono::milliseconds every);
  SharedPusher(const SharedPusher&) = delete;
  SharedPusher& operator=(const SharedPusher&) = delete;
  ~SharedPusher();

 private:
  void loop();
  void push_once();

  Station& station_;
  std::chrono::milliseconds every_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::string last_error_;
  std::thread thread_;
};

}  // namespace station::core
