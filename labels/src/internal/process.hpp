// Runs a program (no shell) with bytes on its stdin, capturing stdout and stderr, killing it
// when it outlives a timeout. Used for the CUPS client programs (lp, lpstat, cancel).
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace station::labels::internal {

struct ProcessResult {
  int exit_code = -1;     // exit status, 128+signal, or -1 when it timed out (and was killed)
  bool timed_out = false;
  std::string out;
  std::string err;
};

// Throws Error(not_found) when the program cannot be started.
ProcessResult run_process(const std::vector<std::string>& argv, const std::string& input,
                          std::chrono::milliseconds timeout);

}  // namespace station::labels::internal
