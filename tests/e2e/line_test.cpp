// The line end to end through the real binaries: `station demo` starts simdevice processes
// on pseudo-terminals and provisions a batch over them; the tests then compare the records
// with what each simulated device really holds, decode every label with libzbar, have
// wpa_supplicant read every URI, kill the station at every pipeline state (and at random),
// inject device faults, and grep everything the station wrote for the injected keys.
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <random>
#include <thread>
#include <set>

#include "db/sqlite.hpp"
#include "pki/dpp_key.hpp"
#include "pki/x509.hpp"
#include "label_fixtures.hpp"
#include "line_checks.hpp"
#include "wpas_harness.hpp"

extern char** environ;

namespace station::test {
namespace {

namespace fs = std::filesystem;

std::string station_bin() { return built_binary("station").string(); }

std::string root_pem(const fs::path& data) {
  const auto r = run({station_bin(), "ca", "show", "--data", data.string(), "--pem"});
  const auto end = r.out.find("-----END CERTIFICATE-----");
  return end == std::string::npos ? std::string() : r.out.substr(0, end + 26);
}

// The private scalar of an RFC 5915 ECPrivateKey, as the device holds it.
Bytes private_scalar(const Bytes& der) {
  const unsigned char* p = der.data();
  EVP_PKEY* key = d2i_PrivateKey(EVP_PKEY_EC, nullptr, &p, static_cast<long>(der.size()));
  if (key == nullptr) return {};
  BIGNUM* d = nullptr;
  Bytes out;
  if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PRIV_KEY, &d) == 1) {
    const int bytes = (EVP_PKEY_get_bits(key) + 7) / 8;
    out.resize(static_cast<std::size_t>(bytes));
    BN_bn2binpad(d, out.data(), bytes);
  }
  BN_clear_free(d);
  EVP_PKEY_free(key);
  return out;
}

bool contains(const std::string& hay, const Bytes& needle) {
  return !needle.empty() && hay.find(std::string(needle.begin(), needle.end())) != std::string::npos;
}

