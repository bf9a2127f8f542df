// Helpers shared by the test suites: temporary folders, running real programs, files.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace station::test {

// A fresh folder under $TMPDIR (or /tmp), removed with everything in it on destruction
// unless STATION_KEEP_TEST_DIRS is set (then its path is printed for a post-mortem).
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "station-test");
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();
  const std::filesystem::path& path() const noexcept { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

struct RunResult {
  int exit_code = -1;    // the program's exit status, or 128+signal
  std::string out;       // stdout
  std::string err;       // stderr
};

// Runs argv[0] (looked up in PATH when it has no '/') with stdin from `input`, capturing
// stdout and stderr. `env` entries are added to (or, with an empty value, removed from)
// the inherited environment. No shell is involved.
RunResult run(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env = {},
              const std::string& input = {});

// The built `station` binary (and other built programs by name).
std::filesystem::path built_binary(const std::string& name);

std::string read_file(const std::filesystem::path& p);
void write_file(const std::filesystem::path& p, const std::string& content);

// True when the program is on PATH.
bool have_program(const std::string& name);

}  // namespace station::test
