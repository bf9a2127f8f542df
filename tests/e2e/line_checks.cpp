#include "line_checks.hpp"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <thread>

#include "db/records.hpp"
#include "db/sqlite.hpp"
#include "pki/dpp_key.hpp"
#include "pki/x509.hpp"

extern char** environ;

namespace station::test {

namespace fs = std::filesystem;
using fixtures::sim::Flash;
using fixtures::sim::FlashImage;

DemoRun run_demo(const fs::path& data, const std::vector<std::string>& args,
                 const std::map<std::string, std::string>& env) {
  std::vector<std::string> argv = {built_binary("station").string(), "demo", "--data", data.string(), "--json"};
  argv.insert(argv.end(), args.begin(), args.end());
  DemoRun r;
  r.result = run(argv, env);
  const auto start = r.result.out.rfind("{\"batch\"");
  if (start != std::string::npos) r.summary = nlohmann::json::parse(r.result.out.substr(start), nullptr, false);
  return r;
}

int run_demo_killed_after(const fs::path& data, const std::vector<std::string>& args, std::chrono::milliseconds delay) {
  std::vector<std::string> argv = {built_binary("station").string(), "demo", "--data", data.string(), "--json"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  ::posix_spawn_file_actions_init(&fa);
  ::posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  ::posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, cargv[0], &fa, nullptr, cargv.data(), environ);
  ::posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return -1;
  std::this_thread::sleep_for(delay);
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

std::map<std::string, FlashImage> simulated_devices(const fs::path& data, const fs::path& root) {
  std::map<std::string, FlashImage> out;
  const fs::path where = root.empty() ? data / "sim" : root;
  if (!fs::exists(where)) return out;
  for (const auto& e : fs::recursive_directory_iterator(where)) {
    if (e.path().extension() != ".flash") continue;
    auto image = Flash::load(e.path());
    out[hex_encode(image.chip_id)] = std::move(image);
  }
  return out;
}

LineFacts check_line(const fs::path& data, bool locked, const fs::path& sims) {
  LineFacts facts;
  db::Connection c(data / "station.db", true);
  // Nothing handed out twice (the schema's UNIQUE constraints, checked from outside).
  for (const char* sql :
       {"SELECT serial FROM devices GROUP BY serial HAVING count(*) > 1",
        "SELECT mac FROM devices WHERE mac IS NOT NULL GROUP BY mac HAVING count(*) > 1",
        "SELECT chip_id FROM devices WHERE chip_id IS NOT NULL GROUP BY chip_id HAVING count(*) > 1",
        "SELECT pkhash FROM identities GROUP BY pkhash HAVING count(*) > 1",
        "SELECT cert_serial FROM identities GROUP BY cert_serial HAVING count(*) > 1",
        "SELECT device_id FROM identities WHERE status = 'active' GROUP BY device_id HAVING count(*) > 1"}) {
    auto st = c.prepare(sql);
    EXPECT_FALSE(st.step()) << sql << ": " << st.text(0);
  }
  const auto devices = simulated_devices(data, sims);
  auto st = c.prepare("SELECT id, serial, chip_id, state FROM devices ORDER BY id");
  while (st.step()) {
    const std::string serial = st.text(1), chip = st.is_null(2) ? "" : st.text(2), state = st.text(3);
    if (state == "failed") ++facts.failed;
    if (state != "done") {
      if (state != "failed") ++facts.other;
      continue;
    }
    ++facts.done;
    facts.done_serials.push_back(serial);
    const auto identities = db::identities_of(c, st.int64(0));
    const db::IdentityRecord* active = nullptr;
    for (const auto& i : identities)
      if (i.status == "active") active = &i;
    if (active == nullptr) {
      ADD_FAILURE() << serial << " is done without an active identity";
      continue;
    }
    const auto it = devices.find(chip);
    if (it == devices.end()) {
      ADD_FAILURE() << serial << " is done but no simulator holds chip " << chip;
      continue;
    }
    const FlashImage& flash = it->second;
    const auto cert = flash.items.find(fixtures::ItemId::device_cert);
    EXPECT_TRUE(cert != flash.items.end() && cert->second == active->cert_der)
        << serial << ": the device does not hold its recorded certificate";
    EXPECT_EQ(fixtures::sim::image_public_key(flash, fixtures::ItemId::dpp_key), active->public_key)
        << serial << ": the device does not hold its recorded DPP key";
    // The certificate certifies the DPP key, or (a "separate" profile) the device's
    // certificate key and binds the DPP key by its hash.
    const auto certified = pki::dpp::PublicKey::from_spki_der(pki::describe_certificate(active->cert_der).spki);
    if (const auto bound = pki::bound_dpp_pkhash(active->cert_der)) {
      ++facts.separate_key;
      EXPECT_EQ(*bound, active->pkhash) << serial << ": the certificate binds another DPP key";
      EXPECT_EQ(fixtures::sim::image_public_key(flash, fixtures::ItemId::cert_key), certified.spki_der())
          << serial << ": the device does not hold the key its certificate certifies";
      EXPECT_FALSE(certified == pki::dpp::PublicKey::from_spki_der(active->public_key)) << serial;
    } else {
      EXPECT_EQ(certified.spki_der(), active->public_key) << serial << ": the certificate certifies another key";
    }
    const auto uri = flash.items.find(fixtures::ItemId::dpp_uri);
    EXPECT_TRUE(uri != flash.items.end() && active->dpp_uri &&
                std::string(uri->second.begin(), uri->second.end()) == *active->dpp_uri)
        << serial;
    if (locked) {
      EXPECT_TRUE(flash.locked) << serial << " is done but not locked";
    }
  }
  const auto v = run({built_binary("station").string(), "audit", "verify", "--data", data.string(), "--json"});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  return facts;
}

Background::Background(const std::vector<std::string>& argv, const fs::path& log) {
  std::vector<std::string> args = argv;
  std::vector<char*> cargv;
  for (auto& a : args) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  ::posix_spawn_file_actions_init(&fa);
  ::posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ::posix_spawn_file_actions_adddup2(&fa, 1, 2);
  if (::posix_spawn(&pid, cargv[0], &fa, nullptr, cargv.data(), environ) != 0) pid = -1;
  ::posix_spawn_file_actions_destroy(&fa);
}

int Background::stop(int sig) {
  if (pid <= 0) return -1;
  ::kill(pid, sig);
  int status = 0;
  ::waitpid(pid, &status, 0);
  pid = -1;
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

std::string wait_for_listen_address(const fs::path& log, std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  static const std::string kMark = "station listening on http://";
  while (std::chrono::steady_clock::now() < until) {
    const auto text = fs::exists(log) ? read_file(log) : std::string();
    const auto at = text.find(kMark);
    if (at != std::string::npos) {
      const auto end = text.find('\n', at);
      if (end != std::string::npos) return text.substr(at + kMark.size(), end - at - kMark.size());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return {};
}

}  // namespace station::test