TEST(Line, TwoHundredDevicesOverEightFixturesMatchTheirRecordsLabelsAndWpaSupplicant) {
  TempDir dir("line-200");
  const auto data = dir / "data";
  const auto r = run_demo(data, {"--devices", "200", "--fixtures", "8"});
  ASSERT_EQ(r.result.exit_code, 0) << r.result.out << r.result.err;
  ASSERT_TRUE(r.summary.is_object()) << r.result.out;
  EXPECT_EQ(r.summary["devices_done"], 200) << r.summary.dump();
  EXPECT_EQ(r.summary["devices_failed"], 0);
  EXPECT_TRUE(r.summary["failures"].empty()) << r.summary.dump();
  EXPECT_EQ(r.summary["journal_verified"], true);
  EXPECT_GT(r.summary["devices_per_s"].get<double>(), 0.0);

  const auto facts = check_line(data, /*locked=*/true);
  EXPECT_EQ(facts.done, 200);
  EXPECT_EQ(simulated_devices(data).size(), 200U);

  // Every label decodes to its device's URI and shows the fixture it left.
  db::Connection c(data / "station.db", true);
  auto st = c.prepare(
      "SELECT d.serial, d.fixture, i.dpp_uri, i.pkhash FROM devices d JOIN identities i ON i.device_id = d.id "
      "WHERE i.status = 'active' ORDER BY d.id");
  std::vector<std::pair<std::string, std::string>> uris;  // uri, pkhash
  std::set<std::string> fixtures_seen;
  while (st.step()) {
    const std::string serial = st.text(0), fixture = st.text(1), uri = st.text(2);
    uris.emplace_back(uri, st.text(3));
    fixtures_seen.insert(fixture);
    const auto png = read_file(data / "labels" / (serial + ".png"));
    const auto codes = label_test::zbar_decode_png(Bytes(png.begin(), png.end()));
    ASSERT_FALSE(codes.empty()) << serial << ": no QR code found on the label";
    EXPECT_EQ(codes.front(), uri) << serial;
    const auto zpl = read_file(data / "labels" / (serial + ".zpl"));
    EXPECT_NE(zpl.find("^FDFixture " + fixture + "^FS"), std::string::npos) << serial << " label lacks its fixture";
    EXPECT_NE(zpl.find("^FDSN " + serial + "^FS"), std::string::npos) << serial;
  }
  EXPECT_EQ(uris.size(), 200U);
  EXPECT_EQ(fixtures_seen.size(), 8U);

  // The customer manifest verifies against the root.
  fs::path manifest;
  for (const auto& e : fs::directory_iterator(data / "manifests")) manifest = e.path();
  write_file(dir / "root.pem", root_pem(data));
  const auto v = run({station_bin(), "audit", "verify", "--bundle", manifest.string(), "--trust", (dir / "root.pem").string()});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;

  // No injected private key anywhere the station writes: database (and its WAL), journal,
  // labels, manifests, config, its output. Only the devices (the simulators' flash) hold them.
  std::vector<Bytes> secrets;
  for (const auto& [chip, flash] : simulated_devices(data)) {
    const auto key = flash.items.find(fixtures::ItemId::dpp_key);
    ASSERT_NE(key, flash.items.end());
    secrets.push_back(private_scalar(key->second));
    ASSERT_EQ(secrets.back().size(), 32U);
  }
  std::vector<std::pair<std::string, std::string>> written;  // name, content
  for (const auto& e : fs::recursive_directory_iterator(data)) {
    if (!e.is_regular_file()) continue;
    const auto rel = fs::relative(e.path(), data).string();
    if (rel.rfind("sim/", 0) == 0 || rel.rfind("softhsm/", 0) == 0 || rel.rfind("tokens/", 0) == 0) continue;
    written.emplace_back(rel, read_file(e.path()));
  }
  written.emplace_back("stdout", r.result.out);
  written.emplace_back("stderr", r.result.err);
  ASSERT_GT(written.size(), 400U);  // labels, database, manifest, ...
  for (const auto& s : secrets) {
    const std::string hex = hex_encode(s);
    for (const auto& [name, content] : written) {
      EXPECT_FALSE(contains(content, s)) << "a device private key is in " << name;
      EXPECT_EQ(content.find(hex), std::string::npos) << "a device private key (hex) is in " << name;
    }
  }

  // wpa_supplicant reads every URI to the pkhash the station recorded.
  STATION_START_WPAS_OR_SKIP(wpas);
  for (const auto& [uri, pkhash] : uris) {
    const auto info = wpas->read_uri(uri);
    ASSERT_TRUE(info) << uri;
    EXPECT_EQ(info->pkhash, pkhash) << uri;
  }
}

// ---------------------------------------------------------------------------------------
// Crash consistency: killed right after each state is journaled, then run again.

struct CrashCase {
  const char* state;
  const char* key_mode;
};

class LineCrash : public ::testing::TestWithParam<CrashCase> {};

