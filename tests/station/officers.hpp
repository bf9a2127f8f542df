// A station data folder with two security officers (alice, bob) and an operator (olga),
// made through `station user add`, plus helpers for the CA lifecycle suites.
#pragma once

#include <sqlite3.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "station_dir.hpp"

namespace station::test {

class OfficerStation : public StationDir {
 public:
  OfficerStation() {
    add_user("officer", "alice", std::nullopt);  // the first officer: whoever holds the folder
    add_user("officer", "bob", token("alice"));
    add_user("operator", "olga", token("alice"));
  }

  fs::path token(const std::string& name) const { return file(name + ".token"); }

  void add_user(const std::string& role, const std::string& name, const std::optional<fs::path>& by) const {
    std::vector<std::string> argv = {station_bin(), "user", "add", "--data", data().string(), "--role", role, "--name", name};
    if (by) argv.insert(argv.end(), {"--token-file", by->string()});
    const auto r = run(argv);
    if (r.exit_code != 0) throw std::runtime_error("user add " + name + ": " + r.err);
    write_file(token(name), r.out);
    fs::permissions(token(name), fs::perms::owner_read | fs::perms::owner_write);
  }

  // `station ca ARGS --data DIR --token-file WHO.token`
  RunResult ca(const std::string& who, std::vector<std::string> args) const {
    std::vector<std::string> argv = {station_bin(), "ca"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--data", data().string()});
    if (!who.empty()) argv.insert(argv.end(), {"--token-file", token(who).string()});
    return run(argv);
  }

  nlohmann::json show() const {
    const auto r = run({station_bin(), "ca", "show", "--data", data().string(), "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out);
  }

  // The certificate of `role` (and status, if given) from `ca show --json`, written as PEM.
  fs::path pem_of(const nlohmann::json& show, const std::string& role, const std::string& status,
                  const std::string& name, const std::string& key_id = {}) const {
    for (const auto& c : show)
      if (c["role"] == role && (status.empty() || c["status"] == status) && (key_id.empty() || c["key_id"] == key_id)) {
        write_file(file(name), c["pem"].get<std::string>());
        return file(name);
      }
    ADD_FAILURE() << "no " << role << " " << status << " in " << show.dump(1);
    return {};
  }

  // Issues a device certificate; returns the file holding the device certificate + chain.
  fs::path issue_device(const std::string& serial) const {
    const auto pub = make_pubkey("prime256v1", serial);
    const auto r = issue(pub, serial);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    write_file(file(serial + ".pem"), r.out);
    return file(serial + ".pem");
  }

  std::string sql1(const std::string& query) const {
    sqlite3* db = nullptr;
    sqlite3_open_v2((data() / "station.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
    sqlite3_stmt* st = nullptr;
    std::string out;
    if (sqlite3_prepare_v2(db, query.c_str(), -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_text(st, 0) != nullptr)
      out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
  }

  void expect_journal_verifies() const {
    const auto v = run({station_bin(), "audit", "verify", "--data", data().string(), "--json"});
    EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  }
};

inline RunResult openssl_verify(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"openssl", "verify"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv);
}

// certtool --verify with one CA file and a chain file (leaf first).
inline RunResult certtool_verify(const fs::path& ca, const fs::path& chain) {
  return run({"certtool", "--verify", "--load-ca-certificate", ca.string(), "--infile", chain.string()});
}

inline std::string cat(const std::vector<fs::path>& files) {
  std::string out;
  for (const auto& f : files) out += read_file(f);
  return out;
}

}  // namespace station::test
