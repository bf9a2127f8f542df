// The functions the long-running station calls: periodic re-signing of issuing-CA CRLs
// before nextUpdate, the stale-CRL check, issuer selection and trust anchors, with the
// clock passed in (in-process, on a data folder made by the real `station init`).
#include <gtest/gtest.h>

#include "core/ca_lifecycle.hpp"
#include "station_dir.hpp"

namespace station::test {
namespace {

using namespace std::chrono_literals;

TEST(CaCrlRefresh, IssuingCrlsAreResignedBeforeNextUpdateAndStaleOnesRaiseAnAlarm) {
  StationDir dir;
  core::Station st(dir.data(), std::nullopt);
  const auto t0 = core::now_seconds();
  // Nothing published yet: every CA is stale.
  for (const auto& h : core::crl_health(st, t0)) {
    EXPECT_TRUE(h.stale);
    EXPECT_NE(h.alarm.find("no CRL yet"), std::string::npos) << h.alarm;
  }
  auto first = core::refresh_crls(st, "station", std::nullopt, false, false, {}, t0);
  ASSERT_EQ(first.size(), 2u);
  for (const auto& s : first) {
    EXPECT_TRUE(s.signed_now);
    EXPECT_EQ(s.crl_number, 1);
    EXPECT_FALSE(s.stale);
  }
  // A day later nothing is due: the periodic call signs nothing.
  for (const auto& s : core::refresh_crls(st, "station", std::nullopt, false, true, {}, t0 + 24h)) {
    EXPECT_FALSE(s.signed_now);
    EXPECT_EQ(s.crl_number, 1);
  }
  // Eight days on, without the periodic call, the issuing CA's CRL (7 days) is stale.
  bool alarmed = false;
  for (const auto& h : core::crl_health(st, t0 + 24h * 8)) {
    if (h.role == "issuing") {
      EXPECT_TRUE(h.stale);
      EXPECT_NE(h.alarm.find("nextUpdate"), std::string::npos) << h.alarm;
      alarmed = true;
    } else {
      EXPECT_FALSE(h.stale) << h.alarm;  // the root's CRL lasts 90 days
    }
  }
  EXPECT_TRUE(alarmed);
  // Within two days of nextUpdate the periodic call re-signs only the issuing CA's CRL.
  const auto later = t0 + 24h * 5 + 12h;
  for (const auto& s : core::refresh_crls(st, "station", std::nullopt, false, true, {}, later)) {
    EXPECT_EQ(s.role, "issuing");
    EXPECT_TRUE(s.signed_now);
    EXPECT_EQ(s.crl_number, 2);
    EXPECT_EQ(s.next_update, pki::rfc3339(later + 24h * 7));
  }
  for (const auto& h : core::crl_health(st, t0 + 24h * 8)) {
    EXPECT_FALSE(h.stale) << h.alarm;
  }
  EXPECT_TRUE(db::verify_journal(st.records().connection()).ok);
}

TEST(CaCrlRefresh, CertificatesThePipelineVoidedAreListedAsCessationOfOperation) {
  StationDir dir;
  core::Station st(dir.data(), std::nullopt);
  const auto pub = dir.make_pubkey("prime256v1", "k");
  core::IssueRequest req;
  req.subject_spki = pki::public_key_from_pem_or_der(read_file(pub));
  req.device_serial = "VOID-1";
  const auto issued = core::issue_device_certificate(st, req);
  // What the pipeline does with a certificate issued but never delivered (issue 8).
  const auto identity = st.records().identity_by_cert_serial(issued.certificate.serial);
  ASSERT_TRUE(identity);
  st.journal().commit({"pipeline", "device.voided", "device:VOID-1", {{"cert_serial", identity->cert_serial}}},
                      [&](db::Connection& c) {
                        return std::vector<db::RowRef>{db::set_identity_status(c, identity->id, "voided")};
                      });
  const auto out = dir.file("crl");
  const auto states = core::refresh_crls(st, "station", out);
  fs::path issuing_crl;
  for (const auto& s : states) {
    if (s.role == "issuing") {
      EXPECT_EQ(s.entries, 1);
      issuing_crl = *s.file;
    }
  }
  const auto text = run({"openssl", "crl", "-in", issuing_crl.string(), "-noout", "-text"});
  std::string upper = issued.certificate.serial;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_NE(text.out.find("Serial Number: " + upper), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("Cessation Of Operation"), std::string::npos) << text.out;
  EXPECT_TRUE(db::verify_journal(st.records().connection()).ok);
}

TEST(CaIssuerSelection, AnnouncedRotationTakesOverAtItsMomentAndTrustAnchorsCoverTheOverlap) {
  StationDir dir;
  core::Station st(dir.data(), std::nullopt);
  const auto before = core::current_issuer(st);
  const core::Actor officer{"alice", "officer"};
  const auto at = core::now_seconds() + 1h;
  const auto r = core::rotate_issuing(st, officer, at);
  EXPECT_EQ(core::current_issuer(st).key_id, before.key_id);
  EXPECT_EQ(core::current_issuer(st, at - 1s).key_id, before.key_id);
  EXPECT_EQ(core::current_issuer(st, at).key_id, r.created.front().key_id);
  EXPECT_EQ(core::trust_anchors(st).size(), 1u);
  EXPECT_THROW(core::rotate_issuing(st, officer, core::now_seconds() - 1h), Error);
}

}  // namespace
}  // namespace station::test