TEST_P(LineCrash, TheRestartedStationCompletesTheBatchWithNothingTwice) {
  TempDir dir("line-crash");
  const auto data = dir / "data";
  const std::vector<std::string> args = {"--devices", "6", "--fixtures", "2", "--key-mode", GetParam().key_mode,
                                         "--no-png"};
  const auto crashed = run_demo(data, args, {{"STATION_CRASH_AFTER", std::string(GetParam().state) + ":3"}});
  ASSERT_EQ(crashed.result.exit_code, 128 + 9) << "the station was not killed at " << GetParam().state << "\n"
                                               << crashed.result.out << crashed.result.err;
  EXPECT_NE(crashed.result.err.find("STATION_CRASH_AFTER"), std::string::npos) << crashed.result.err;
  // Whatever the moment of the kill, a key is on disk only with its certificate and a
  // printed label only with the device's `done`: each pair commits as one unit.
  {
    db::Connection c(data / "station.db", true);
    const auto unpaired = [&](const char* first, const char* second) {
      auto st = c.prepare(
          "SELECT count(*) FROM journal a WHERE a.action = ? AND NOT EXISTS "
          "(SELECT 1 FROM journal b WHERE b.action = ? AND b.subject = a.subject AND b.seq = a.seq + 1)");
      st.bind(1, std::string(first)).bind(2, std::string(second));
      st.step();
      return st.int64(0);
    };
    EXPECT_EQ(unpaired("device.keyed", "device.issued"), 0);
    EXPECT_EQ(unpaired("label.printed", "device.done"), 0);
    auto st = c.prepare("SELECT count(*) FROM devices WHERE state IN ('keyed', 'labelled')");
    st.step();
    EXPECT_EQ(st.int64(0), 0) << "a device was left between the two entries of a unit";
  }

  const auto resumed = run_demo(data, args);
  ASSERT_EQ(resumed.result.exit_code, 0) << resumed.result.out << resumed.result.err;
  EXPECT_EQ(resumed.summary["devices_done"], 6) << resumed.summary.dump();
  EXPECT_EQ(resumed.summary["journal_verified"], true);
  const auto facts = check_line(data, true);
  EXPECT_EQ(facts.done, 6);
  EXPECT_EQ(facts.other, 0);
  // What the restart did about the device in flight is in the journal.
  db::Connection c(data / "station.db", true);
  auto st = c.prepare("SELECT count(*) FROM journal WHERE action = 'batch.closed'");
  st.step();
  EXPECT_EQ(st.int64(0), 1);
}

std::vector<CrashCase> crash_cases() {
  std::vector<CrashCase> out;
  for (const char* mode : {"station", "on-device"})
    for (const char* s : {"detected", "reserved", "keyed", "issued", "written", "verified", "locked", "labelled", "done"})
      out.push_back({s, mode});
  return out;
}

INSTANTIATE_TEST_SUITE_P(EveryStateBothKeyModes, LineCrash, ::testing::ValuesIn(crash_cases()), [](const auto& p) {
  std::string mode = p.param.key_mode;
  mode.erase(std::remove(mode.begin(), mode.end(), '-'), mode.end());
  return std::string(p.param.state) + "_" + mode;
});

TEST(LineCrash, TwentyRandomKillsLeaveNothingTwiceAndTheLineFinishes) {
  TempDir dir("line-kill");
  const auto data = dir / "data";
  const std::vector<std::string> args = {"--devices", "10", "--fixtures", "3", "--no-png"};
  std::mt19937 rng(20261122);
  std::uniform_int_distribution<int> delay_ms(300, 2500);
  int kills = 0;
  for (int round = 0; kills < 20 && round < 60; ++round) {
    const int ms = delay_ms(rng);
    const int status = run_demo_killed_after(data, args, std::chrono::milliseconds(ms));
    if (status == 128 + 9) ++kills;
  }
  EXPECT_EQ(kills, 20);
  const auto last = run_demo(data, args);  // finishes the open batch (or runs a fresh one)
  ASSERT_EQ(last.result.exit_code, 0) << last.result.out << last.result.err;
  EXPECT_EQ(last.summary["devices_failed"], 0) << last.summary.dump();
  const auto facts = check_line(data, true);
  EXPECT_GE(facts.done, 10);
  EXPECT_EQ(facts.other, 0) << "devices left in flight after the last run";
}

// ---------------------------------------------------------------------------------------
// Faults

