// A station data folder made by `station init` through the real binary, and helpers the
// end-to-end suites share.
#pragma once

#include <sqlite3.h>

#include <filesystem>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "support.hpp"

namespace station::test {

namespace fs = std::filesystem;

inline std::string station_bin() { return built_binary("station").string(); }

inline int count_lines(const std::string& text, const std::string& line) {
  int n = 0;
  std::size_t pos = 0;
  const std::string needle = line + "\n";
  while ((pos = text.find(needle, pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') ++n;
    pos += needle.size();
  }
  return n;
}

// A data folder made by `station init`.
class StationDir {
 public:
  StationDir() {
    const auto r = run({station_bin(), "init", "--data", data().string()});
    if (r.exit_code != 0) throw std::runtime_error("station init failed: " + r.err);
  }
  fs::path data() const { return tmp_.path() / "data"; }
  fs::path file(const std::string& name) const { return tmp_.path() / name; }
  std::map<std::string, std::string> hsm_env() const {
    return {{"SOFTHSM2_CONF", (data() / "softhsm2.conf").string()}};
  }

  // An EC public key (PEM) made by openssl on `curve`.
  fs::path make_pubkey(const std::string& curve, const std::string& name) const {
    const auto key = file(name + ".key"), pub = file(name + ".pub");
    EXPECT_EQ(run({"openssl", "ecparam", "-name", curve, "-genkey", "-noout", "-out", key.string()}).exit_code, 0);
    EXPECT_EQ(run({"openssl", "ec", "-in", key.string(), "-pubout", "-out", pub.string()}).exit_code, 0);
    return pub;
  }

  RunResult issue(const fs::path& pub, const std::string& serial, const std::vector<std::string>& extra = {},
                  const std::map<std::string, std::string>& env = {}) const {
    std::vector<std::string> argv = {station_bin(), "issue", "--data", data().string(), "--pubkey", pub.string(),
                                     "--serial", serial};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run(argv, env);
  }

  // The root certificate, alone, as PEM.
  fs::path root_pem() const {
    const auto r = run({station_bin(), "ca", "show", "--data", data().string(), "--json"});
    const auto j = nlohmann::json::parse(r.out);
    const auto path = file("root.pem");
    write_file(path, j.at(0).at("pem").get<std::string>());
    return path;
  }

  // The first row `sql` gives on the station's database (read-only), its columns as text
  // (nullopt for NULL); empty when there is none. `params` bind the ?s in order.
  std::vector<std::optional<std::string>> row(const std::string& sql, const std::vector<std::string>& params = {}) const {
    sqlite3* db = nullptr;
    std::vector<std::optional<std::string>> out;
    EXPECT_EQ(sqlite3_open_v2((data() / "station.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr), SQLITE_OK) << sql;
    for (std::size_t k = 0; k < params.size(); ++k)
      sqlite3_bind_text(st, static_cast<int>(k + 1), params[k].c_str(), -1, SQLITE_TRANSIENT);
    if (st != nullptr && sqlite3_step(st) == SQLITE_ROW)
      for (int c = 0; c < sqlite3_column_count(st); ++c) {
        const auto* text = sqlite3_column_text(st, c);
        out.push_back(text == nullptr ? std::nullopt
                                      : std::optional<std::string>(reinterpret_cast<const char*>(text)));
      }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
  }

  long long count_devices(const std::string& serial) const {
    return std::stoll(row("SELECT count(*) FROM devices WHERE serial = ?", {serial}).at(0).value());
  }

  // Rewrites station.conf with `from` replaced by `to`, into a copy; returns its path.
  fs::path config_with(const std::string& from, const std::string& to, const std::string& name = "alt.conf") const {
    return config_with({{from, to}}, name);
  }
  fs::path config_with(const std::vector<std::pair<std::string, std::string>>& edits, const std::string& name) const {
    std::string conf = read_file(data() / "station.conf");
    for (const auto& [from, to] : edits) {
      const auto pos = conf.find(from);
      EXPECT_NE(pos, std::string::npos) << from;
      if (pos != std::string::npos) conf.replace(pos, from.size(), to);
    }
    const auto path = data() / name;
    write_file(path, conf);
    return path;
  }

 private:
  TempDir tmp_{"station-cli"};
};

}  // namespace station::test
