// Device certificate issuance against a real SoftHSM2 token.
#include <gtest/gtest.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <set>

#include "common/ossl.hpp"
#include "pki/x509.hpp"
#include "softhsm_token.hpp"

namespace station::pki {
namespace {

Bytes spki_der(EVP_PKEY* key, bool compressed) {
  if (compressed) EVP_PKEY_set_utf8_string_param(key, "point-format", "compressed");
  unsigned char* out = nullptr;
  const int len = i2d_PUBKEY(key, &out);
  Bytes der(out, out + len);
  OPENSSL_free(out);
  return der;
}

ossl::Pkey ec_key(const char* group) {
  return ossl::Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", group));
}

class Issuance : public ::testing::Test {
 protected:
  void SetUp() override {
    hsm_ = Hsm::open(token_.config());
    root_key_ = hsm_->generate_ca_key(CaCurve::p256, "root");
    issuing_key_ = hsm_->generate_ca_key(CaCurve::p256, "issuing");
    root_der_ = make_ca_certificate(*hsm_, {CaKind::root, "O=Test, CN=Test Root", 3650, &root_key_, nullptr});
    const CaSigner root{root_der_, root_key_.key_id};
    issuing_der_ = make_ca_certificate(*hsm_, {CaKind::issuing, "O=Test, CN=Test Issuing", 3650, &issuing_key_, &root});
  }

  CaSigner issuing() const { return {issuing_der_, issuing_key_.key_id}; }

  // Verifies `cert` up to the root with OpenSSL's verifier.
  bool chain_verifies(ByteView cert_der) {
    auto parse = [](ByteView d) {
      const unsigned char* p = d.data();
      return ossl::X509Ptr(d2i_X509(nullptr, &p, static_cast<long>(d.size())));
    };
    auto cert = parse(cert_der), root = parse(root_der_), issuing = parse(issuing_der_);
    ossl::X509Store store(X509_STORE_new());
    X509_STORE_add_cert(store.get(), root.get());
    STACK_OF(X509)* untrusted = sk_X509_new_null();
    sk_X509_push(untrusted, issuing.get());
    ossl::X509StoreCtx ctx(X509_STORE_CTX_new());
    X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), untrusted);
    const bool ok = X509_verify_cert(ctx.get()) == 1;
    sk_X509_free(untrusted);
    return ok;
  }

  test::SoftHsmToken token_;
  std::unique_ptr<Hsm> hsm_;
  HsmKeyInfo root_key_, issuing_key_;
  Bytes root_der_, issuing_der_;
};

TEST_F(Issuance, CertificatesOnEveryDppCurveVerifyUpToTheRoot) {
  CertificateIssuer issuer(*hsm_, issuing(), CertProfile{});
  for (const char* group : {"P-256", "P-384", "P-521", "brainpoolP256r1", "brainpoolP384r1", "brainpoolP512r1"}) {
    for (const bool compressed : {false, true}) {
      auto key = ec_key(group);
      const auto cert = issuer.issue(spki_der(key.get(), compressed), std::string("SN-") + group);
      EXPECT_TRUE(chain_verifies(cert.der)) << group;
      const auto info = describe_certificate(cert.der);
      EXPECT_EQ(info.serial, cert.serial);
      EXPECT_EQ(info.subject, std::string("CN=SN-") + group);
      EXPECT_EQ(cert.issuer_key_id, issuing_key_.key_id);
      EXPECT_FALSE(info.is_ca);
    }
  }
}

TEST_F(Issuance, SerialsAre16BytePositiveAndUnique) {
  CertificateIssuer issuer(*hsm_, issuing(), CertProfile{});
  auto key = ec_key("P-256");
  std::set<std::string> seen;
  for (int i = 0; i < 50; ++i) {
    const auto cert = issuer.issue(spki_der(key.get(), true), "SN-" + std::to_string(i));
    EXPECT_EQ(cert.serial.size(), 32u);
    EXPECT_GE(cert.serial[0], '4');  // top bit clear, next bit set
    EXPECT_LE(cert.serial[0], '7');
    EXPECT_TRUE(seen.insert(cert.serial).second);
  }
}