TEST(LineFaults, AFailingFixtureEndsFailedWithItsReasonWhileTheOthersKeepGoing) {
  TempDir dir("line-faults");
  const auto data = dir / "data";
  const auto r = run_demo(data, {"--devices", "12", "--fixtures", "3", "--no-png", "--sim-fault", "2:--fail-commit",
                                 "--sim-fault", "3:--disconnect-after=2500", "--sim-fault", "1:--corrupt-frame=7"});
  ASSERT_EQ(r.result.exit_code, 0) << r.result.out << r.result.err;
  ASSERT_TRUE(r.summary.is_object()) << r.result.out;
  // Fixture 2's devices cannot commit: each is set aside with the reason.
  EXPECT_EQ(r.summary["devices_failed"], 4) << r.summary.dump();
  EXPECT_EQ(r.summary["devices_done"], 8) << r.summary.dump();
  ASSERT_EQ(r.summary["failures"].size(), 4U) << r.summary.dump();
  for (const auto& f : r.summary["failures"]) {
    EXPECT_EQ(f["fixture"], "2") << f.dump();
    EXPECT_EQ(f["state"], "failed") << f.dump();
    EXPECT_NE(f["reason"].get<std::string>().find("COMMIT"), std::string::npos) << f.dump();
  }
  const auto facts = check_line(data, true);
  EXPECT_EQ(facts.done, 8);
  // The failed devices' certificates were voided and recorded for revocation.
  db::Connection c(data / "station.db", true);
  auto st = c.prepare(
      "SELECT count(*) FROM identities i JOIN devices d ON d.id = i.device_id JOIN revocations r ON r.cert_serial = "
      "i.cert_serial WHERE d.state = 'failed' AND i.status = 'voided' AND r.reason = 'cessationOfOperation'");
  st.step();
  EXPECT_GE(st.int64(0), 4);
  // The disconnect on fixture 3 failed one attempt, and that device resumed and finished.
  auto sd = c.prepare(
      "SELECT count(*) FROM journal WHERE action = 'device.failed' AND details LIKE '%\"fixture\":3%' AND "
      "details LIKE '%disconnected%'");
  sd.step();
  EXPECT_GE(sd.int64(0), 1);
}

// ---------------------------------------------------------------------------------------
// station serve with fixtures, printers and the line from station.conf


