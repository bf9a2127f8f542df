// The audit journal through the real binary: tamper with the database the way an
// attacker with sqlite3 would, and `station audit verify` must name the entry.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <sstream>

#include "common/ossl.hpp"
#include "db/journal.hpp"
#include "station_dir.hpp"

namespace station::test {
namespace {

// init (entries 1-4: station.init and three ca.created) + three devices (entries 5-7).
class Audited : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int n = 1; n <= 3; ++n) {
      const auto r = st_.issue(st_.make_pubkey("prime256v1", "k" + std::to_string(n)), "SN-" + std::to_string(n));
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
  }

  struct Verdict {
    int exit_code;
    nlohmann::json report;
  };
  Verdict verify(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {station_bin(), "audit", "verify", "--data", st_.data().string(), "--json"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    const auto r = run(argv);
    Verdict v{r.exit_code, nullptr};
    if (!r.out.empty()) v.report = nlohmann::json::parse(r.out);
    return v;
  }
  // Tampers as an attacker with the sqlite3 tool would (triggers dropped first).
  void sql(const std::string& statements) {
    const auto r = run({"sqlite3", (st_.data() / "station.db").string(),
                        "DROP TRIGGER IF EXISTS journal_append_only_update; DROP TRIGGER IF EXISTS "
                        "journal_append_only_delete; DROP TRIGGER IF EXISTS journal_rows_append_only_update; "
                        "DROP TRIGGER IF EXISTS journal_rows_append_only_delete; " + statements});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  std::string query(const std::string& q) {
    return run({"sqlite3", (st_.data() / "station.db").string(), q}).out;
  }
  void expect_tampered_at(std::int64_t seq) {
    const auto v = verify();
    EXPECT_EQ(v.exit_code, 1) << v.report.dump();
    EXPECT_EQ(v.report["ok"], false);
    EXPECT_EQ(v.report["first_bad_seq"], seq) << v.report.dump();
    EXPECT_TRUE(v.report["reason"].is_string());
  }

  StationDir st_;
};

TEST_F(Audited, IntactJournalVerifiesWithEveryEntrySigned) {
  const auto v = verify();
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_EQ(v.report["ok"], true);
  EXPECT_EQ(v.report["entries"], 7);
  EXPECT_EQ(v.report["unsigned_tail"], 0);
  EXPECT_GE(v.report["checkpoints"].get<int>(), 1);
  EXPECT_TRUE(v.report["first_bad_seq"].is_null());
  EXPECT_TRUE(v.report["reason"].is_null());
  // The journal tells who did what from the first command on.
  EXPECT_EQ(query("SELECT action FROM journal ORDER BY seq"),
            "station.init\nca.created\nca.created\nca.created\ndevice.issued\ndevice.issued\ndevice.issued\n");
}

TEST_F(Audited, ChangedByteOfAJournalRowIsNamed) {
  sql("UPDATE journal SET details = replace(details, 'SN-2', 'SN-9') WHERE seq = 6");
  expect_tampered_at(6);
}

TEST_F(Audited, ChangedByteOfARecordRowIsNamed) {
  // One byte of SN-2's certificate.
  sql("UPDATE identities SET cert_der = X'31' || substr(cert_der, 2) WHERE device_id = (SELECT id FROM devices "
      "WHERE serial = 'SN-2')");
  expect_tampered_at(6);
}

TEST_F(Audited, DeletedJournalRowIsNamed) {
  sql("DELETE FROM journal WHERE seq = 5");
  expect_tampered_at(5);
}

TEST_F(Audited, DeletedRecordRowIsNamed) {
  sql("PRAGMA foreign_keys=OFF; DELETE FROM identities WHERE device_id = (SELECT id FROM devices WHERE serial = 'SN-3')");
  expect_tampered_at(7);
}

TEST_F(Audited, InsertedJournalRowIsNamed) {
  sql("INSERT INTO journal SELECT 8, time, station_id, actor, action, subject, details, records_hash, hash, "
      "'0000000000000000000000000000000000000000000000000000000000000000' FROM journal WHERE seq = 7");
  expect_tampered_at(8);
}

TEST_F(Audited, InsertedRecordRowIsReported) {
  sql("INSERT INTO devices(serial, state, created, updated) VALUES('GHOST-1', 'done', '2026-01-01T00:00:00Z', "
      "'2026-01-01T00:00:00Z')");
  const auto v = verify();
  EXPECT_EQ(v.exit_code, 1);
  EXPECT_NE(v.report["reason"].get<std::string>().find("in no journal entry"), std::string::npos) << v.report.dump();
}

TEST_F(Audited, SwappedRowsAreNamed) {
  sql("UPDATE journal SET seq = -5 WHERE seq = 5; UPDATE journal SET seq = 5 WHERE seq = 6; "
      "UPDATE journal SET seq = 6 WHERE seq = -5");
  expect_tampered_at(5);
}

TEST_F(Audited, TruncatedTailBehindACheckpointIsNamed) {
  sql("PRAGMA foreign_keys=OFF; DELETE FROM journal WHERE seq = 7; DELETE FROM journal_rows WHERE seq = 7");
  expect_tampered_at(7);
}

TEST_F(Audited, TruncationThatAlsoRemovesTheCheckpointIsCaughtByExpect) {
  const std::string hash7 = query("SELECT hash FROM journal WHERE seq = 7");
  const std::string expect = "7:" + hash7.substr(0, 64);
  EXPECT_EQ(verify({"--expect", expect}).exit_code, 0);
  // Remove entry 7, its rows, its records and its checkpoint: what is left is consistent.
  sql("PRAGMA foreign_keys=OFF; DELETE FROM journal WHERE seq = 7; DELETE FROM journal_rows WHERE seq = 7; "
      "DELETE FROM checkpoints WHERE seq = 7; DELETE FROM identities WHERE device_id = (SELECT id FROM devices WHERE "
      "serial = 'SN-3'); DELETE FROM devices WHERE serial = 'SN-3'");
  EXPECT_EQ(verify().exit_code, 0) << "without an expectation a clean truncation cannot be seen";
  const auto v = verify({"--expect", expect});
  EXPECT_EQ(v.exit_code, 1);
  EXPECT_EQ(v.report["first_bad_seq"], 7) << v.report.dump();
}

TEST_F(Audited, ForgedCheckpointIsNamed) {
  // A checkpoint claiming a different hash for entry 6, with the old signature.
  sql("UPDATE checkpoints SET hash = '" + std::string(64, 'f') + "' WHERE seq = 6");
  expect_tampered_at(6);
}

TEST_F(Audited, RewrittenChainIsCaughtByTheSignedCheckpoints) {
  // The attacker changes entry 6 and recomputes every hash after it, as the code would;
  // only the checkpoint signatures (made in the HSM) can tell.
  sql("UPDATE journal SET actor = 'mallory' WHERE seq = 6");
  db::Connection c(st_.data() / "station.db");
  std::string prev;
  auto st = c.prepare("SELECT seq, time, station_id, actor, action, subject, details, records_hash, prev_hash FROM journal ORDER BY seq");
  std::vector<db::Entry> entries;
  while (st.step()) {
    db::Entry e;
    e.seq = st.int64(0);
    e.time = st.text(1);
    e.station_id = st.text(2);
    e.actor = st.text(3);
    e.action = st.text(4);
    e.subject = st.text(5);
    e.details = st.text(6);
    e.records_hash = st.text(7);
    e.prev_hash = prev.empty() ? st.text(8) : prev;
    e.hash = db::entry_hash(e);
    prev = e.hash;
    entries.push_back(e);
  }
  for (const auto& e : entries) {
    auto up = c.prepare("UPDATE journal SET prev_hash = ?, hash = ? WHERE seq = ?");
    up.bind(1, e.prev_hash).bind(2, e.hash).bind(3, e.seq);
    up.run();
  }
  expect_tampered_at(6);
}

// Signs like an attacker who has a key of their own (not the HSM's audit key).
class ForeignSigner {
 public:
  ForeignSigner() : key_(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")) {
    ossl::X509Ptr cert(X509_new());
    X509_set_version(cert.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 7);
    X509_NAME* name = X509_get_subject_name(cert.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("Station Audit Signer"), -1, -1, 0);
    X509_set_issuer_name(cert.get(), name);
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
    X509_set_pubkey(cert.get(), key_.get());
    X509_sign(cert.get(), key_.get(), EVP_sha256());
    unsigned char* out = nullptr;
    const int len = i2d_X509(cert.get(), &out);
    der_.assign(out, out + len);
    OPENSSL_free(out);
  }
  std::string sign_b64(ByteView message) {
    ossl::MdCtx ctx(EVP_MD_CTX_new());
    EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key_.get());
    std::size_t len = 0;
    EVP_DigestSign(ctx.get(), nullptr, &len, message.data(), message.size());
    Bytes sig(len);
    EVP_DigestSign(ctx.get(), sig.data(), &len, message.data(), message.size());
    sig.resize(len);
    return base64_encode(sig);
  }
  const Bytes& der() const { return der_; }

 private:
  ossl::Pkey key_;
  Bytes der_;
};

TEST_F(Audited, BundleVerifiesAgainstTheRootAndRejectsAlterationAndAForeignSignature) {
  const auto bundle = st_.file("audit.jsonl");
  auto r = run({station_bin(), "audit", "export", "--data", st_.data().string(), "--out", bundle.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto root = st_.root_pem();
  auto verify_bundle = [&](const fs::path& b) {
    const auto v = run({station_bin(), "audit", "verify", "--bundle", b.string(), "--trust", root.string(), "--json"});
    return Verdict{v.exit_code, v.out.empty() ? nlohmann::json() : nlohmann::json::parse(v.out)};
  };
  auto good = verify_bundle(bundle);
  EXPECT_EQ(good.exit_code, 0) << good.report.dump();
  EXPECT_EQ(good.report["entries"], 7);
  EXPECT_EQ(good.report["unsigned_tail"], 0);

  // One changed character in an entry, signature left as it was.
  std::string text = read_file(bundle);
  std::string altered = text;
  altered.replace(altered.find("\"SN-2\""), 6, "\"SN-8\"");
  write_file(st_.file("altered.jsonl"), altered);
  EXPECT_EQ(verify_bundle(st_.file("altered.jsonl")).exit_code, 1);

  // Re-signed with another key: the attacker swaps in their own "audit" certificate and
  // re-signs every checkpoint and the bundle. --trust rejects it.
  ForeignSigner foreign;
  const std::string foreign_sha = sha256_hex(foreign.der());
  std::istringstream in(altered);
  std::string body;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j["type"] == "signature") continue;
    if (j["type"] == "certificate" && j["role"] == "audit") {
      j["der"] = base64_encode(foreign.der());
      j["sha256"] = foreign_sha;
    }
    if (j["type"] == "checkpoint") {
      j["signer_sha256"] = foreign_sha;
      j["signature"] = foreign.sign_b64(db::checkpoint_message(j["station_id"], j["seq"], j["hash"], j["time"]));
    }
    body += j.dump() + "\n";
  }
  const std::string resigned = body + nlohmann::json{{"type", "signature"}, {"signer_sha256", foreign_sha},
                                                     {"signature", foreign.sign_b64(as_bytes(body))}}.dump() + "\n";
  write_file(st_.file("resigned.jsonl"), resigned);
  const auto v = verify_bundle(st_.file("resigned.jsonl"));
  EXPECT_EQ(v.exit_code, 1) << v.report.dump();
  EXPECT_NE(v.report["reason"].get<std::string>().find("trusted"), std::string::npos) << v.report.dump();

  // Not a bundle at all: unreadable, exit 2.
  write_file(st_.file("junk.jsonl"), "hello\n");
  EXPECT_EQ(verify_bundle(st_.file("junk.jsonl")).exit_code, 2);
}

TEST_F(Audited, QueryFindsIdentitiesByEveryKeyAndExportsCsv) {
  auto q = [&](const std::vector<std::string>& filter) {
    std::vector<std::string> argv = {station_bin(), "audit", "query", "--data", st_.data().string(), "--json"};
    argv.insert(argv.end(), filter.begin(), filter.end());
    const auto r = run(argv);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out);
  };
  const auto all = q({});
  ASSERT_EQ(all.size(), 3u);
  const auto& two = all[1];
  for (const char* k : {"serial", "chip_id", "mac", "state", "identity_status", "dpp_uri", "pkhash", "cert_serial",
                        "issuer", "batch", "fixture", "operator", "created", "updated"})
    EXPECT_TRUE(two.contains(k)) << k;
  EXPECT_EQ(q({"--serial", "SN-2"}).size(), 1u);
  EXPECT_EQ(q({"--pkhash", two["pkhash"]})[0]["serial"], "SN-2");
  EXPECT_EQ(q({"--cert-serial", two["cert_serial"]})[0]["serial"], "SN-2");
  EXPECT_EQ(q({"--ca", two["issuer"]}).size(), 3u);
  EXPECT_EQ(q({"--operator", two["operator"]}).size(), 3u);
  EXPECT_EQ(q({"--serial", "nope"}).size(), 0u);
  const auto csv = run({station_bin(), "audit", "query", "--data", st_.data().string(), "--csv"});
  EXPECT_EQ(count_lines(csv.out, "serial,chip_id,mac,state,identity_status,dpp_uri,pkhash,cert_serial,issuer,batch,"
                                 "fixture,operator,created,updated"),
            1);
  EXPECT_EQ(std::count(csv.out.begin(), csv.out.end(), '\n'), 4);
  const auto show = run({station_bin(), "audit", "show", "--data", st_.data().string(), "SN-2"});
  EXPECT_NE(show.out.find("device.issued"), std::string::npos) << show.out;
}

TEST_F(Audited, BackupIsAConsistentDatabaseThatVerifies) {
  const auto backup = st_.file("backup.db");
  const auto r = run({station_bin(), "db", "backup", "--data", st_.data().string(), "--out", backup.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(run({"sqlite3", backup.string(), "SELECT count(*) FROM journal"}).out, "7\n");
  EXPECT_NE(run({station_bin(), "db", "backup", "--data", st_.data().string(), "--out", backup.string()}).exit_code, 0);
}

}  // namespace
}  // namespace station::test
