// The operator's page in headless Chromium (issue 9): `station serve` runs three simulated
// fixtures (one of them cannot commit, so its devices fail); an operator signs in on the
// page, opens a batch with its form and watches the devices complete (tests/e2e/web/
// page_test.mjs, driven by playwright-core); the page's counts and fixture tiles must then
// equal what `station audit query` reports. The screenshot is kept under
// BUILD/tests/artifacts/page.png.
//
// Needs /usr/bin/chromium (or $STATION_CHROMIUM), node, and tests/e2e/web/node_modules:
// scripts/setup-deps installs all three. Missing, the test fails (CI runs setup-deps first).
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "db/sqlite.hpp"
#include "line_checks.hpp"

namespace station::test {
namespace {

namespace fs = std::filesystem;

fs::path from_env(const char* var, const char* fallback) {
  const char* v = std::getenv(var);
  return v != nullptr && *v != '\0' ? fs::path(v) : fs::path(fallback);
}

std::string chromium_path() { return from_env("STATION_CHROMIUM", "/usr/bin/chromium").string(); }

struct Counts {
  std::int64_t done = 0, failed = 0;
};

TEST(Page, AnOperatorOpensABatchOnThePageWatchesItCompleteAndItsTilesEqualAuditQuery) {
  // What the page test needs, installed by scripts/setup-deps: missing is a failure, not a skip.
  const fs::path web = from_env("STATION_SOURCE_DIR", STATION_SOURCE_DIR) / "tests" / "e2e" / "web";
  ASSERT_EQ(::access(chromium_path().c_str(), X_OK), 0)
      << chromium_path() << " is missing: run scripts/setup-deps (it installs Debian's chromium)";
  ASSERT_TRUE(have_program("node")) << "node is missing: run scripts/setup-deps (it installs nodejs)";
  ASSERT_TRUE(fs::exists(web / "node_modules" / "playwright-core" / "package.json"))
      << web / "node_modules" << " lacks playwright-core: run scripts/setup-deps (npm ci --prefix tests/e2e/web)";

  TempDir dir("page");
  const auto data = dir / "data";
  const std::string station = built_binary("station").string();
  ASSERT_EQ(run({station, "init", "--data", data.string()}).exit_code, 0);
  // The first user is an officer; the officer adds the operator who uses the page.
  const auto officer = run({station, "user", "add", "--data", data.string(), "--role", "officer", "--name", "olga", "--json"});
  ASSERT_EQ(officer.exit_code, 0) << officer.err;
  write_file(dir / "officer.token", nlohmann::json::parse(officer.out).at("token").get<std::string>() + "\n");
  const auto op = run({station, "user", "add", "--data", data.string(), "--role", "operator", "--name", "oscar", "--json",
                       "--token-file", (dir / "officer.token").string()});
  ASSERT_EQ(op.exit_code, 0) << op.err;
  const auto token_file = dir / "oscar.token";
  write_file(token_file, nlohmann::json::parse(op.out).at("token").get<std::string>() + "\n");
  fs::permissions(token_file, fs::perms::owner_read | fs::perms::owner_write);

  // Three fixtures: 6 + 6 devices that provision, 3 that cannot commit (each fails after its
  // attempts). Every answer 25 ms late, so the batch takes seconds and the page sees it move.
  const std::vector<std::pair<int, std::vector<std::string>>> fixtures = {
      {6, {}}, {6, {}}, {3, {"--fail-commit"}}};
  int quantity = 0;
  std::vector<std::unique_ptr<Background>> sims;
  std::string conf = read_file(data / "station.conf");
  conf += "\n[printers.spool]\nuri = 'dir:" + (dir / "spool").string() + "'\n";
  conf += "\n[line]\nprinter = 'spool'\npoll_ms = 50\n";
  fs::create_directories(dir / "spool");
  for (std::size_t k = 0; k < fixtures.size(); ++k) {
    const auto sim_dir = dir / ("sim" + std::to_string(k + 1));
    fs::create_directories(sim_dir);
    std::vector<std::string> argv = {built_binary("simdevice").string(), "--pty", (sim_dir / "tty").string(), "--devices",
                                     std::to_string(fixtures[k].first), "--flash-dir", sim_dir.string(), "--slow", "25"};
    argv.insert(argv.end(), fixtures[k].second.begin(), fixtures[k].second.end());
    sims.push_back(std::make_unique<Background>(argv, sim_dir / "log"));
    conf += "\n[fixtures." + std::to_string(k + 1) + "]\nport = '" + (sim_dir / "tty").string() + "'\n";
    quantity += fixtures[k].first;
  }
  write_file(data / "station.conf", conf);

  // No batch yet: the line waits for the page to open one.
  Background serve({station, "serve", "--data", data.string(), "--listen", "127.0.0.1:0"}, dir / "serve.log");
  const std::string address = wait_for_listen_address(dir / "serve.log");
  ASSERT_FALSE(address.empty()) << read_file(dir / "serve.log");

  const fs::path artifacts = from_env("STATION_BINARY_DIR", STATION_BINARY_DIR) / "tests" / "artifacts";
  fs::create_directories(artifacts);
  const fs::path screenshot = artifacts / "page.png";
  fs::remove(screenshot);
  const std::string batch = "WO-PAGE-1";
  const auto started = std::chrono::steady_clock::now();
  const auto node = run({"node", (web / "page_test.mjs").string(), "--url", "http://" + address + "/", "--token-file",
                         token_file.string(), "--batch", batch, "--product", "Sensor v2", "--quantity",
                         std::to_string(quantity), "--fixtures", std::to_string(fixtures.size()), "--key-mode", "station",
                         "--screenshot", screenshot.string(), "--timeout-s", "60"});
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::cout << node.err << "page test: " << seconds << " s in Chromium; screenshot " << screenshot.string() << std::endl;
  ASSERT_EQ(node.exit_code, 0) << node.err << node.out << "\nserve.log:\n" << read_file(dir / "serve.log");
  const auto json_at = node.out.rfind("{\"who\"");
  const auto page = nlohmann::json::parse(node.out.substr(json_at == std::string::npos ? 0 : json_at), nullptr, false);
  ASSERT_TRUE(page.is_object()) << node.out << node.err;
  const auto& shown = page["final"];

  // The page opened the batch, as the operator who signed in.
  EXPECT_EQ(page["who"], "oscar (operator)");
  EXPECT_EQ(page["main_visible_before_sign_in"], false);
  EXPECT_EQ(page["login_visible_after_sign_in"], false);
  EXPECT_EQ(page["before"]["title"], "No batch open");
  {
    db::Connection c(data / "station.db", true);
    auto st = c.prepare("SELECT actor FROM journal WHERE action = 'batch.opened' AND subject = ?");
    st.bind(1, "batch:" + batch);
    ASSERT_TRUE(st.step()) << "no batch.opened for " << batch << " in the journal";
    EXPECT_EQ(st.text(0), "oscar");
  }
  EXPECT_EQ(shown["title"], batch + ": Sensor v2");
  EXPECT_EQ(shown["quantity"], quantity);

  // It watched the devices complete: the done count moved through values between 0 and the end.
  std::set<std::int64_t> done_seen;
  for (const auto& s : page["seen"]) done_seen.insert(s["done"].get<std::int64_t>());
  const auto final_done = shown["done"].get<std::int64_t>();
  EXPECT_GE(std::count_if(done_seen.begin(), done_seen.end(), [&](std::int64_t v) { return v > 0 && v < final_done; }), 2)
      << "the page did not show the batch progressing: " << page["seen"].dump();

  // The records, as an auditor reads them: one row per identity; a failed device's attempts
  // each left a voided identity, so devices are counted by serial.
  const auto q = run({station, "audit", "query", "--data", data.string(), "--batch", batch, "--json"});
  ASSERT_EQ(q.exit_code, 0) << q.err;
  const auto rows = nlohmann::json::parse(q.out);
  std::map<std::string, std::pair<std::string, std::string>> devices;  // serial -> state, fixture
  for (const auto& r : rows) devices[r["serial"]] = {r["state"], r["fixture"].is_null() ? "" : r["fixture"].get<std::string>()};
  Counts audit;
  std::map<std::string, Counts> by_fixture;
  for (const auto& [serial, d] : devices) {
    if (d.first == "done") {
      ++audit.done;
      ++by_fixture[d.second].done;
    } else if (d.first == "failed") {
      ++audit.failed;
      ++by_fixture[d.second].failed;
    }
  }
  EXPECT_EQ(audit.done, 12) << q.out;
  EXPECT_EQ(audit.failed, 3) << q.out;

  // The page's counts and its fixture tiles equal the records.
  EXPECT_EQ(shown["done"], audit.done) << shown.dump();
  EXPECT_EQ(shown["failed"], audit.failed) << shown.dump();
  EXPECT_EQ(shown["in_flight"], 0) << shown.dump();
  EXPECT_EQ(page["tiles_done"], audit.done) << shown["fixtures"].dump();
  EXPECT_EQ(page["tiles_failed"], audit.failed) << shown["fixtures"].dump();
  ASSERT_EQ(shown["fixtures"].size(), fixtures.size()) << shown["fixtures"].dump();
  for (const auto& tile : shown["fixtures"]) {
    const auto k = std::to_string(tile["number"].get<int>());
    EXPECT_EQ(tile["done"], by_fixture[k].done) << "fixture " << k << ": " << tile.dump();
    EXPECT_EQ(tile["failed"], by_fixture[k].failed) << "fixture " << k << ": " << tile.dump();
  }
  // The last devices are listed, each once, with label previews of those done.
  EXPECT_FALSE(shown["devices"].empty()) << shown.dump();
  std::set<std::string> listed;
  for (const auto& d : shown["devices"]) {
    ASSERT_TRUE(devices.count(d["serial"])) << d.dump();
    EXPECT_TRUE(listed.insert(d["serial"]).second) << d["serial"] << " is listed twice: " << shown["devices"].dump();
    if (devices[d["serial"]].first == "done") {
      EXPECT_TRUE(d["qr"].get<bool>()) << "no label preview: " << d.dump();
    }
  }
  // No script errors; no failed requests but the browser's favicon and the label preview of a
  // device whose identity was voided between the list and the preview (a race the page shows
  // as "no preview").
  EXPECT_TRUE(page["problems"].empty()) << page["problems"].dump();
  for (const auto& e : page["http_errors"]) {
    const std::string path = e["path"];
    static const std::string kDevices = "/api/devices/", kLabel = "/label.png";
    const bool failed_label = e["status"] == 404 && path.rfind(kDevices, 0) == 0 && path.size() > kDevices.size() + kLabel.size() &&
                              path.compare(path.size() - kLabel.size(), kLabel.size(), kLabel) == 0 &&
                              devices[path.substr(kDevices.size(), path.size() - kDevices.size() - kLabel.size())].first == "failed";
    EXPECT_TRUE(path == "/favicon.ico" || failed_label) << e.dump();
  }

  // The screenshot is a PNG.
  ASSERT_TRUE(fs::exists(screenshot)) << screenshot;
  const auto png = read_file(screenshot);
  EXPECT_GT(png.size(), 1000U);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));