class Ledger final : public SerialLedger {
 public:
  bool contains(const std::string& s) override { return serials.count(s) != 0; }
  std::set<std::string> serials;
};

TEST_F(Issuance, RepeatingRandomSourceNeverYieldsADuplicateSerial) {
  // The random source returns A, A, A, B, A, A, B, C, ...: every repeat must be skipped.
  int calls = 0;
  RandomSource repeating = [&](std::span<std::uint8_t> out) {
    const int pattern[] = {1, 1, 1, 2, 1, 1, 2, 3, 3, 1, 2, 3, 4};
    const int v = calls < 13 ? pattern[calls] : 100 + calls;
    ++calls;
    std::fill(out.begin(), out.end(), static_cast<std::uint8_t>(v));
  };
  Ledger ledger;
  auto key = ec_key("P-256");
  {
    CertificateIssuer issuer(*hsm_, issuing(), CertProfile{}, &ledger, repeating);
    for (int i = 0; i < 3; ++i) {
      const auto cert = issuer.issue(spki_der(key.get(), true), "A" + std::to_string(i));
      EXPECT_TRUE(ledger.serials.insert(cert.serial).second) << "duplicate serial " << cert.serial;
    }
  }
  // A new issuer (a restarted station) sees the issued serials only through the ledger.
  CertificateIssuer restarted(*hsm_, issuing(), CertProfile{}, &ledger, repeating);
  const auto cert = restarted.issue(spki_der(key.get(), true), "B");
  EXPECT_TRUE(ledger.serials.insert(cert.serial).second) << "duplicate serial after restart " << cert.serial;
  EXPECT_EQ(ledger.serials.size(), 4u);
}

TEST_F(Issuance, BrokenRandomSourceIsRefused) {
  RandomSource constant = [](std::span<std::uint8_t> out) { std::fill(out.begin(), out.end(), 7); };
  Ledger ledger;
  CertificateIssuer issuer(*hsm_, issuing(), CertProfile{}, &ledger, constant);
  auto key = ec_key("P-256");
  ledger.serials.insert(issuer.issue(spki_der(key.get(), true), "one").serial);
  try {
    issuer.issue(spki_der(key.get(), true), "two");
    FAIL() << "issued with a random source that only repeats";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::crypto_error);
  }
}

TEST_F(Issuance, RefusesKeysThatAreNotOnADppCurve) {
  CertificateIssuer issuer(*hsm_, issuing(), CertProfile{});
  auto rsa = ossl::Pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048}));
  try {
    issuer.issue(spki_der(rsa.get(), false), "rsa");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("not an EC key"), std::string::npos) << e.what();
  }
  auto k1 = ec_key("secp256k1");
  try {
    issuer.issue(spki_der(k1.get(), false), "k1");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not on a DPP curve"), std::string::npos) << e.what();
  }
  auto good = ec_key("P-256");
  Bytes bad = spki_der(good.get(), false);
  bad.back() ^= 0x01;  // the point leaves the curve
  try {
    issuer.issue(bad, "bad-point");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not on P-256"), std::string::npos) << e.what();
  }
}

TEST_F(Issuance, NoExpirationProfileUses99991231) {
  CertProfile p;
  p.validity_days = 0;
  CertificateIssuer issuer(*hsm_, issuing(), p);
  auto key = ec_key("P-256");
  const auto cert = issuer.issue(spki_der(key.get(), true), "forever");
  // Capped at the issuing CA's own notAfter: a certificate never outlives its issuer.
  EXPECT_EQ(describe_certificate(cert.der).not_after, describe_certificate(issuing_der_).not_after);
}