TEST(LineServe, RunsTheConfiguredFixturesWithAPoolOfMacsAndStopsInOrderOnSigterm) {
  TempDir dir("line-serve");
  const auto data = dir / "data";
  ASSERT_EQ(run({station_bin(), "init", "--data", data.string()}).exit_code, 0);
  // Two simulated fixtures with three devices each.
  std::vector<std::unique_ptr<Background>> sims;
  for (int k = 1; k <= 2; ++k) {
    const auto sim_dir = dir / ("sim" + std::to_string(k));
    fs::create_directories(sim_dir);
    sims.push_back(std::make_unique<Background>(
        std::vector<std::string>{built_binary("simdevice").string(), "--pty", (sim_dir / "tty").string(), "--devices", "3",
                                 "--flash-dir", sim_dir.string()},
        sim_dir / "log"));
  }
  std::string conf = read_file(data / "station.conf");
  conf += "\n[printers.spool]\nuri = 'dir:" + (dir / "spool").string() + "'\n";
  conf += "\n[line]\nprinter = 'spool'\npoll_ms = 50\n";
  for (int k = 1; k <= 2; ++k)
    conf += "\n[fixtures." + std::to_string(k) + "]\nport = '" + (dir / ("sim" + std::to_string(k)) / "tty").string() +
            "'\ncommand_timeout_ms = 300\n";
  write_file(data / "station.conf", conf);
  fs::create_directories(dir / "spool");
  // Refused by name: a bad transport, a port used twice, an unknown printer.
  for (const auto& [bad, message] : std::vector<std::pair<std::string, std::string>>{
           {"\n[fixtures.9]\ntransport = 'carrier-pigeon'\nport = 'x'\n", "fixtures.9.transport: must be"},
           {"\n[fixtures.9]\nport = '" + (dir / "sim1" / "tty").string() + "'\n", "is already used by another fixture"},
           {"\n[fixtures.9]\nport = '/dev/null'\nprinter = 'nope'\n", "fixtures.9.printer: names printer 'nope'"},
           {"\n[fixtures.0]\nport = '/dev/null'\n", "fixtures are numbered 1 to 999"}}) {
    write_file(dir / "bad.conf", conf + bad);
    // A config in another folder resolves relative paths there: only the error matters here.
    const auto r = run({station_bin(), "serve", "--config", (dir / "bad.conf").string()});
    EXPECT_EQ(r.exit_code, 1) << bad;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
  }
  const auto opened = run({station_bin(), "batch", "open", "WO-SERVE", "--data", data.string(), "--product", "Widget",
                           "--quantity", "6", "--mac-source", "pool:02a0b1:000100-0001ff", "--key-mode", "on-device"});
  ASSERT_EQ(opened.exit_code, 0) << opened.err;
  Background serve({station_bin(), "serve", "--data", data.string(), "--listen", "127.0.0.1:0"}, dir / "serve.log");
  // It prints where the API listens; the health endpoint answers without a token.
  const std::string address = wait_for_listen_address(dir / "serve.log");
  ASSERT_FALSE(address.empty()) << read_file(dir / "serve.log");
  const auto health = run({"curl", "-sS", "--max-time", "10", "http://" + address + "/api/health"});
  EXPECT_EQ(health.exit_code, 0) << health.err;
  EXPECT_NE(health.out.find("\"version\""), std::string::npos) << health.out;
  std::int64_t done = 0;
  for (int i = 0; i < 600 && done < 6; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const auto show = run({station_bin(), "batch", "show", "WO-SERVE", "--data", data.string(), "--json"});
    const auto j = nlohmann::json::parse(show.out, nullptr, false);
    if (j.is_object()) done = j.value("done", 0);
  }
  EXPECT_EQ(done, 6) << read_file(dir / "serve.log");
  EXPECT_EQ(serve.stop(SIGTERM), 0) << read_file(dir / "serve.log");
  EXPECT_NE(read_file(dir / "serve.log").find("stopped: 6 devices done"), std::string::npos) << read_file(dir / "serve.log");
  // MACs came from the pool, in order; labels went to the configured printer.
  db::Connection c(data / "station.db", true);
  auto st = c.prepare("SELECT mac FROM devices ORDER BY mac");
  std::vector<std::string> macs;
  while (st.step()) macs.push_back(st.text(0));
  EXPECT_EQ(macs, (std::vector<std::string>{"02a0b1000100", "02a0b1000101", "02a0b1000102", "02a0b1000103",
                                            "02a0b1000104", "02a0b1000105"}));
  int zpl = 0;
  for (const auto& e : fs::directory_iterator(dir / "spool")) zpl += e.path().extension() == ".zpl" ? 1 : 0;
  EXPECT_EQ(zpl, 6);
  check_line(data, false, dir.path());
}

// A batch keeps running while a security officer rotates the issuing CA: devices issued
// before get the old issuer, devices after the new one, and every chain verifies.
// ---------------------------------------------------------------------------------------
// Certificate profiles

// `station init` on DATA, its default certificate profile then set to certify a separate key.
void init_separate_key_station(const fs::path& data) {
  ASSERT_EQ(run({station_bin(), "init", "--data", data.string()}).exit_code, 0);
  auto conf = read_file(data / "station.conf");
  const std::string dpp = "certified_key = 'dpp'";
  const auto at = conf.find(dpp);
  ASSERT_NE(at, std::string::npos) << conf;
  conf.replace(at, dpp.size(), "certified_key = 'separate'");
  write_file(data / "station.conf", conf);
}

