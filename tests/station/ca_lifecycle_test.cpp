// The CA lifecycle (issue 10) through the real binary, a real SoftHSM2 token per test,
// and openssl and certtool as the judges of certificates and CRLs.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "officers.hpp"

namespace station::test {
namespace {

constexpr const char* kTrusted = "Chain verification output: Verified. The certificate is trusted.";

// Verifies `leaf_chain` (leaf + its chain) against `ca` with openssl (using `extra`
// intermediates) and certtool (with `extra` appended to the chain).
void expect_verifies(const OfficerStation& st, const fs::path& ca, const fs::path& leaf_chain,
                     const std::vector<fs::path>& extra, const std::string& what) {
  const auto untrusted = st.file("untrusted.pem");
  std::vector<fs::path> parts = {leaf_chain};
  parts.insert(parts.end(), extra.begin(), extra.end());
  write_file(untrusted, cat(parts));
  const auto v = openssl_verify({"-x509_strict", "-CAfile", ca.string(), "-untrusted", untrusted.string(), leaf_chain.string()});
  EXPECT_EQ(v.exit_code, 0) << what << ": " << v.out << v.err;
  const auto g = certtool_verify(ca, untrusted);
  EXPECT_NE(g.out.find(kTrusted), std::string::npos) << what << ": " << g.out << g.err;
}

TEST(CaRotateIssuing, NewDevicesGetTheNewIssuerAndOldOnesStillVerify) {
  OfficerStation st;
  const auto d1 = st.issue_device("ACME-1");
  const auto before = st.show();
  const auto old_issuing = before[1]["key_id"].get<std::string>();

  // An operator may not rotate; the refusal is journaled.
  const auto denied = st.ca("olga", {"rotate-issuing"});
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_NE(denied.err.find("needs the officer role"), std::string::npos) << denied.err;

  const auto r = st.ca("alice", {"rotate-issuing", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const auto new_issuing = j["new_issuing"]["key_id"].get<std::string>();
  EXPECT_EQ(j["previous_issuing"], old_issuing);
  const auto d2 = st.issue_device("ACME-2");

  const auto after = st.show();
  ASSERT_EQ(after.size(), 3u);
  EXPECT_EQ(after[1]["status"], "retired");
  EXPECT_EQ(after[1]["key_id"], old_issuing);
  EXPECT_EQ(after[2]["status"], "active");
  EXPECT_EQ(after[2]["key_id"], new_issuing);
  // The device certificates name their issuers; the new one is signed by the new CA.
  EXPECT_EQ(st.sql1("SELECT issuer_key_id FROM identities i JOIN devices d ON d.id = i.device_id WHERE d.serial = 'ACME-1'"),
            old_issuing);
  EXPECT_EQ(st.sql1("SELECT issuer_key_id FROM identities i JOIN devices d ON d.id = i.device_id WHERE d.serial = 'ACME-2'"),
            new_issuing);
  const auto root = st.pem_of(after, "root", "active", "root.pem");
  expect_verifies(st, root, d1, {}, "device issued before the rotation");
  expect_verifies(st, root, d2, {}, "device issued after the rotation");
  EXPECT_EQ(st.sql1("SELECT actor FROM journal WHERE action = 'ca.issuing.rotated'"), "alice");
  EXPECT_EQ(st.sql1("SELECT count(*) FROM journal WHERE action = 'auth.denied' AND actor = 'olga'"), "1");
  st.expect_journal_verifies();
}

TEST(CaRotateIssuing, AnAnnouncedMomentSwitchesIssuanceExactlyThenAndNeverBack) {
  OfficerStation st;
  // The lead must leave room for the announcement and at least one device before the
  // moment however loaded the machine is: measure what one issue costs here first (a CI
  // run once spent the whole of a fixed 4 s lead announcing, and no device got the old CA).
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(st.issue(st.make_pubkey("prime256v1", "warm"), "WARM-0").exit_code, 0);
  const auto one_issue = std::chrono::steady_clock::now() - t0;
  const auto lead = std::chrono::ceil<std::chrono::seconds>(std::chrono::seconds(4) + 8 * one_issue);
  // Announce the switch that far ahead, then keep issuing across it, as a line would.
  const auto at = std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now()) + lead;
  const std::time_t tt = std::chrono::system_clock::to_time_t(at);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&tt));
  const auto r = st.ca("alice", {"rotate-issuing", "--at", buf, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto new_issuing = nlohmann::json::parse(r.out)["new_issuing"]["key_id"].get<std::string>();
  const auto old_issuing = st.show()[1]["key_id"].get<std::string>();
  ASSERT_NE(new_issuing, old_issuing);
  EXPECT_EQ(st.show()[1]["status"], "active");  // still in charge until the moment

  int n = 0;
  while (std::chrono::system_clock::now() < at + std::chrono::seconds(2)) {
    const auto res = st.issue(st.make_pubkey("prime256v1", "k" + std::to_string(n)), "LINE-" + std::to_string(n));
    ASSERT_EQ(res.exit_code, 0) << res.err;
    ASSERT_LT(++n, 400) << "the moment never came";
    std::this_thread::sleep_for(std::chrono::milliseconds(150));  // a few devices either side, not hundreds
  }
  // Every device recorded before the moment has the old issuer, every one after the new;
  // in journal order, the issuer never goes back.
  const std::string q =
      "SELECT count(*) FROM journal j JOIN identities i ON json_extract(j.details, '$.cert_serial') = i.cert_serial "
      "WHERE j.action = 'device.issued' AND ";
  const std::string moment = buf;
  const auto old_after = st.sql1(q + "j.time >= '" + moment + "' AND i.issuer_key_id = '" + old_issuing + "'");
  const auto new_before = st.sql1(q + "j.time < '" + moment + "' AND i.issuer_key_id = '" + new_issuing + "'");
  EXPECT_EQ(old_after, "0");
  EXPECT_EQ(new_before, "0");
  // Both CAs issued some of the devices after the announcement (WARM-0 came before it).
  const std::string line = "AND i.device_id IN (SELECT id FROM devices WHERE serial LIKE 'LINE-%')";
  EXPECT_NE(st.sql1(q + "i.issuer_key_id = '" + old_issuing + "' " + line), "0");
  EXPECT_NE(st.sql1(q + "i.issuer_key_id = '" + new_issuing + "' " + line), "0");
  EXPECT_EQ(st.sql1("SELECT count(*) FROM identities"), std::to_string(n + 1));
  EXPECT_EQ(st.sql1("SELECT count(DISTINCT cert_serial) FROM identities"), std::to_string(n + 1));
  // The periodic CRL refresh settles the old CA as retired (journaled).
  ASSERT_EQ(st.ca("alice", {"crl", "--out", st.file("crl").string()}).exit_code, 0);
  EXPECT_EQ(st.show()[1]["status"], "retired");
  st.expect_journal_verifies();
}

TEST(CaRotateRoot, TwoOfficersRotateAndDevicesOfBothGenerationsVerify) {
  OfficerStation st;
  const auto d1 = st.issue_device("ACME-1");
  const auto before = st.show();
  const auto old_root_id = before[0]["key_id"].get<std::string>();

  // Alice proposes; nothing changes until a second officer approves.
  const auto p = st.ca("alice", {"rotate-root", "--json"});
  ASSERT_EQ(p.exit_code, 0) << p.err;
  const auto id = nlohmann::json::parse(p.out)["proposal"].get<std::string>();
  EXPECT_EQ(st.show(), before);
  const auto self = st.ca("alice", {"approve", id});
  EXPECT_EQ(self.exit_code, 1);
  EXPECT_NE(self.err.find("cannot also approve"), std::string::npos) << self.err;
  EXPECT_EQ(st.ca("olga", {"approve", id}).exit_code, 1);  // an operator cannot approve
  EXPECT_EQ(st.show(), before);

  const auto a = st.ca("bob", {"approve", id, "--json"});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  const auto aj = nlohmann::json::parse(a.out);
  EXPECT_EQ(aj["proposer"], "alice");
  EXPECT_EQ(aj["approver"], "bob");
  const auto new_root_id = aj["new_root"]["key_id"].get<std::string>();
  const auto d2 = st.issue_device("ACME-2");

  const auto after = st.show();
  ASSERT_EQ(after.size(), 6u) << after.dump(1);  // 2 roots, 2 cross, 2 issuing
  const auto old_root = st.pem_of(after, "root", "retired", "old-root.pem");
  const auto new_root = st.pem_of(after, "root", "active", "new-root.pem");
  // cross "new certifies old" carries the old root's key; "old certifies new" the new key.
  const auto cross_new_old = st.pem_of(after, "cross", "active", "x-new-old.pem", old_root_id);
  const auto cross_old_new = st.pem_of(after, "cross", "active", "x-old-new.pem", new_root_id);
  EXPECT_EQ(after[4]["status"], "retired");  // old issuing CA
  EXPECT_EQ(after[5]["status"], "active");

  // Before: the old device against the new root through the cross-certificate.
  expect_verifies(st, new_root, d1, {cross_new_old}, "old device via cross-certificate to the new root");
  // Without the cross-certificate it must not verify against the new root alone.
  EXPECT_NE(openssl_verify({"-CAfile", new_root.string(), "-untrusted", d1.string(), d1.string()}).exit_code, 0);
  // After: the new device against the new root directly, and against the old root
  // (devices that only know it) through the other cross-certificate.
  expect_verifies(st, new_root, d2, {}, "new device directly to the new root");
  expect_verifies(st, old_root, d2, {cross_old_new}, "new device via cross-certificate to the old root");
  expect_verifies(st, old_root, d1, {}, "old device to the old root");

  // The trust bundle (both roots, with a manifest signed by the audit key).
  const auto b = st.ca("bob", {"bundle", "--out", st.file("trust.pem").string()});
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(count_lines(read_file(st.file("trust.pem")), "-----BEGIN CERTIFICATE-----"), 2);
  expect_verifies(st, st.file("trust.pem"), d1, {}, "old device against the bundle");
  expect_verifies(st, st.file("trust.pem"), d2, {}, "new device against the bundle");
  const auto audit_pub = st.file("audit.pub");
  ASSERT_EQ(run({"sh", "-c", "openssl x509 -in " + st.file("trust.pem.audit.pem").string() + " -noout -pubkey > " +
                                 audit_pub.string()})
                .exit_code,
            0);
  const auto sig = run({"openssl", "dgst", "-sha256", "-verify", audit_pub.string(), "-signature",
                        st.file("trust.pem.manifest.sig").string(), st.file("trust.pem.manifest.json").string()});
  EXPECT_EQ(sig.out, "Verified OK\n") << sig.err;
  expect_verifies(st, old_root, st.file("trust.pem.audit.pem"), {}, "audit signer");
  const auto manifest = nlohmann::json::parse(read_file(st.file("trust.pem.manifest.json")));
  EXPECT_EQ(manifest["roots"].size(), 2u);
  EXPECT_EQ(manifest["cross_certificates"].size(), 2u);

  // The journal names both officers; the chain and the records still verify.
  const auto details = nlohmann::json::parse(st.sql1("SELECT details FROM journal WHERE action = 'ca.root.rotated'"));
  EXPECT_EQ(details["proposer"], "alice");
  EXPECT_EQ(details["approver"], "bob");
  EXPECT_EQ(st.sql1("SELECT actor FROM journal WHERE action = 'ca.proposed'"), "alice");
  EXPECT_EQ(st.sql1("SELECT count(*) FROM journal WHERE action = 'auth.denied'"), "2");
  st.expect_journal_verifies();
}

TEST(CaRotateRoot, AnExpiredProposalCannotBeApproved) {
  OfficerStation st;
  const auto p = st.ca("alice", {"rotate-root", "--json", "--expires-in", "1s"});
  ASSERT_EQ(p.exit_code, 0) << p.err;
  const auto id = nlohmann::json::parse(p.out)["proposal"].get<std::string>();
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  const auto a = st.ca("bob", {"approve", id});
  EXPECT_EQ(a.exit_code, 1);
  EXPECT_NE(a.err.find("expired"), std::string::npos) << a.err;
  EXPECT_EQ(st.show().size(), 2u);
  EXPECT_NE(st.sql1("SELECT details FROM journal WHERE action = 'auth.denied'").find("expired"), std::string::npos);
  st.expect_journal_verifies();
}

TEST(CaRotateRoot, NewRootKeyCanLiveOnASeparateToken) {
  OfficerStation st;
  // An officer prepares the (normally offline) root token; the station never sees its PIN
  // on a command line, only the reference.
  write_file(st.file("root.pin"), "offline-root-pin-1\n");
  const auto p = st.ca("alice", {"rotate-root", "--json", "--root-token-label", "offline-root", "--root-pin",
                                 "file:" + st.file("root.pin").string()});
  ASSERT_EQ(p.exit_code, 0) << p.err;
  const auto id = nlohmann::json::parse(p.out)["proposal"].get<std::string>();
  // While the root token is not connected the ceremony fails, changes nothing, and the
  // proposal stays pending for when it is.
  const auto offline = st.ca("bob", {"approve", id});
  EXPECT_EQ(offline.exit_code, 1);
  EXPECT_NE(offline.err.find("token 'offline-root'"), std::string::npos) << offline.err;
  EXPECT_NE(offline.err.find("connect the token"), std::string::npos) << offline.err;
  EXPECT_EQ(st.show().size(), 2u);
  EXPECT_EQ(st.sql1("SELECT status FROM ca_proposals"), "pending");
  EXPECT_EQ(st.sql1("SELECT actor FROM journal WHERE action = 'ca.approve.failed'"), "bob");

  const auto init = run({"softhsm2-util", "--init-token", "--free", "--label", "offline-root", "--so-pin", "so-pin-1234",
                         "--pin", "offline-root-pin-1"},
                        st.hsm_env());
  ASSERT_EQ(init.exit_code, 0) << init.err;
  const auto a = st.ca("bob", {"approve", id, "--json"});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  const auto new_root_id = nlohmann::json::parse(a.out)["new_root"]["key_id"].get<std::string>();
  // The key is on the offline token, not on the station's.
  const auto list = run({"pkcs11-tool", "--module", STATION_SOFTHSM_MODULE, "--token-label", "offline-root", "--login",
                         "--pin", "offline-root-pin-1", "--list-objects", "--type", "privkey"},
                        st.hsm_env());
  EXPECT_NE(list.out.find(new_root_id.substr(0, 16)), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("never extractable"), std::string::npos) << list.out;
  // The root's CRL is signed there too.
  const auto c = st.ca("alice", {"crl", "--out", st.file("crl").string()});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  const auto d = st.issue_device("ACME-9");
  expect_verifies(st, st.pem_of(st.show(), "root", "active", "r.pem"), d, {}, "device under the offline root");
  st.expect_journal_verifies();
}

// The CRL of the CA with key_id (from `ca crl --json`).
fs::path crl_of(const nlohmann::json& crls, const std::string& key_id) {
  for (const auto& c : crls)
    if (c["key_id"] == key_id) return c["file"].get<std::string>();
  ADD_FAILURE() << "no CRL for " << key_id;
  return {};
}

TEST(CaRevoke, CrlCheckRejectsTheRevokedDeviceAndAcceptsTheOthers) {
  OfficerStation st;
  const auto d1 = st.issue_device("ACME-1");
  const auto d2 = st.issue_device("ACME-2");
  const auto d3 = st.issue_device("ACME-3");
  const auto show = st.show();
  const auto root = st.pem_of(show, "root", "active", "root.pem");
  const auto issuing_id = show[1]["key_id"].get<std::string>();
  const std::string serial1 = st.sql1(
      "SELECT cert_serial FROM identities i JOIN devices d ON d.id = i.device_id WHERE d.serial = 'ACME-1'");

  EXPECT_EQ(st.ca("alice", {"revoke", "--cert-serial", serial1, "--reason", "bogus"}).exit_code, 1);
  const auto r = st.ca("alice", {"revoke", "--cert-serial", serial1, "--reason", "keyCompromise"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto r3 = st.ca("bob", {"revoke", "--serial", "ACME-3", "--reason", "superseded"});
  ASSERT_EQ(r3.exit_code, 0) << r3.err;
  // `ca show` raises the stale-CRL alarm until the CRLs are published.
  const auto alarm = run({station_bin(), "ca", "show", "--data", st.data().string()});
  EXPECT_NE(alarm.err.find("ALARM"), std::string::npos) << alarm.err;

  const auto c = st.ca("alice", {"crl", "--out", st.file("crl").string(), "--json"});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  const auto crls = nlohmann::json::parse(c.out);
  ASSERT_EQ(crls.size(), 2u);  // root and issuing CA
  const auto crl = crl_of(crls, issuing_id);
  const auto quiet = run({station_bin(), "ca", "show", "--data", st.data().string()});
  EXPECT_EQ(quiet.err.find("ALARM"), std::string::npos) << quiet.err;

  // openssl reads it as a v2 CRL with a number, both dates and the reasons.
  const auto text = run({"openssl", "crl", "-in", crl.string(), "-noout", "-text"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("Version 2 (0x1)"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("X509v3 CRL Number: \n                1"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("Next Update:"), std::string::npos);
  EXPECT_NE(text.out.find("Key Compromise"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("Superseded"), std::string::npos) << text.out;
  // certtool checks the CRL's signature with the issuing CA.
  const auto issuing = st.pem_of(show, "issuing", "active", "issuing.pem");
  const auto g = run({"certtool", "--verify-crl", "--load-ca-certificate", issuing.string(), "--infile", crl.string()});
  EXPECT_EQ(g.exit_code, 0) << g.out << g.err;

  auto check = [&](const fs::path& dev) {
    return openssl_verify({"-crl_check", "-CAfile", root.string(), "-untrusted", dev.string(), "-CRLfile", crl.string(),
                           dev.string()});
  };
  const auto v1 = check(d1);
  EXPECT_NE(v1.exit_code, 0);
  EXPECT_NE((v1.out + v1.err).find("certificate revoked"), std::string::npos) << v1.out << v1.err;
  EXPECT_NE(check(d3).exit_code, 0);
  const auto v2 = check(d2);
  EXPECT_EQ(v2.exit_code, 0) << v2.out << v2.err;
  EXPECT_EQ(st.sql1("SELECT status FROM identities WHERE cert_serial = '" + serial1 + "'"), "revoked");

  // Re-running publishes the same CRLs (nothing new to sign); --force re-signs with number 2.
  const auto again = st.ca("alice", {"crl", "--out", st.file("crl").string(), "--force", "--json"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(nlohmann::json::parse(again.out)[1]["crl_number"], 2);
  st.expect_journal_verifies();
}

TEST(CaRevoke, RevokingAnIssuingCaTakesTwoOfficersAndFailsAllItsDevices) {
  OfficerStation st;
  const auto d1 = st.issue_device("ACME-1");
  const auto d2 = st.issue_device("ACME-2");
  const auto show = st.show();
  const auto root = st.pem_of(show, "root", "active", "root.pem");
  const auto root_id = show[0]["key_id"].get<std::string>();
  const auto issuing_id = show[1]["key_id"].get<std::string>();

  const auto p = st.ca("alice", {"revoke", "--ca", issuing_id, "--reason", "cACompromise", "--json"});
  ASSERT_EQ(p.exit_code, 0) << p.err;
  const auto id = nlohmann::json::parse(p.out)["proposal"].get<std::string>();
  EXPECT_EQ(st.show(), show);  // one officer alone changes nothing
  EXPECT_EQ(st.ca("alice", {"approve", id}).exit_code, 1);
  ASSERT_EQ(st.ca("bob", {"approve", id}).exit_code, 0);
  EXPECT_EQ(st.show()[1]["status"], "revoked");

  // No device certificate from a revoked CA, and no falling back to another one.
  const auto refused = st.issue(st.make_pubkey("prime256v1", "x"), "ACME-X");
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("rotate"), std::string::npos) << refused.err;

  const auto c = st.ca("alice", {"crl", "--out", st.file("crl").string(), "--json"});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  const auto crls = nlohmann::json::parse(c.out);
  const auto root_crl = crl_of(crls, root_id), issuing_crl = crl_of(crls, issuing_id);
  for (const auto& dev : {d1, d2}) {
    const auto v = openssl_verify({"-crl_check_all", "-CAfile", root.string(), "-untrusted", dev.string(), "-CRLfile",
                                   root_crl.string(), "-CRLfile", issuing_crl.string(), dev.string()});
    EXPECT_NE(v.exit_code, 0) << dev;
    EXPECT_NE((v.out + v.err).find("certificate revoked"), std::string::npos) << v.out << v.err;
  }
  // After a rotation the line issues again, and those devices pass -crl_check_all.
  ASSERT_EQ(st.ca("alice", {"rotate-issuing"}).exit_code, 0);
  EXPECT_EQ(st.show()[1]["status"], "revoked");  // a rotation never turns revoked into retired
  const auto d3 = st.issue_device("ACME-3");
  const auto c2 = st.ca("alice", {"crl", "--out", st.file("crl").string(), "--json"});
  ASSERT_EQ(c2.exit_code, 0) << c2.err;
  const auto crls2 = nlohmann::json::parse(c2.out);
  ASSERT_EQ(crls2.size(), 3u);
  std::vector<std::string> args = {"-crl_check_all", "-CAfile", root.string(), "-untrusted", d3.string()};
  for (const auto& x : crls2) args.insert(args.end(), {"-CRLfile", x["file"].get<std::string>()});
  args.push_back(d3.string());
  const auto v3 = openssl_verify(args);
  EXPECT_EQ(v3.exit_code, 0) << v3.out << v3.err;
  const auto details = nlohmann::json::parse(st.sql1("SELECT details FROM journal WHERE action = 'ca.revoked'"));
  EXPECT_EQ(details["proposer"], "alice");
  EXPECT_EQ(details["approver"], "bob");

  // Destroying the revoked CA's key is two-person too; an active CA's key cannot be.
  const auto active_id = st.show()[2]["key_id"].get<std::string>();
  EXPECT_EQ(st.ca("alice", {"destroy-key", "--ca", active_id}).exit_code, 1);
  const auto dp = st.ca("bob", {"destroy-key", "--ca", issuing_id, "--json"});
  ASSERT_EQ(dp.exit_code, 0) << dp.err;
  const auto did = nlohmann::json::parse(dp.out)["proposal"].get<std::string>();
  const std::string pin = read_file(st.data() / "pins/user.pin");
  auto objects = [&] {
    return run({"pkcs11-tool", "--module", STATION_SOFTHSM_MODULE, "--token-label", "station", "--login", "--pin",
                pin.substr(0, pin.size() - 1), "--list-objects", "--type", "privkey"},
               st.hsm_env())
        .out;
  };
  const auto label = show[1]["key_label"].get<std::string>();
  EXPECT_NE(objects().find(label), std::string::npos);
  EXPECT_EQ(st.ca("bob", {"approve", did}).exit_code, 1);
  ASSERT_EQ(st.ca("alice", {"approve", did}).exit_code, 0);
  EXPECT_EQ(objects().find(label), std::string::npos) << objects();
  st.expect_journal_verifies();
}

}  // namespace
}  // namespace station::test