// certified_key = "separate": the certificate certifies the device's second key and binds
// the DPP key by its hash; a DPP-key profile carries no binding.
TEST_F(Issuance, SeparateKeyProfileCertifiesTheCertificateKeyAndBindsTheDppKeyHash) {
  CertProfile p;
  p.name = "split";
  p.certified_key = "separate";
  p.key_usage = {"digitalSignature"};
  p.subject_alt_names = {"URI:urn:dev:sn:{serial}"};
  CertificateIssuer issuer(*hsm_, issuing(), p);
  auto dpp = ec_key("P-256");
  auto cert_key = ec_key("P-256");
  // Uncompressed first: spki_der(.., true) leaves the key set to compressed points.
  const Bytes dpp_full = spki_der(dpp.get(), false);
  const Bytes cert_key_full = spki_der(cert_key.get(), false);
  const std::string pkhash = sha256_hex(spki_der(dpp.get(), true));
  const auto cert = issuer.issue(spki_der(cert_key.get(), true), "SPLIT-1", pkhash);
  EXPECT_TRUE(chain_verifies(cert.der));
  const auto info = describe_certificate(cert.der);
  EXPECT_EQ(info.spki, cert_key_full);  // the certificate key, not the DPP key
  EXPECT_NE(info.spki, dpp_full);
  EXPECT_EQ(bound_dpp_pkhash(cert.der), pkhash);
  // The profile's own names stay, the binding comes after them.
  const unsigned char* d = cert.der.data();
  const ossl::X509Ptr x(d2i_X509(nullptr, &d, static_cast<long>(cert.der.size())));
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x.get(), NID_subject_alt_name, nullptr, nullptr));
  ASSERT_NE(names, nullptr);
  std::vector<std::string> uris;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
    ASSERT_EQ(gn->type, GEN_URI);
    uris.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier)),
                      static_cast<std::size_t>(ASN1_STRING_length(gn->d.uniformResourceIdentifier)));
  }
  GENERAL_NAMES_free(names);
  EXPECT_EQ(uris, (std::vector<std::string>{"urn:dev:sn:SPLIT-1", "urn:dpp:pkhash:" + pkhash}));

  // Without the DPP key hash (or with a malformed one) nothing is issued.
  for (const std::string& bad : {std::string(), std::string("zz"), pkhash.substr(2), std::string(64, 'A')}) {
    try {
      issuer.issue(spki_der(cert_key.get(), true), "SPLIT-2", bad);
      ADD_FAILURE() << "issued with DPP key hash '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::invalid_argument);
      EXPECT_NE(std::string(e.what()).find("DPP key hash"), std::string::npos) << e.what();
    }
  }
  // A profile certifying the DPP key binds nothing and refuses a hash to bind.
  CertificateIssuer plain(*hsm_, issuing(), CertProfile{});
  const auto dpp_cert = plain.issue(spki_der(dpp.get(), true), "PLAIN-1");
  EXPECT_EQ(bound_dpp_pkhash(dpp_cert.der), std::nullopt);
  EXPECT_EQ(describe_certificate(dpp_cert.der).spki, dpp_full);
  EXPECT_THROW(plain.issue(spki_der(dpp.get(), true), "PLAIN-2", pkhash), Error);
}

TEST(CertProfile, ValidationNamesTheKey) {
  CertProfile p;
  p.name = "acme";
  // validate() refuses p with a config error naming profiles.acme.KEY.
  const auto refused_naming = [&p](const std::string& key) {
    try {
      p.validate();
      ADD_FAILURE() << "validated a bad " << key;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::config_error);
      EXPECT_NE(std::string(e.what()).find("profiles.acme." + key), std::string::npos) << e.what();
    }
  };
  p.subject = "CN=fixed";
  refused_naming("subject");
  p.subject = "CN={serial}";
  p.key_usage = {"keyCertSign"};
  EXPECT_THROW(p.validate(), Error);
  p.key_usage = {"digitalSignature", "nonsense"};
  EXPECT_THROW(p.validate(), Error);
  p.key_usage = {"digitalSignature"};
  p.subject_alt_names = {"ftp:x"};
  EXPECT_THROW(p.validate(), Error);
  p.subject_alt_names = {"URI:urn:dev:sn:{serial}"};
  EXPECT_NO_THROW(p.validate());
  p.certified_key = "identity";
  refused_naming("certified_key");
  p.certified_key = "separate";
  EXPECT_NO_THROW(p.validate());
}

}  // namespace
}  // namespace station::pki