// certified_key = 'separate': every device gets a second key pair (injected, or generated on
// the device) that its certificate certifies, bound to its DPP key by that key's hash, and
// proves both; a device without a certificate key slot is refused before anything is issued.
TEST(LineProfiles, ASeparateKeyProfileCertifiesASecondDeviceKeyBoundToItsDppKey) {
  for (const char* mode : {"station", "on-device"}) {
    SCOPED_TRACE(mode);
    TempDir dir("line-separate");
    const auto data = dir / "data";
    init_separate_key_station(data);
    if (HasFatalFailure()) return;

    const auto r = run_demo(data, {"--devices", "6", "--fixtures", "2", "--key-mode", mode, "--no-png", "--sim-fault",
                                   "2:--no-cert-key"});
    ASSERT_EQ(r.result.exit_code, 0) << r.result.out << r.result.err;
    ASSERT_TRUE(r.summary.is_object()) << r.result.out;
    EXPECT_EQ(r.summary["devices_done"], 3) << r.summary.dump();
    EXPECT_EQ(r.summary["devices_failed"], 3) << r.summary.dump();
    for (const auto& f : r.summary["failures"])
      EXPECT_NE(f["reason"].get<std::string>().find("no certificate key slot (CERT_KEY)"), std::string::npos) << f.dump();
    const auto facts = check_line(data, /*locked=*/true);  // the binding and the keys held, per device
    EXPECT_EQ(facts.done, 3);
    EXPECT_EQ(facts.separate_key, 3);

    db::Connection c(data / "station.db", true);
    auto count = c.prepare("SELECT count(*) FROM identities");
    count.step();
    EXPECT_EQ(count.int64(0), 3) << "a certificate was issued to a device without a certificate key slot";
    // The journal names the certified key; openssl reads the binding and verifies the chain.
    const auto devices = simulated_devices(data);
    write_file(dir / "root.pem", root_pem(data));
    auto st = c.prepare(
        "SELECT d.chip_id, json_extract(j.details, '$.cert_pkhash'), i.cert_der, i.pkhash, "
        "(SELECT json_extract(k.details, '$.cert_pkhash') FROM journal k WHERE k.action = 'device.keyed' AND "
        "k.seq = j.seq - 1 AND k.subject = j.subject) FROM journal j "
        "JOIN devices d ON j.subject = 'device:' || d.serial JOIN identities i ON i.device_id = d.id "
        "WHERE j.action = 'device.issued'");
    int issued = 0;
    std::vector<Bytes> secrets;
    while (st.step()) {
      ++issued;
      const auto flash = devices.at(st.text(0));
      EXPECT_EQ(st.text(1), sha256_hex(fixtures::sim::image_public_key(flash, fixtures::ItemId::cert_key)));
      EXPECT_EQ(st.text(4), st.text(1)) << "device.keyed names another certificate key";
      const Bytes cert = st.blob(2);
      write_file(dir / "device.pem", pki::to_pem(cert));
      const Bytes& chain = flash.items.at(fixtures::ItemId::ca_chain);  // DER certificates, issuing CA first
      const unsigned char* end = chain.data();
      X509_free(d2i_X509(nullptr, &end, static_cast<long>(chain.size())));
      write_file(dir / "issuing.pem", pki::to_pem(Bytes(chain.data(), end)));
      const auto san = run({"openssl", "x509", "-in", (dir / "device.pem").string(), "-noout", "-ext", "subjectAltName"});
      EXPECT_NE(san.out.find("URI:urn:dpp:pkhash:" + st.text(3)), std::string::npos) << san.out << san.err;
      const auto verify = run({"openssl", "verify", "-CAfile", (dir / "root.pem").string(), "-untrusted",
                               (dir / "issuing.pem").string(), (dir / "device.pem").string()});
      EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
      // certtool, independently: reads the binding and trusts the chain.
      const auto info = run({"certtool", "-i", "--infile", (dir / "device.pem").string()});
      EXPECT_NE(info.out.find("urn:dpp:pkhash:" + st.text(3)), std::string::npos) << info.out << info.err;
      write_file(dir / "chain.pem", read_file(dir / "device.pem") + read_file(dir / "issuing.pem"));
      const auto trusted = run({"certtool", "--verify", "--load-ca-certificate", (dir / "root.pem").string(),
                                "--infile", (dir / "chain.pem").string()});
      EXPECT_NE(trusted.out.find("Chain verification output: Verified."), std::string::npos)
          << trusted.out << trusted.err;
      secrets.push_back(private_scalar(flash.items.at(fixtures::ItemId::cert_key)));
      ASSERT_EQ(secrets.back().size(), 32U);
    }
    EXPECT_EQ(issued, 3);
    // The certificate keys, like the DPP keys, are in the devices only.
    std::vector<std::pair<std::string, std::string>> written{{"stdout", r.result.out}, {"stderr", r.result.err}};
    for (const auto& e : fs::recursive_directory_iterator(data)) {
      const auto rel = fs::relative(e.path(), data).string();
      if (e.is_regular_file() && rel.rfind("sim/", 0) != 0 && rel.rfind("softhsm/", 0) != 0 &&
          rel.rfind("tokens/", 0) != 0)
        written.emplace_back(rel, read_file(e.path()));
    }
    for (const auto& secret : secrets)
      for (const auto& [name, content] : written) {
        EXPECT_FALSE(contains(content, secret)) << "a certificate private key is in " << name;
        EXPECT_EQ(content.find(hex_encode(secret)), std::string::npos) << "a certificate private key (hex) is in " << name;
      }
  }
}

