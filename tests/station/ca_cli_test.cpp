// `station init`, `station ca show` and `station issue` through the real binary, with a
// real SoftHSM2 token in each test's own data folder, and openssl, certtool and
// pkcs11-tool as independent judges.
#include <gtest/gtest.h>

#include <csignal>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "station_dir.hpp"

namespace station::test {
namespace {

namespace fs = std::filesystem;

TEST(StationInit, CaKeysLiveOnlyInTheTokenSensitiveNeverExtractableSignOnly) {
  StationDir st;
  const std::string pin = read_file(st.data() / "pins/user.pin");
  const auto r = run({"pkcs11-tool", "--module", STATION_SOFTHSM_MODULE, "--token-label", "station", "--login",
                      "--pin", pin.substr(0, pin.size() - 1), "--list-objects", "--type", "privkey"},
                     st.hsm_env());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(count_lines(r.out, "  Usage:      sign"), 3) << r.out;
  EXPECT_EQ(count_lines(r.out, "  Access:     sensitive, always sensitive, never extractable, local"), 3) << r.out;
  EXPECT_NE(r.out.find("label:      station-root-ca-"), std::string::npos);
  EXPECT_NE(r.out.find("label:      station-issuing-ca-"), std::string::npos);
  EXPECT_NE(r.out.find("label:      station-audit-"), std::string::npos);

  // No private key file anywhere in the data folder: nothing PEM, nothing that parses as a
  // DER private key (the token's own object files hold keys encrypted under the PIN).
  for (const auto& e : fs::recursive_directory_iterator(st.data())) {
    if (!e.is_regular_file()) continue;
    const std::string content = read_file(e.path());
    EXPECT_EQ(content.find("PRIVATE KEY"), std::string::npos) << e.path();
    const auto p = run({"openssl", "pkey", "-inform", "DER", "-in", e.path().string(), "-noout"});
    EXPECT_NE(p.exit_code, 0) << e.path() << " parses as a private key";
  }
  // Secrets stay private to the station's user.
  EXPECT_EQ(fs::status(st.data() / "pins/user.pin").permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
}

TEST(StationInit, RefusesAnExistingHierarchyAndLeavesItUntouched) {
  StationDir st;
  const std::string before = read_file(st.data() / "station.conf");
  const auto r = run({station_bin(), "init", "--data", st.data().string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("already holds a station"), std::string::npos) << r.err;
  EXPECT_EQ(read_file(st.data() / "station.conf"), before);
}

// What an init killed part-way leaves (its marker, a token folder, a database, no
// station.conf) is cleared by the next init, which then succeeds; nothing else in the
// folder is touched.
// An init killed part-way (power cut during a ceremony) leaves its marker listing what it
// made; the next init removes exactly those and starts again.
class StationInitKilled : public ::testing::TestWithParam<const char*> {};

TEST_P(StationInitKilled, TheNextInitRemovesWhatItMadeAndSucceeds) {
  TempDir tmp;
  const auto data = tmp / "d";
  fs::create_directories(data);
  write_file(data / "notes.txt", "mine");
  const auto killed = run({station_bin(), "init", "--data", data.string()}, {{"STATION_CRASH_AFTER", GetParam()}});
  ASSERT_EQ(killed.exit_code, 128 + SIGKILL) << killed.err;
  const auto marker = read_file(data / "init.incomplete");
  for (const char* made : {"made: tokens\n", "made: pins\n", "made: softhsm2.conf\n", "made: station.db\n"})
    EXPECT_NE(marker.find(made), std::string::npos) << marker;
  ASSERT_TRUE(fs::exists(data / "station.db"));
  ASSERT_FALSE(fs::exists(data / "station.conf"));

  const auto r = run({station_bin(), "init", "--data", data.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("an earlier init was interrupted"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(data / "init.incomplete"));
  EXPECT_EQ(read_file(data / "notes.txt"), "mine");
  // One token, the new one: the killed init's token went with its folder.
  EXPECT_EQ(std::distance(fs::directory_iterator(data / "tokens"), fs::directory_iterator{}), 1);
  const auto show = run({station_bin(), "ca", "show", "--data", data.string(), "--json"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_EQ(nlohmann::json::parse(show.out).size(), 2u);
  EXPECT_EQ(run({station_bin(), "audit", "verify", "--data", data.string()}).exit_code, 0);
}

INSTANTIATE_TEST_SUITE_P(AtEachStep, StationInitKilled, ::testing::Values("init.keys", "init.journal"));

// Runs init on a folder holding only `name` (someone's file): init must refuse, saying
// `says`, and leave the file as it was. Returns the folder for further checks.
fs::path expect_init_refuses_and_keeps(const TempDir& tmp, const std::string& name, const std::string& says) {
  const auto data = tmp / "d";
  fs::create_directories(data);
  const std::string content = "someone's " + name + "\n";
  write_file(data / name, content);
  const auto r = run({station_bin(), "init", "--data", data.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
  EXPECT_EQ(read_file(data / name), content);
  return data;
}

// A file init would make but finds already there is not init's: init fails and leaves it.
TEST(StationInit, AFailedInitLeavesAFileItFoundInPlace) {
  TempDir tmp;
  const auto data = expect_init_refuses_and_keeps(tmp, "softhsm2.conf", "softhsm2.conf");
  EXPECT_FALSE(fs::exists(data / "tokens"));  // what init did make is gone again
  EXPECT_FALSE(fs::exists(data / "init.incomplete"));
}

// A damaged marker names nothing outside its folder: only plain names beside it are removed.
TEST(StationInit, AnInterruptedInitsMarkerCannotPointOutsideTheFolder) {
  TempDir tmp;
  const auto data = tmp / "d";
  fs::create_directories(data / "pins");
  write_file(tmp / "outside.txt", "keep");
  write_file(data / "notes.txt", "keep");
  write_file(data / "init.incomplete",
             "station init started 20261202T000000Z\nmade: pins\nmade: ../outside.txt\nmade: " +
                 (tmp / "outside.txt").string() + "\nmade: ..\nmade: .\n");
  const auto r = run({station_bin(), "init", "--data", data.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_file(tmp / "outside.txt"), "keep");
  EXPECT_EQ(read_file(data / "notes.txt"), "keep");
  EXPECT_TRUE(fs::exists(data / "station.conf"));
}

// Without the marker a database is someone's records: init refuses and leaves it.
TEST(StationInit, ADatabaseWithoutTheInitMarkerIsNeverRemoved) {
  TempDir tmp;
  expect_init_refuses_and_keeps(tmp, "station.db", "already holds a station");
}

TEST(StationInit, RealHsmOptionsMustComeTogether) {
  TempDir tmp;
  const auto r = run({station_bin(), "init", "--data", (tmp / "d").string(), "--pkcs11-module", "softhsm2"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--token-label"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp / "d" / "station.conf"));
}

TEST(StationCaShow, JsonListsRootThenIssuingWithTheDocumentedFields) {
  StationDir st;
  const auto r = run({station_bin(), "ca", "show", "--data", st.data().string(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["role"], "root");
  EXPECT_EQ(j[1]["role"], "issuing");
  const std::regex hex64("[0-9a-f]{64}"), hexserial("[0-9a-f]+"), time("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ");
  for (const auto& c : j) {
    EXPECT_EQ(c["status"], "active");
    for (const char* k : {"key_id", "sha256"}) EXPECT_TRUE(std::regex_match(c[k].get<std::string>(), hex64)) << k;
    EXPECT_TRUE(std::regex_match(c["serial"].get<std::string>(), hexserial));
    EXPECT_TRUE(std::regex_match(c["not_before"].get<std::string>(), time));
    EXPECT_TRUE(std::regex_match(c["not_after"].get<std::string>(), time));
    EXPECT_FALSE(c["key_label"].get<std::string>().empty());
    // key_id is the SHA-256 of the SPKI, sha256 that of the DER: check with openssl.
    write_file(st.file("c.pem"), c["pem"].get<std::string>());
    const auto spki = run({"sh", "-c", "openssl x509 -in " + st.file("c.pem").string() +
                                           " -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum"});
    EXPECT_EQ(spki.out.substr(0, 64), c["key_id"].get<std::string>());
    const auto der = run({"sh", "-c", "openssl x509 -in " + st.file("c.pem").string() + " -outform DER | sha256sum"});
    EXPECT_EQ(der.out.substr(0, 64), c["sha256"].get<std::string>());
  }
  EXPECT_EQ(j[0]["subject"], j[0]["issuer"]);
  EXPECT_EQ(j[1]["issuer"], j[0]["subject"]);

  const auto pem = run({station_bin(), "ca", "show", "--data", st.data().string(), "--pem"});
  EXPECT_EQ(pem.out, j[0]["pem"].get<std::string>() + j[1]["pem"].get<std::string>());
}

TEST(StationIssue, CertificatesOnFourCurvesVerifyWithOpensslAndCerttool) {
  StationDir st;
  const auto root = st.root_pem();
  int n = 0;
  for (const std::string curve : {"prime256v1", "secp384r1", "secp521r1", "brainpoolP256r1"}) {
    const auto pub = st.make_pubkey(curve, curve);
    const auto r = st.issue(pub, "ACME-" + std::to_string(++n));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto chain = st.file(curve + ".chain.pem");
    write_file(chain, r.out);
    // The output is the device certificate followed by the issuing CA (not the root).
    EXPECT_EQ(count_lines(r.out, "-----BEGIN CERTIFICATE-----"), 2);
    const auto v = run({"openssl", "verify", "-x509_strict", "-CAfile", root.string(), "-untrusted", chain.string(),
                        chain.string()});
    EXPECT_EQ(v.exit_code, 0) << curve << ": " << v.out << v.err;
    EXPECT_EQ(v.out, chain.string() + ": OK\n");
    const auto g = run({"certtool", "--verify", "--load-ca-certificate", root.string(), "--infile", chain.string()});
    EXPECT_EQ(g.exit_code, 0) << curve << ": " << g.out << g.err;
    EXPECT_NE(g.out.find("Chain verification output: Verified. The certificate is trusted."), std::string::npos)
        << curve << g.out;
    // The certificate certifies exactly the given key.
    const auto certkey = run({"sh", "-c", "openssl x509 -in " + chain.string() + " -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum"});
    const auto givenkey = run({"sh", "-c", "openssl pkey -pubin -in " + pub.string() + " -outform DER | sha256sum"});
    EXPECT_EQ(certkey.out, givenkey.out);
    EXPECT_EQ(st.count_devices("ACME-" + std::to_string(n)), 1);
  }
}

TEST(StationIssue, ExtensionsAreExactlyTheProfiles) {
  StationDir st;
  const auto conf = st.config_with(
      "[profiles.device]",
      "[profiles.enterprise]\nvalidity_days = 7300\nsubject = 'O=Acme Devices, serialNumber={serial}, CN={serial}'\n"
      "subject_alt_names = ['URI:urn:dev:serial:{serial}', 'DNS:{serial}.devices.acme.example']\n"
      "key_usage = ['digitalSignature']\nextended_key_usage = ['clientAuth', 'serverAuth']\n"
      "crl_distribution_point = 'http://pki.acme.example/issuing.crl'\n\n[profiles.device]");
  const auto pub = st.make_pubkey("prime256v1", "k");
  const auto r = run({station_bin(), "issue", "--config", conf.string(), "--pubkey", pub.string(), "--serial",
                      "ACME-7", "--profile", "enterprise"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  write_file(st.file("c.pem"), r.out);
  const auto text = run({"openssl", "x509", "-in", st.file("c.pem").string(), "-noout", "-text"}).out;
  const auto begin = text.find("        X509v3 extensions:\n");
  const auto end = text.find("    Signature Algorithm:", begin);
  ASSERT_NE(begin, std::string::npos);
  std::string exts = text.substr(begin, end - begin);
  exts = std::regex_replace(exts, std::regex("([0-9A-F]{2}:){19}[0-9A-F]{2}"), "<keyid>");
  EXPECT_EQ(exts,
            "        X509v3 extensions:\n"
            "            X509v3 Basic Constraints: critical\n"
            "                CA:FALSE\n"
            "            X509v3 Key Usage: critical\n"
            "                Digital Signature\n"
            "            X509v3 Extended Key Usage: \n"
            "                TLS Web Client Authentication, TLS Web Server Authentication\n"
            "            X509v3 Authority Key Identifier: \n"
            "                <keyid>\n"
            "            X509v3 CRL Distribution Points: \n"
            "                Full Name:\n"
            "                  URI:http://pki.acme.example/issuing.crl\n"
            "            X509v3 Subject Key Identifier: \n"
            "                <keyid>\n"
            "            X509v3 Subject Alternative Name: \n"
            "                URI:urn:dev:serial:ACME-7, DNS:ACME-7.devices.acme.example\n");
  EXPECT_NE(text.find("Subject: O = Acme Devices, serialNumber = ACME-7, CN = ACME-7"), std::string::npos) << text;
  // The default profile keeps its own extensions.
  const auto d = st.issue(st.make_pubkey("prime256v1", "k2"), "ACME-8");
  ASSERT_EQ(d.exit_code, 0) << d.err;
}

// certified_key = 'separate': --pubkey is the certificate key, --dpp-pubkey the DPP key the
// certificate binds by its hash (over the compressed SPKI, as the DPP URI carries it).
TEST(StationIssue, ASeparateKeyProfileCertifiesPubkeyAndBindsTheDppPubkey) {
  StationDir st;
  const auto conf = st.config_with(
      "[profiles.device]",
      "[profiles.split]\ncertified_key = 'separate'\nkey_usage = ['digitalSignature']\n\n[profiles.device]");
  const auto cert_key = st.make_pubkey("prime256v1", "c");
  const auto dpp_key = st.make_pubkey("prime256v1", "d");
  auto issue = [&](const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {station_bin(), "issue", "--config", conf.string(), "--pubkey",
                                     cert_key.string(), "--serial", "SPLIT-1"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run(argv);
  };
  auto r = issue({"--profile", "split"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("give the device's DPP public key too (--dpp-pubkey FILE)"), std::string::npos) << r.err;
  r = issue({"--dpp-pubkey", dpp_key.string()});  // the default profile certifies the DPP key
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("certified_key = 'separate'"), std::string::npos) << r.err;
  r = issue({"--profile", "split", "--dpp-pubkey", cert_key.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("the same key"), std::string::npos) << r.err;
  EXPECT_EQ(st.count_devices("SPLIT-1"), 0);

  r = issue({"--profile", "split", "--dpp-pubkey", dpp_key.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  write_file(st.file("c.pem"), r.out);
  const auto pkhash = run({"sh", "-c", "openssl ec -pubin -in " + dpp_key.string() +
                                           " -pubout -outform DER -conv_form compressed 2>/dev/null | sha256sum"});
  ASSERT_EQ(pkhash.exit_code, 0);
  const std::string hash = pkhash.out.substr(0, 64);
  const auto san = run({"openssl", "x509", "-in", st.file("c.pem").string(), "-noout", "-ext", "subjectAltName"});
  EXPECT_NE(san.out.find("URI:urn:dpp:pkhash:" + hash), std::string::npos) << san.out << san.err;
  const auto certified = run({"sh", "-c", "openssl x509 -in " + st.file("c.pem").string() +
                                              " -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum"});
  const auto given = run({"sh", "-c", "openssl pkey -pubin -in " + cert_key.string() + " -outform DER | sha256sum"});
  EXPECT_EQ(certified.out, given.out);
  // The record names the DPP key (what auditors look devices up by) and the journal both.
  const auto rec = st.row(
      "SELECT i.pkhash, json_extract(j.details, '$.pkhash'), json_extract(j.details, '$.cert_pkhash') "
      "FROM identities i, journal j WHERE j.action = 'device.issued' AND j.subject = 'device:SPLIT-1'");
  ASSERT_EQ(rec.size(), 3u);
  EXPECT_EQ(rec[0], hash);
  EXPECT_EQ(rec[1], hash);
  ASSERT_TRUE(rec[2].has_value());
  EXPECT_EQ(rec[2]->size(), 64u);
}

TEST(StationIssue, ASerialIsNeverIssuedTwice) {
  StationDir st;
  const auto pub = st.make_pubkey("prime256v1", "a");
  ASSERT_EQ(st.issue(pub, "ACME-1").exit_code, 0);
  const auto again = st.issue(st.make_pubkey("prime256v1", "b"), "ACME-1");
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("ACME-1 already has an identity"), std::string::npos) << again.err;
  EXPECT_TRUE(again.out.empty());
  // The same key for another serial: the DPP key hash belongs to one device only.
  const auto same_key = st.issue(pub, "ACME-2");
  EXPECT_EQ(same_key.exit_code, 1);
  EXPECT_NE(same_key.err.find("key hash"), std::string::npos) << same_key.err;
  EXPECT_EQ(st.count_devices("ACME-2"), 0);
}

// What `device.issued` says of how the key was proven, for the device `serial`.
std::string issued_proof(const StationDir& st, const std::string& serial) {
  const auto r = st.row("SELECT json_type(details, '$.proof'), json_extract(details, '$.proof') FROM journal "
                        "WHERE action = 'device.issued' AND subject = ?",
                        {"device:" + serial});
  if (r.empty()) return "(no entry)";
  return !r[0] ? "(absent)" : !r[1] ? "null" : *r[1];
}

TEST(StationIssue, ACertificateRequestProvesPossessionAndOnlyItsKeyIsCertified) {
  StationDir st;
  const auto root = st.root_pem();
  auto csr_of = [&](const std::string& name, const std::string& form) {
    const auto key = st.file(name + ".key"), csr = st.file(name + ".csr");
    EXPECT_EQ(run({"openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key.string()}).exit_code, 0);
    // The subject the requester asks for is not what it gets: the profile names the subject.
    EXPECT_EQ(run({"openssl", "req", "-new", "-key", key.string(), "-subj", "/CN=admin/O=Someone Else", "-outform", form,
                   "-out", csr.string()})
                  .exit_code,
              0);
    return std::make_pair(key, csr);
  };
  auto issue_csr = [&](const fs::path& csr, const std::string& serial) {
    return run({station_bin(), "issue", "--data", st.data().string(), "--csr", csr.string(), "--serial", serial});
  };
  for (const std::string form : {"PEM", "DER"}) {
    const auto [key, csr] = csr_of("dev-" + form, form);
    const std::string serial = "CSR-" + form;
    const auto r = issue_csr(csr, serial);
    ASSERT_EQ(r.exit_code, 0) << form << ": " << r.err;
    const auto chain = st.file(form + ".chain.pem");
    write_file(chain, r.out);
    const auto v = run({"openssl", "verify", "-x509_strict", "-CAfile", root.string(), "-untrusted", chain.string(),
                        chain.string()});
    EXPECT_EQ(v.out, chain.string() + ": OK\n") << v.err;
    const auto certified = run({"sh", "-c", "openssl x509 -in " + chain.string() +
                                                " -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum"});
    const auto held = run({"sh", "-c", "openssl pkey -in " + key.string() + " -pubout -outform DER | sha256sum"});
    EXPECT_EQ(certified.out, held.out) << form;
    const auto subject = run({"openssl", "x509", "-in", chain.string(), "-noout", "-subject"}).out;
    EXPECT_EQ(subject.find("admin"), std::string::npos) << subject;
    EXPECT_NE(subject.find(serial), std::string::npos) << subject;
    EXPECT_EQ(issued_proof(st, serial), "csr");
  }

  // A request whose signature does not verify proves nothing: refused, nothing recorded.
  const auto [key, csr] = csr_of("forged", "DER");
  std::string der = read_file(csr);
  der[der.size() - 5] = static_cast<char>(der[der.size() - 5] ^ 0x01);  // inside the signature
  write_file(st.file("forged-bad.csr"), der);
  auto r = issue_csr(st.file("forged-bad.csr"), "CSR-FORGED");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("does not prove possession"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("forged-bad.csr"), std::string::npos) << r.err;
  EXPECT_EQ(st.count_devices("CSR-FORGED"), 0);
  // Not a request at all, in either form; a request with bytes after it.
  write_file(st.file("text.csr"), "hello");
  r = issue_csr(st.file("text.csr"), "CSR-X");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not a certificate request"), std::string::npos) << r.err;
  r = issue_csr(st.make_pubkey("prime256v1", "plain"), "CSR-X");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not a PEM certificate request"), std::string::npos) << r.err;
  write_file(st.file("trailing.csr"), read_file(csr) + "x");
  r = issue_csr(st.file("trailing.csr"), "CSR-X");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("followed by other bytes"), std::string::npos) << r.err;
  EXPECT_EQ(st.count_devices("CSR-X"), 0);
  // One source of the key: both or neither is refused.
  r = run({station_bin(), "issue", "--data", st.data().string(), "--csr", csr.string(), "--pubkey",
           st.file("plain.pub").string(), "--serial", "CSR-Y"});
  EXPECT_NE(r.exit_code, 0);
  r = run({station_bin(), "issue", "--data", st.data().string(), "--serial", "CSR-Y"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--pubkey FILE or --csr FILE"), std::string::npos) << r.err;
  EXPECT_EQ(st.count_devices("CSR-Y"), 0);
  // A key given as it is: the caller vouches for it, and the journal says so.
  ASSERT_EQ(st.issue(st.file("plain.pub"), "PLAIN-1").exit_code, 0);
  EXPECT_EQ(issued_proof(st, "PLAIN-1"), "null");
}

TEST(StationIssue, BadInputGivesOneLineReasons) {
  StationDir st;
  write_file(st.file("junk.pem"), "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n");
  auto r = st.issue(st.file("junk.pem"), "X1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not a PEM public key"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  r = st.issue(st.file("missing.pem"), "X1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("missing.pem"), std::string::npos);
  r = st.issue(st.make_pubkey("prime256v1", "k"), "bad serial,=");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("printable ASCII"), std::string::npos) << r.err;
}

TEST(StationConfig, UnknownKeysAndBadValuesAreRefusedByName) {
  StationDir st;
  const auto pub = st.make_pubkey("prime256v1", "k");
  auto conf = st.config_with("max_sessions = 8", "max_sessions = 8\nmax_sesions = 4", "typo.conf");
  auto r = run({station_bin(), "issue", "--config", conf.string(), "--pubkey", pub.string(), "--serial", "S1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("hsm.max_sesions: unknown key"), std::string::npos) << r.err;
  conf = st.config_with("[profiles.device]\nvalidity_days = 3650", "[profiles.device]\nvalidity_days = 'ten years'", "bad.conf");
  r = run({station_bin(), "issue", "--config", conf.string(), "--pubkey", pub.string(), "--serial", "S1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("profiles.device.validity_days: must be an integer"), std::string::npos) << r.err;
  conf = st.config_with("pin = 'file:pins/user.pin'", "pin = '1234'", "pin.conf");
  r = run({station_bin(), "issue", "--config", conf.string(), "--pubkey", pub.string(), "--serial", "S1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("hsm.pin: must be a reference"), std::string::npos) << r.err;
  EXPECT_EQ(st.count_devices("S1"), 0);
}

TEST(StationHsm, WrongPinGivesAClearErrorAndExactlyOneLogin) {
  StationDir st;
  write_file(st.data() / "pins/wrong.pin", "definitely-not-it\n");
  fs::permissions(st.data() / "pins/wrong.pin", fs::perms::owner_read | fs::perms::owner_write);
  const auto conf = st.config_with({{"pin = 'file:pins/user.pin'", "pin = 'file:pins/wrong.pin'"},
                                    {std::string("module = '") + STATION_SOFTHSM_MODULE + "'",
                                     std::string("module = '") + STATION_P11SHIM + "'"}},
                                   "wrong.conf");
  const auto log = st.file("calls.log");
  const auto r = run({station_bin(), "issue", "--config", conf.string(), "--pubkey",
                      st.make_pubkey("prime256v1", "k").string(), "--serial", "P1"},
                     {{"P11SHIM_LOG", log.string()}});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("rejected the user PIN"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("not retrying"), std::string::npos) << r.err;
  EXPECT_EQ(count_lines(read_file(log), "C_Login"), 1);
  EXPECT_EQ(st.count_devices("P1"), 0);
}

TEST(StationHsm, MissingModuleAndMissingTokenAreNamed) {
  StationDir st;
  const auto pub = st.make_pubkey("prime256v1", "k");
  auto conf = st.config_with(std::string("module = '") + STATION_SOFTHSM_MODULE + "'",
                             "module = '/opt/nowhere/libhsm.so'", "nomod.conf");
  auto r = run({station_bin(), "issue", "--config", conf.string(), "--pubkey", pub.string(), "--serial", "M1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot load PKCS#11 module /opt/nowhere/libhsm.so"), std::string::npos) << r.err;
  conf = st.config_with("token_label = 'station'", "token_label = 'elsewhere'", "notoken.conf");
  r = run({station_bin(), "issue", "--config", conf.string(), "--pubkey", pub.string(), "--serial", "M1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no token labelled 'elsewhere'"), std::string::npos) << r.err;
  EXPECT_EQ(st.count_devices("M1"), 0);
}

// Fault injection by count (STYLE.md): the N-th PKCS#11 call of one issuance fails, for
// every N. Each run either fails with a specific one-line error naming the call and
// records nothing, or (only for the teardown calls after the record is written) succeeds
// with a valid certificate.
TEST(StationHsm, AFailureAtEachPkcs11CallOfAnIssuanceIsCleanAndLeavesNothingHalfMade) {
  StationDir st;
  const auto conf = st.config_with(std::string("module = '") + STATION_SOFTHSM_MODULE + "'",
                                   std::string("module = '") + STATION_P11SHIM + "'", "shim.conf");
  const auto root = st.root_pem();
  const auto pub = st.make_pubkey("prime256v1", "k");
  const auto log = st.file("calls.log");
  auto issue = [&](const std::string& serial, const std::map<std::string, std::string>& env, const fs::path& key) {
    return run({station_bin(), "issue", "--config", conf.string(), "--pubkey", key.string(), "--serial", serial}, env);
  };
  const auto clean = issue("F0", {{"P11SHIM_LOG", log.string()}}, pub);
  ASSERT_EQ(clean.exit_code, 0) << clean.err;
  std::vector<std::string> calls;
  {
    std::istringstream in(read_file(log));
    for (std::string line; std::getline(in, line);) calls.push_back(line);
  }
  ASSERT_GE(calls.size(), 10u);
  const auto sign_at = std::find(calls.begin(), calls.end(), "C_Sign") - calls.begin();
  ASSERT_LT(static_cast<std::size_t>(sign_at), calls.size());

  for (std::size_t i = 1; i <= calls.size(); ++i) {
    const std::string serial = "F" + std::to_string(i);
    const auto key = st.make_pubkey("prime256v1", serial);
    const auto r = issue(serial, {{"P11SHIM_FAIL_AT", std::to_string(i)}}, key);
    const std::string& call = calls[i - 1];
    if (static_cast<long>(i) <= sign_at + 1) {
      EXPECT_EQ(r.exit_code, 1) << "failure at call " << i << " (" << call << ") was not reported";
      EXPECT_NE(r.err.find(call + " failed: CKR_DEVICE_ERROR"), std::string::npos) << i << " " << call << ": " << r.err;
      EXPECT_TRUE(r.out.empty()) << "a certificate was printed although " << call << " failed";
      EXPECT_EQ(st.count_devices(serial), 0) << "a record was left behind after " << call << " failed";
    } else if (r.exit_code == 0) {
      write_file(st.file("x.pem"), r.out);
      const auto v = run({"openssl", "verify", "-CAfile", root.string(), "-untrusted", st.file("x.pem").string(),
                          st.file("x.pem").string()});
      EXPECT_EQ(v.exit_code, 0) << "teardown failure at " << call << " produced a bad certificate";
      EXPECT_EQ(st.count_devices(serial), 1);
    } else {
      EXPECT_EQ(st.count_devices(serial), 0) << call;
    }
  }
}

TEST(StationHsm, LostSessionIsReopenedWithOneNewLoginAndTheIssuanceCompletes) {
  StationDir st;
  const auto conf = st.config_with(std::string("module = '") + STATION_SOFTHSM_MODULE + "'",
                                   std::string("module = '") + STATION_P11SHIM + "'", "shim.conf");
  const auto log = st.file("calls.log");
  const auto r = run({station_bin(), "issue", "--config", conf.string(), "--pubkey",
                      st.make_pubkey("prime256v1", "k").string(), "--serial", "R1"},
                     {{"P11SHIM_LOG", log.string()},
                      {"P11SHIM_FAIL_CALL", "C_SignInit"},
                      {"P11SHIM_FAIL_AT", "1"},
                      {"P11SHIM_FAIL_RV", "b3"}});  // CKR_SESSION_HANDLE_INVALID
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(count_lines(read_file(log), "C_Login"), 2);
  EXPECT_EQ(st.count_devices("R1"), 1);
}

TEST(StationCli, EveryCommandHasHelp) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--help"}, {"init", "--help"}, {"ca", "--help"}, {"ca", "show", "--help"}, {"issue", "--help"}}) {
    std::vector<std::string> argv = {station_bin()};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto r = run(argv);
    EXPECT_EQ(r.exit_code, 0) << args[0];
    EXPECT_NE(r.out.find("Usage:"), std::string::npos) << args[0];
  }
  const auto r = run({station_bin(), "issue"});
  EXPECT_NE(r.exit_code, 0);
}

}  // namespace
}  // namespace station::test

namespace station::test {
namespace {

// `station init` against an HSM it does not own: a token made beforehand by the HSM's own
// tool, the PIN from the environment. Nothing but the config and the records is created.
TEST(StationInit, RealHsmCreatesOnlyConfigAndRecordsAndTakesThePinFromTheEnvironment) {
  TempDir tmp;
  fs::create_directory(tmp / "tokens");
  write_file(tmp / "softhsm2.conf", "directories.tokendir = " + (tmp / "tokens").string() + "\nobjectstore.backend = file\n");
  const std::map<std::string, std::string> env = {{"SOFTHSM2_CONF", (tmp / "softhsm2.conf").string()},
                                                  {"LINE_HSM_PIN", "line-pin-4711"}};
  ASSERT_EQ(run({"softhsm2-util", "--init-token", "--free", "--label", "line-hsm", "--so-pin", "so-4711", "--pin",
                 "line-pin-4711"},
                env)
                .exit_code,
            0);
  const auto data = tmp / "data";
  auto r = run({station_bin(), "init", "--data", data.string(), "--pkcs11-module", "softhsm2", "--token-label",
                "line-hsm", "--pin", "env:LINE_HSM_PIN"},
               env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::set<std::string> made;
  for (const auto& e : fs::directory_iterator(data)) made.insert(e.path().filename().string());
  made.erase("station.db-wal");
  made.erase("station.db-shm");
  // The counters' high-water marks (docs/records.md) are the only other file: no key, no PIN.
  EXPECT_EQ(made, (std::set<std::string>{"station.conf", "station.db", "station.db-highwater.json"}));
  EXPECT_EQ(read_file(data / "station.db-highwater.json").find("PIN"), std::string::npos);
  const std::string conf = read_file(data / "station.conf");
  EXPECT_NE(conf.find("pin = 'env:LINE_HSM_PIN'"), std::string::npos);
  EXPECT_EQ(conf.find("line-pin-4711"), std::string::npos) << "the PIN itself reached the config";
  // Issuing reads the PIN from the same variable.
  const auto key = tmp / "k.key", pub = tmp / "k.pub";
  run({"openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key.string()});
  run({"openssl", "ec", "-in", key.string(), "-pubout", "-out", pub.string()});
  r = run({station_bin(), "issue", "--data", data.string(), "--pubkey", pub.string(), "--serial", "RH-1"}, env);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // Without the variable, the error says which one is missing.
  r = run({station_bin(), "issue", "--data", data.string(), "--pubkey", pub.string(), "--serial", "RH-2"},
          {{"SOFTHSM2_CONF", (tmp / "softhsm2.conf").string()}, {"LINE_HSM_PIN", ""}});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("PIN variable LINE_HSM_PIN is not set"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace station::test