  // Re-provisioning is an officer's button: the operator's page had none; the officer presses
  // it on a done device, answers its prompt, and the page shows the device reserved.
  EXPECT_EQ(page["reprovision_buttons"], 0) << "an operator was offered re-provisioning";
  const auto officer_page = run({"node", (web / "page_test.mjs").string(), "--url", "http://" + address + "/",
                                 "--token-file", (dir / "officer.token").string(), "--reprovision", "RMA 31: returned",
                                 "--timeout-s", "60"});
  ASSERT_EQ(officer_page.exit_code, 0) << officer_page.err << officer_page.out;
  const auto rp = nlohmann::json::parse(officer_page.out.substr(officer_page.out.rfind("{\"who\"")));
  EXPECT_EQ(rp["who"], "olga (officer)");
  EXPECT_GE(rp["buttons"].get<int>(), 1);
  {
    db::Connection c(data / "station.db", true);
    auto st = c.prepare(
        "SELECT d.state, j.actor, json_extract(j.details, '$.why') FROM devices d JOIN journal j ON j.subject = "
        "'device:' || d.serial AND j.action = 'device.reprovisioned' WHERE d.serial = ?");
    st.bind(1, rp["serial"].get<std::string>());
    ASSERT_TRUE(st.step()) << "no device.reprovisioned for " << rp["serial"];
    EXPECT_EQ(st.text(0), "reserved");
    EXPECT_EQ(st.text(1), "olga");
    EXPECT_EQ(st.text(2), "RMA 31: returned");
  }

  EXPECT_EQ(serve.stop(SIGTERM), 0) << read_file(dir / "serve.log");
  check_line(data, false, dir.path());
}

}  // namespace
}  // namespace station::test