// A device that comes back after a crash with a separate-key identity proves both keys: it
// keeps that identity (nothing voided, nothing issued again); one that returns with another
// certificate key (its DPP key and certificate unchanged) loses the identity and gets a new one.
TEST(LineProfiles, ADeviceResumedAfterACrashMustProveItsSeparateCertificateKey) {
  for (const bool swapped : {false, true}) {
    SCOPED_TRACE(swapped ? "certificate key swapped" : "as written");
    TempDir dir("line-separate-crash");
    const auto data = dir / "data";
    init_separate_key_station(data);
    if (HasFatalFailure()) return;
    const std::vector<std::string> args = {"--devices", "4", "--fixtures", "1", "--no-png"};
    const auto crashed = run_demo(data, args, {{"STATION_CRASH_AFTER", "written:2"}});
    ASSERT_EQ(crashed.result.exit_code, 128 + 9) << crashed.result.out << crashed.result.err;
    std::string chip;
    {
      db::Connection c(data / "station.db", true);
      auto st = c.prepare("SELECT chip_id FROM devices WHERE state = 'written'");
      ASSERT_TRUE(st.step()) << "no device was left written";
      chip = st.text(0);
    }
    if (swapped) {
      bool found = false;
      for (const auto& e : fs::recursive_directory_iterator(data / "sim")) {
        if (e.path().extension() != ".flash") continue;
        auto flash = fixtures::sim::Flash::open(e.path());
        if (hex_encode(flash.image().chip_id) != chip) continue;
        auto image = flash.image();
        ASSERT_EQ(image.items.count(fixtures::ItemId::cert_key), 1U);
        image.items[fixtures::ItemId::cert_key] = pki::dpp::KeyPair::generate().ec_private_key_der().bytes();
        flash.write(std::move(image));
        found = true;
      }
      ASSERT_TRUE(found) << "no simulator holds chip " << chip;
    }
    const auto resumed = run_demo(data, args);
    ASSERT_EQ(resumed.result.exit_code, 0) << resumed.result.out << resumed.result.err;
    EXPECT_EQ(resumed.summary["devices_done"], 4) << resumed.summary.dump();
    const auto facts = check_line(data, /*locked=*/true);  // every done device holds its certified key
    EXPECT_EQ(facts.done, 4);
    EXPECT_EQ(facts.separate_key, 4);
    db::Connection c(data / "station.db", true);
    auto st = c.prepare(
        "SELECT (SELECT count(*) FROM identities), (SELECT count(*) FROM identities WHERE status <> 'active'), "
        "(SELECT count(*) FROM journal WHERE action = 'device.verified' AND json_extract(details, '$.resumed') = 1), "
        "(SELECT count(*) FROM revocations WHERE reason = 'superseded')");
    ASSERT_TRUE(st.step());
    EXPECT_EQ(st.int64(0), swapped ? 5 : 4);
    EXPECT_EQ(st.int64(1), swapped ? 1 : 0);
    EXPECT_EQ(st.int64(2), swapped ? 0 : 1);
    EXPECT_EQ(st.int64(3), swapped ? 1 : 0);
  }
}

