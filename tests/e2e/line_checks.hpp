// What every end-to-end line test checks after `station demo` has run (or been killed and
// run again): the records against what the simulated devices really hold.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "simdevice/device.hpp"
#include "support.hpp"

namespace station::test {

struct DemoRun {
  RunResult result;
  nlohmann::json summary;  // the --json line (null when the run did not print one)
};

// `station demo --data DIR --json ARGS...` with `env`.
DemoRun run_demo(const std::filesystem::path& data, const std::vector<std::string>& args,
                 const std::map<std::string, std::string>& env = {});

// Starts the demo in the background and SIGKILLs it after `delay`; returns its exit status
// (128+9 when it was killed, 0 when it finished first).
int run_demo_killed_after(const std::filesystem::path& data, const std::vector<std::string>& args,
                          std::chrono::milliseconds delay);

// Every flash image the simulators hold, by chip id (hex): the demo's under DATA/sim, or
// every *.flash under `root`.
std::map<std::string, fixtures::sim::FlashImage> simulated_devices(const std::filesystem::path& data,
                                                                   const std::filesystem::path& root = {});

struct LineFacts {
  std::int64_t done = 0, failed = 0, other = 0;
  std::int64_t separate_key = 0;  // done devices whose certificate certifies a separate key
  std::vector<std::string> done_serials;
};

// Checks the invariants of DESIGN.md (gtest EXPECTs): no serial, MAC, key hash or
// certificate serial twice; every device marked done holds, in its simulator's flash, the
// certificate and DPP key of its one active identity (and is locked when `locked`); the
// journal verifies. The certificate certifies the DPP key the device holds, or the separate
// certificate key it holds and binds that DPP key's hash.
LineFacts check_line(const std::filesystem::path& data, bool locked, const std::filesystem::path& sims = {});

// A process in the background, stdout and stderr to `log`; killed (SIGKILL) on destruction.
struct Background {
  pid_t pid = -1;
  Background(const std::vector<std::string>& argv, const std::filesystem::path& log);
  // Sends `sig`, waits; the exit code, or 128+signal.
  int stop(int sig);
  ~Background() { stop(9); }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;
};

// The ADDR:PORT `station serve` prints ("station listening on http://ADDR") into `log`,
// waited for up to `timeout`; empty when it never came.
std::string wait_for_listen_address(const std::filesystem::path& log,
                                    std::chrono::milliseconds timeout = std::chrono::seconds(20));

}  // namespace station::test
