// A private PostgreSQL server for one test: Debian's postgresql binaries, a fresh cluster in a
// temporary folder, listening on a Unix socket only (no TCP port to collide with), stopped
// and removed with the object. Under root the server runs as the `postgres` user (PostgreSQL
// refuses root). Fails the test, naming the fix, when PostgreSQL is not installed.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <stdlib.h>
#include <string>
#include <vector>

#include "support.hpp"

namespace station::test {

class PgServer {
 public:
  PgServer() {
    bin_ = find_bin();
    if (bin_.empty()) {
      ADD_FAILURE() << "PostgreSQL server binaries are not installed (/usr/lib/postgresql/*/bin): run "
                       "scripts/setup-deps";
      return;
    }
    std::random_device rd;
    port_ = 20000 + static_cast<int>(rd() % 40000);
    // Under /tmp, not $TMPDIR: under root the `postgres` user must reach the folder (and its
    // socket), which a $TMPDIR inside root's home would not let it.
    std::string tmpl = "/tmp/station-pg-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      ADD_FAILURE() << "cannot make a folder for the PostgreSQL server under /tmp";
      return;
    }
    dir_ = tmpl;
    const auto data = dir_ / "pgdata";
    if (::geteuid() == 0) {
      // The server's own user must own its folders.
      run({"chown", "postgres", dir_.string()});
      run({"chmod", "755", dir_.string()});
    }
    auto r = as_server({(bin_ / "initdb").string(), "-D", data.string(), "-U", "postgres", "--auth=trust",
                        "--no-sync", "-E", "UTF8", "--locale=C"});
    if (r.exit_code != 0) {
      ADD_FAILURE() << "initdb failed: " << r.out << r.err;
      return;
    }
    r = as_server({(bin_ / "pg_ctl").string(), "-D", data.string(), "-l", (dir_ / "server.log").string(), "-w",
                   "-o",
                   "-k " + dir_.string() + " -p " + std::to_string(port_) +
                       " -c listen_addresses='' -c fsync=off -c synchronous_commit=off",
                   "start"});
    if (r.exit_code != 0) {
      ADD_FAILURE() << "the PostgreSQL server did not start: " << r.out << r.err
                    << read_file(dir_ / "server.log");
      return;
    }
    started_ = true;
  }
  PgServer(const PgServer&) = delete;
  PgServer& operator=(const PgServer&) = delete;
  ~PgServer() {
    if (started_)
      as_server({(bin_ / "pg_ctl").string(), "-D", (dir_ / "pgdata").string(), "-m", "immediate", "-w", "stop"});
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

  bool ok() const noexcept { return started_; }
  // A libpq connection string (no password: trust authentication on the private socket).
  std::string conninfo() const {
    return "host=" + dir_.string() + " port=" + std::to_string(port_) + " dbname=postgres user=postgres";
  }
  // Runs SQL through psql (the tests' hand on the shared database); stdout is the result.
  RunResult psql(const std::string& sql) const {
    return run({(bin_ / "psql").string(), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", conninfo(), "-c", sql});
  }

 private:
  static std::filesystem::path find_bin() {
    std::filesystem::path best;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/usr/lib/postgresql", ec))
      if (std::filesystem::exists(e.path() / "bin" / "initdb") && (best.empty() || e.path() > best.parent_path()))
        best = e.path() / "bin";
    return best;
  }
  RunResult as_server(std::vector<std::string> argv) const {
    if (::geteuid() == 0) argv.insert(argv.begin(), {"runuser", "-u", "postgres", "--"});
    return run(argv);
  }

  std::filesystem::path dir_;
  std::filesystem::path bin_;
  int port_ = 0;
  bool started_ = false;
};

}  // namespace station::test