TEST(LineRotation, ABatchRunningAcrossAnIssuingCaRotationIssuesUnderBothAndAllVerify) {
  TempDir dir("line-rotate");
  const auto data = dir / "data";
  ASSERT_EQ(run({station_bin(), "init", "--data", data.string()}).exit_code, 0);
  const auto alice = run({station_bin(), "user", "add", "--data", data.string(), "--role", "officer", "--name", "alice"});
  ASSERT_EQ(alice.exit_code, 0) << alice.err;
  write_file(dir / "alice.token", alice.out);
  fs::permissions(dir / "alice.token", fs::perms::owner_read | fs::perms::owner_write);

  // Slowed devices (20 ms an answer), so the rotation lands mid-batch.
  Background demo({station_bin(), "demo", "--data", data.string(), "--devices", "24", "--fixtures", "2", "--json",
                   "--no-png", "--sim-fault", "1:--slow=20", "--sim-fault", "2:--slow=20"},
                  dir / "demo.log");
  auto done_count = [&] {
    if (!fs::exists(data / "station.db")) return std::int64_t{0};
    db::Connection c(data / "station.db", true);
    auto st = c.prepare("SELECT count(*) FROM devices WHERE state = 'done'");
    st.step();
    return st.int64(0);
  };
  for (int i = 0; i < 600 && done_count() < 6; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_GE(done_count(), 6) << read_file(dir / "demo.log");
  const auto rotated = run({station_bin(), "ca", "rotate-issuing", "--data", data.string(), "--token-file",
                            (dir / "alice.token").string()});
  ASSERT_EQ(rotated.exit_code, 0) << rotated.out << rotated.err;
  int status = 0;
  ::waitpid(demo.pid, &status, 0);
  demo.pid = -1;
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << read_file(dir / "demo.log");
  EXPECT_NE(read_file(dir / "demo.log").find("\"devices_done\":24"), std::string::npos) << read_file(dir / "demo.log");

  const auto facts = check_line(data, true);
  EXPECT_EQ(facts.done, 24);
  std::set<std::string> issuers;
  {
    db::Connection c(data / "station.db", true);
    auto st = c.prepare("SELECT DISTINCT issuer_key_id FROM identities WHERE status = 'active'");
    while (st.step()) issuers.insert(st.text(0));
  }
  EXPECT_EQ(issuers.size(), 2U) << "the rotation did not take over within the running batch";

  // openssl verifies each device certificate with the chain the device holds, against the
  // station's trust bundle.
  const auto bundle = dir / "trust.pem";
  const auto exported = run({station_bin(), "ca", "bundle", "--data", data.string(), "--out", bundle.string(),
                             "--token-file", (dir / "alice.token").string()});
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  int verified = 0;
  for (const auto& [chip, flash] : simulated_devices(data)) {
    const auto cert = flash.items.find(fixtures::ItemId::device_cert);
    const auto chain = flash.items.find(fixtures::ItemId::ca_chain);
    ASSERT_TRUE(cert != flash.items.end() && chain != flash.items.end()) << chip;
    const auto der = dir / "cert.der", chain_der = dir / "chain.der";
    write_file(der, std::string(cert->second.begin(), cert->second.end()));
    write_file(chain_der, std::string(chain->second.begin(), chain->second.end()));
    ASSERT_EQ(run({"openssl", "x509", "-inform", "DER", "-in", der.string(), "-out", (dir / "cert.pem").string()}).exit_code, 0);
    ASSERT_EQ(run({"openssl", "x509", "-inform", "DER", "-in", chain_der.string(), "-out", (dir / "chain.pem").string()})
                  .exit_code,
              0);
    const auto v = run({"openssl", "verify", "-x509_strict", "-CAfile", bundle.string(), "-untrusted",
                        (dir / "chain.pem").string(), (dir / "cert.pem").string()});
    EXPECT_EQ(v.exit_code, 0) << chip << ": " << v.out << v.err;
    ++verified;
  }
  EXPECT_EQ(verified, 24);
}

}  // namespace
}  // namespace station::test
