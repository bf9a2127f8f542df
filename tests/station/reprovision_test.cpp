// Re-provisioning a done device (`station device reprovision`, an officer's decision): its
// certificates are revoked, it goes back to `reserved` in an open batch, and the real line
// (in-process, SoftHSM2, SQLite, the simulator's device logic keeping its flash in a file)
// gives it a new key and certificate under the same serial when the chip is next in a
// fixture. openssl checks the CRL the station then publishes.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/bytes.hpp"
#include "db/sqlite.hpp"
#include "inprocess_line.hpp"
#include "officers.hpp"
#include "pki/x509.hpp"

namespace station::test {
namespace {

namespace sim = fixtures::sim;

// `station device ARGS --data DIR --token-file WHO.token`
RunResult device_cmd(const OfficerStation& st, const std::string& who, std::vector<std::string> args) {
  std::vector<std::string> argv = {station_bin(), "device"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"--data", st.data().string(), "--token-file", st.token(who).string()});
  return run(argv);
}

bool is_done(const core::Event& e, const std::string& serial = {}) {
  return e.type == "device" && e.data.value("state", "") == "done" &&
         (serial.empty() || e.data.value("serial", "") == serial);
}

bool is_already_provisioned(const core::Event& e) {
  const auto reason = e.data.find("reason");
  return e.type == "fixture" && reason != e.data.end() && reason->is_string() &&
         reason->get<std::string>().rfind("already provisioned", 0) == 0;
}

// One chip that stays in its fixture, its flash kept in a file.
std::vector<sim::LineOptions> one_chip(const fs::path& flash) {
  sim::LineOptions chip;
  chip.flash_file = flash;
  return {chip};
}

struct IdentityRow {
  std::string cert_serial, pkhash, status;
  Bytes cert_der;
};

// The device's identities, oldest first.
std::vector<IdentityRow> identities(const OfficerStation& st, const std::string& serial) {
  db::Connection c(st.data() / "station.db", true);
  auto q = c.prepare(
      "SELECT i.cert_serial, i.pkhash, i.status, i.cert_der FROM identities i JOIN devices d ON d.id = i.device_id "
      "WHERE d.serial = ? ORDER BY i.id");
  q.bind(1, serial);
  std::vector<IdentityRow> out;
  while (q.step()) out.push_back({q.text(0), q.text(1), q.text(2), q.blob(3)});
  return out;
}

fs::path write_pem(const OfficerStation& st, const Bytes& der, const std::string& name) {
  write_file(st.file(name), pki::to_pem(der));
  return st.file(name);
}

// The officer sends a done device back; the line, still running, gives it a new identity
// when it is detected again. Serial, chip and MAC stay; the old certificate is revoked and
// listed in the CRL; the device's flash holds only the new one; an operator may not do it.
TEST(Reprovision, ADoneDeviceGetsANewIdentityUnderItsSerialAndItsOldCertificateIsRevoked) {
  OfficerStation st;
  core::Station station(st.data(), std::nullopt);
  const auto batch = open_test_batch(station, "RW", 1);
  InProcessFixtures fx(one_chip(st.file("chip.flash")));
  WatchedLine watched(station, batch, fx, std::chrono::milliseconds(20));
  std::vector<core::Event> events;
  bool done = false;
  ASSERT_TRUE(collect_until(*watched.sub, events, [&](const core::Event& e) {
    done = done || is_done(e);
    return done && is_already_provisioned(e);
  }));
  const std::string serial = st.sql1("SELECT serial FROM devices");
  const std::string chip = st.sql1("SELECT chip_id FROM devices"), mac = st.sql1("SELECT mac FROM devices");
  const auto before = identities(st, serial);
  ASSERT_EQ(before.size(), 1u);

  // An operator may not; the refusal is journaled and nothing changes.
  const auto denied = device_cmd(st, "olga", {"reprovision", "--serial", serial, "--reason", "RMA 7"});
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_NE(denied.err.find("officer"), std::string::npos) << denied.err;
  EXPECT_EQ(st.sql1("SELECT count(*) FROM journal WHERE action = 'auth.denied' AND details LIKE "
                    "'%device.reprovision%'"),
            "1");
  EXPECT_EQ(st.sql1("SELECT state FROM devices"), "done");

  const auto r = device_cmd(st, "alice", {"reprovision", "--serial", serial, "--reason", "RMA 7: returned", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["serial"], serial);
  EXPECT_EQ(j["batch"], "RW");
  EXPECT_EQ(j["from_batch"], "RW");
  EXPECT_EQ(j["state"], "reserved");
  ASSERT_EQ(j["revoked"].size(), 1u) << r.out;
  EXPECT_EQ(j["revoked"][0]["cert_serial"], before[0].cert_serial);

  // The chip is still in its fixture: detected again, it is provisioned anew. The batch's
  // count stays one device: the line took it off when the chip came back.
  std::optional<nlohmann::json> progress;
  ASSERT_TRUE(collect_until(*watched.sub, events, [&](const core::Event& e) {
    if (e.type == "batch" && e.data.value("done_this_run", 0) == 2) progress = e.data;
    return progress.has_value();
  })) << "the re-provisioned device was not provisioned again";
  EXPECT_EQ((*progress)["done"], 1) << progress->dump();
  watched.stop();

  EXPECT_EQ(st.sql1("SELECT count(*) FROM devices"), "1");
  EXPECT_EQ(st.sql1("SELECT state || ' ' || serial || ' ' || chip_id || ' ' || mac FROM devices"),
            "done " + serial + " " + chip + " " + mac);
  const auto after = identities(st, serial);
  ASSERT_EQ(after.size(), 2u);
  EXPECT_EQ(after[0].cert_serial, before[0].cert_serial);
  EXPECT_EQ(after[0].status, "revoked");
  EXPECT_EQ(after[1].status, "active");
  EXPECT_NE(after[1].pkhash, before[0].pkhash) << "the device kept its old DPP key";
  EXPECT_NE(after[1].cert_serial, before[0].cert_serial);
  EXPECT_EQ(st.sql1("SELECT reason FROM revocations WHERE cert_serial = '" + before[0].cert_serial + "'"), "superseded");
  EXPECT_EQ(st.sql1("SELECT count(*) FROM labels"), "2") << "the new identity's label was not printed";
  // The journal names the officer and the reason, and orders the decision before the new identity.
  const auto entry = nlohmann::json::parse(st.sql1("SELECT details FROM journal WHERE action = 'device.reprovisioned'"));
  EXPECT_EQ(entry["officer"], "alice");
  EXPECT_EQ(entry["why"], "RMA 7: returned");
  EXPECT_EQ(st.sql1("SELECT actor FROM journal WHERE action = 'device.reprovisioned'"), "alice");
  EXPECT_EQ(st.sql1("SELECT count(*) FROM journal WHERE action = 'device.issued' AND seq > (SELECT seq FROM journal "
                    "WHERE action = 'device.reprovisioned')"),
            "1");
  // An auditor reads the device's whole story: both identities and who decided.
  const auto story = run({station_bin(), "audit", "show", "--data", st.data().string(), serial});
  ASSERT_EQ(story.exit_code, 0) << story.err;
  EXPECT_NE(story.out.find("cert " + before[0].cert_serial + " (revoked)"), std::string::npos) << story.out;
  EXPECT_NE(story.out.find("cert " + after[1].cert_serial + " (active)"), std::string::npos) << story.out;
  EXPECT_NE(story.out.find("device.reprovisioned by alice"), std::string::npos) << story.out;
  // The flash holds the new certificate, not the old one.
  const std::string flash = read_file(st.file("chip.flash"));
  EXPECT_NE(flash.find(hex_encode(after[1].cert_der)), std::string::npos);
  EXPECT_EQ(flash.find(hex_encode(before[0].cert_der)), std::string::npos);

  // The CRL lists the old certificate: openssl rejects it and accepts the new one.
  const auto c = run({station_bin(), "ca", "crl", "--data", st.data().string(), "--token-file",
                      st.token("alice").string(), "--out", st.file("crl").string(), "--json"});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  const auto show = st.show();
  const auto root = st.pem_of(show, "root", "active", "root.pem");
  const auto issuing = st.pem_of(show, "issuing", "active", "issuing.pem");
  std::string crl;
  for (const auto& x : nlohmann::json::parse(c.out))
    if (x["key_id"] == show[1]["key_id"]) crl = x["file"].get<std::string>();
  ASSERT_FALSE(crl.empty()) << c.out;
  auto check = [&](const Bytes& der, const std::string& name) {
    return openssl_verify({"-crl_check", "-CAfile", root.string(), "-untrusted", issuing.string(), "-CRLfile", crl,
                           write_pem(st, der, name).string()});
  };
  const auto old_check = check(before[0].cert_der, "old.pem");
  EXPECT_NE(old_check.exit_code, 0);
  EXPECT_NE((old_check.out + old_check.err).find("certificate revoked"), std::string::npos) << old_check.out;
  const auto new_check = check(after[1].cert_der, "new.pem");
  EXPECT_EQ(new_check.exit_code, 0) << new_check.out << new_check.err;
  st.expect_journal_verifies();
}

// Refusals leave the records as they were; a device of a locked batch needs --erased, and
// goes to the open batch named, whose line provisions it once its flash has been erased.
TEST(Reprovision, RefusesWhatItMustNotChangeAndMovesAnErasedLockedDeviceIntoAnOpenBatch) {
  OfficerStation st;
  core::Station station(st.data(), std::nullopt);
  const auto locked = open_test_batch(station, "LOCKING", 1, true);
  const auto flash_path = st.file("chip.flash");
  {
    InProcessFixtures fx(one_chip(flash_path));
    WatchedLine watched(station, locked, fx, std::chrono::milliseconds(20));
    std::vector<core::Event> events;
    ASSERT_TRUE(collect_until(*watched.sub, events, [&](const core::Event& e) { return is_done(e); }));
    watched.stop();
  }
  const std::string serial = st.sql1("SELECT serial FROM devices");
  ASSERT_NE(read_file(flash_path).find("locked 1"), std::string::npos) << "the batch's lock did not lock the chip";
  const auto before = identities(st, serial);
  ASSERT_EQ(before.size(), 1u);

  auto refused = [&](std::vector<std::string> args, const std::string& says) {
    const auto r = device_cmd(st, "alice", std::move(args));
    EXPECT_EQ(r.exit_code, 1) << r.out;
    EXPECT_NE(r.err.find(says), std::string::npos) << "expected '" << says << "' in: " << r.err;
  };
  refused({"reprovision", "--serial", "NOPE-1", "--reason", "RMA 8"}, "no device with serial NOPE-1");
  refused({"reprovision", "--serial", serial, "--reason", ""}, "--reason");
  refused({"reprovision", "--serial", serial, "--reason", "RMA 8", "--revoke-reason", "bogus"}, "bogus");
  refused({"reprovision", "--serial", serial, "--reason", "RMA 8"}, "--erased");
  refused({"reprovision", "--serial", serial, "--reason", "RMA 8", "--erased", "--batch", "NOPE"}, "no batch named NOPE");
  core::close_batch(station, "LOCKING", st.file("manifest.json"), "alice");
  refused({"reprovision", "--serial", serial, "--reason", "RMA 8", "--erased"}, "batch LOCKING is closed");
  EXPECT_EQ(st.sql1("SELECT count(*) FROM journal WHERE action IN ('device.reprovisioned', 'device.revoked')"), "0");
  EXPECT_EQ(st.sql1("SELECT state FROM devices WHERE serial = '" + serial + "'"), "done");
  EXPECT_EQ(st.sql1("SELECT count(*) FROM identities WHERE status = 'active'"), "1");

  const auto rework = open_test_batch(station, "REWORK", 1);
  const auto r = device_cmd(st, "alice",
                            {"reprovision", "--serial", serial, "--reason", "RMA 8: key in a debug log", "--erased",
                             "--batch", "REWORK", "--revoke-reason", "key-compromise", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["from_batch"], "LOCKING");
  EXPECT_EQ(j["batch"], "REWORK");
  EXPECT_EQ(j["was_locked"], true);
  EXPECT_EQ(st.sql1("SELECT reason FROM revocations"), "keyCompromise");
  EXPECT_EQ(st.sql1("SELECT b.name || ' ' || d.state FROM devices d JOIN batches b ON b.id = d.batch_id"),
            "REWORK reserved");

  // The rework bench erases the provisioning area: the chip keeps its id and MAC only.
  std::string erased;
  for (const auto& line : {std::string("chip_id "), std::string("mac ")}) {
    const auto flash = read_file(flash_path);
    const auto at = flash.find("\n" + line);
    ASSERT_NE(at, std::string::npos) << flash;
    erased += flash.substr(at + 1, flash.find('\n', at + 1) - at);
  }
  write_file(flash_path, "simdevice-flash 1\n" + erased + "locked 0\n");

  InProcessFixtures fx(one_chip(flash_path));
  WatchedLine watched(station, rework, fx, std::chrono::milliseconds(20));
  std::vector<core::Event> events;
  ASSERT_TRUE(collect_until(*watched.sub, events, [&](const core::Event& e) { return is_done(e, serial); }));
  watched.stop();
  EXPECT_EQ(watched.summary.failed, 0);
  EXPECT_EQ(st.sql1("SELECT b.name || ' ' || d.state FROM devices d JOIN batches b ON b.id = d.batch_id"),
            "REWORK done");
  const auto after = identities(st, serial);
  ASSERT_EQ(after.size(), 2u);
  EXPECT_EQ(after[0].status, "revoked");
  EXPECT_EQ(after[1].status, "active");
  EXPECT_NE(after[1].pkhash, before[0].pkhash);
  st.expect_journal_verifies();
}

// A device certified with `station issue` (the station as the CA of devices provisioned
// elsewhere): after an officer's decision `station issue` gives its serial one new
// certificate, never for the old key, and only once per decision.
TEST(Reprovision, AStationIssueDeviceGetsOneNewCertificateAfterTheOfficersDecision) {
  OfficerStation st;
  st.issue_device("ACME-7");
  const std::string old_cert = st.sql1("SELECT cert_serial FROM identities");
  const auto before = st.issue(st.make_pubkey("prime256v1", "n1"), "ACME-7");
  EXPECT_EQ(before.exit_code, 1);
  EXPECT_NE(before.err.find("station device reprovision --serial ACME-7"), std::string::npos) << before.err;

  const auto to_line = device_cmd(st, "alice", {"reprovision", "--serial", "ACME-7", "--reason", "x", "--batch", "B"});
  EXPECT_EQ(to_line.exit_code, 1);
  EXPECT_NE(to_line.err.find("leave out --batch"), std::string::npos) << to_line.err;
  const auto r = device_cmd(st, "alice", {"reprovision", "--serial", "ACME-7", "--reason", "RMA 9", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j["batch"].is_null()) << r.out;
  EXPECT_TRUE(j["chip_id"].is_null()) << r.out;
  ASSERT_EQ(j["revoked"].size(), 1U);
  EXPECT_EQ(j["revoked"][0]["cert_serial"], old_cert);
  const auto twice = device_cmd(st, "bob", {"reprovision", "--serial", "ACME-7", "--reason", "RMA 9"});
  EXPECT_EQ(twice.exit_code, 1);
  EXPECT_NE(twice.err.find("re-provisioned already"), std::string::npos) << twice.err;

  // The old key is never certified again; a new one is, once.
  const auto old_key = st.issue(st.file("ACME-7.pub"), "ACME-7");
  EXPECT_EQ(old_key.exit_code, 1);
  EXPECT_NE(old_key.err.find("key hash"), std::string::npos) << old_key.err;
  const auto renewed = st.issue(st.make_pubkey("prime256v1", "n2"), "ACME-7");
  ASSERT_EQ(renewed.exit_code, 0) << renewed.err;
  write_file(st.file("renewed.pem"), renewed.out);
  const auto root = st.pem_of(st.show(), "root", "active", "root.pem");
  const auto v = openssl_verify({"-CAfile", root.string(), "-untrusted", st.file("renewed.pem").string(),
                                 st.file("renewed.pem").string()});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  const auto third = st.issue(st.make_pubkey("prime256v1", "n3"), "ACME-7");
  EXPECT_EQ(third.exit_code, 1);
  EXPECT_NE(third.err.find("already has an identity"), std::string::npos) << third.err;

  EXPECT_EQ(st.sql1("SELECT count(*) FROM devices"), "1");
  EXPECT_EQ(st.sql1("SELECT state FROM devices"), "issued");
  EXPECT_EQ(st.sql1("SELECT group_concat(status, ' ') FROM (SELECT status FROM identities ORDER BY id)"),
            "revoked active");
  EXPECT_EQ(st.sql1("SELECT count(*) FROM journal WHERE action = 'device.issued' AND details LIKE "
                    "'%\"reprovisioned\":true%'"),
            "1");
  st.expect_journal_verifies();
}

}  // namespace
}  // namespace station::test
