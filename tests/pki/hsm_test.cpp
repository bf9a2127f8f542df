// The PKCS#11 layer against a real SoftHSM2 token in the test's own folder.
#include <gtest/gtest.h>

#include <cstdlib>

#include "common/ossl.hpp"
#include "pki/hsm.hpp"
#include "softhsm_token.hpp"

namespace station::pki {
namespace {

using test::SoftHsmToken;

TEST(Hsm, GeneratesCaKeysThatAreSensitiveNeverExtractableAndSignOnly) {
  SoftHsmToken token;
  auto hsm = Hsm::open(token.config());
  for (const auto curve : {CaCurve::p256, CaCurve::p384}) {
    const auto key = hsm->generate_ca_key(curve, "test-ca");
    EXPECT_EQ(key.key_id, sha256_hex(key.spki_der));
    const auto a = hsm->key_attributes(key.key_id);
    EXPECT_TRUE(a.token);
    EXPECT_TRUE(a.is_private);
    EXPECT_TRUE(a.sensitive);
    EXPECT_TRUE(a.always_sensitive);
    EXPECT_FALSE(a.extractable);
    EXPECT_TRUE(a.never_extractable);
    EXPECT_TRUE(a.local);
    EXPECT_TRUE(a.sign);
    EXPECT_FALSE(a.decrypt);
    EXPECT_FALSE(a.unwrap);
    EXPECT_FALSE(a.derive);
  }
}

TEST(Hsm, PrivateKeyValueCannotBeRead) {
  SoftHsmToken token;
  auto hsm = Hsm::open(token.config());
  const auto key = hsm->generate_ca_key(CaCurve::p256, "test-ca");
  // A second, independent session on the same token tries to read CKA_VALUE.
  auto module = p11::Module::load(STATION_SOFTHSM_MODULE);
  const p11::Session s(module, module->find_token("test-token"), false);
  p11::ObjectSearch search(s, {{CKA_CLASS, CK_ULONG{CKO_PRIVATE_KEY}}, {CKA_ID, ByteView(*hex_decode(key.key_id))}});
  const auto found = search.all();
  ASSERT_EQ(found.size(), 1u);
  try {
    s.get_attribute(found[0], CKA_VALUE);
    FAIL() << "CKA_VALUE of a CA key was readable";
  } catch (const Error& e) {
    EXPECT_EQ(e.native(), CKR_ATTRIBUTE_SENSITIVE);
  }
}

TEST(Hsm, SignsDigestsThatVerifyWithTheKeysPublicKey) {
  SoftHsmToken token;
  auto hsm = Hsm::open(token.config());
  const auto key = hsm->generate_ca_key(CaCurve::p384, "test-ca");
  const Bytes digest(48, 0xab);
  const Bytes sig = hsm->sign_digest(key.key_id, digest);
  const unsigned char* p = key.spki_der.data();
  const ossl::Pkey pub(::d2i_PUBKEY(nullptr, &p, static_cast<long>(key.spki_der.size())));
  ASSERT_TRUE(pub);
  const ossl::PkeyCtx ctx(::EVP_PKEY_CTX_new(pub.get(), nullptr));
  ASSERT_EQ(::EVP_PKEY_verify_init(ctx.get()), 1);
  EXPECT_EQ(::EVP_PKEY_verify(ctx.get(), sig.data(), sig.size(), digest.data(), digest.size()), 1);
}

TEST(Hsm, FindsKeysByKeyIdAcrossOpens) {
  SoftHsmToken token;
  std::string key_id;
  {
    auto hsm = Hsm::open(token.config());
    key_id = hsm->generate_ca_key(CaCurve::p256, "station-root-ca-x").key_id;
  }
  auto hsm = Hsm::open(token.config());
  const auto found = hsm->find_key(key_id);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->label, "station-root-ca-x");
  EXPECT_EQ(found->curve, CaCurve::p256);
  EXPECT_FALSE(hsm->find_key(std::string(64, '0')).has_value());
}

TEST(Hsm, WrongPinIsRefusedWithPinIncorrect) {
  SoftHsmToken token;
  test::write_file(token.dir() / "wrong.pin", "not-the-pin\n");
  auto config = token.config();
  config.pin = "file:" + (token.dir() / "wrong.pin").string();
  try {
    Hsm::open(config);
    FAIL() << "a wrong PIN was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::hsm_pin_incorrect);
    EXPECT_EQ(e.native(), CKR_PIN_INCORRECT);
    EXPECT_NE(std::string(e.what()).find("not retrying"), std::string::npos) << e.what();
  }
}

TEST(Hsm, MissingTokenNamesTheLabel) {
  SoftHsmToken token;
  auto config = token.config();
  config.token_label = "no-such-token";
  try {
    Hsm::open(config);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::hsm_unavailable);
    EXPECT_NE(std::string(e.what()).find("'no-such-token'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'test-token'"), std::string::npos) << e.what();
  }
}

TEST(Hsm, MissingModuleIsAClearError) {
  try {
    p11::Module::load("/nonexistent/libpkcs11.so");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::hsm_unavailable);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/libpkcs11.so"), std::string::npos);
  }
  try {
    p11::Module::load("no-such-p11kit-module");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::hsm_unavailable);
    EXPECT_NE(std::string(e.what()).find("not registered with p11-kit"), std::string::npos) << e.what();
  }
}

TEST(Hsm, LoadsModuleByP11KitName) {
  SoftHsmToken token;
  auto hsm = Hsm::open(token.config("softhsm2"));
  EXPECT_EQ(hsm->token().label, "test-token");
}

TEST(PinRef, RefusesLiteralPins) {
  EXPECT_THROW(PinRef::parse("1234"), Error);
  EXPECT_THROW(PinRef::parse("file:"), Error);
  EXPECT_NO_THROW(PinRef::parse("env:STATION_PIN"));
}

TEST(PinRef, EnvironmentVariableIsUnsetAfterReading) {
  ::setenv("STATION_TEST_PIN", "secret-pin", 1);
  const SecretString pin = PinRef::parse("env:STATION_TEST_PIN").read();
  EXPECT_EQ(pin.str(), "secret-pin");
  EXPECT_EQ(std::getenv("STATION_TEST_PIN"), nullptr);
  // Child processes get an environment without it.
  const auto r = test::run({"sh", "-c", "echo \"[$STATION_TEST_PIN]\""});
  EXPECT_EQ(r.out, "[]\n");
}

TEST(PinRef, FileReadsFirstLineOnly) {
  test::TempDir dir;
  test::write_file(dir / "pin", "abc123\nignored\n");
  EXPECT_EQ(PinRef::parse("file:pin").read(dir.path()).str(), "abc123");
}

TEST(Ecdsa, RawSignatureBecomesDer) {
  Bytes raw(64, 0);
  raw[31] = 1;   // r = 1
  raw[32] = 0x80;  // s has its top bit set: DER needs a leading zero
  const Bytes der = ecdsa_raw_to_der(raw);
  const Bytes expected_prefix = {0x30, 0x26, 0x02, 0x01, 0x01, 0x02, 0x21, 0x00, 0x80};
  ASSERT_GE(der.size(), expected_prefix.size());
  EXPECT_TRUE(std::equal(expected_prefix.begin(), expected_prefix.end(), der.begin()));
  EXPECT_THROW(ecdsa_raw_to_der(Bytes(63, 1)), Error);
}

}  // namespace
}  // namespace station::pki

namespace station::pki {
namespace {

TEST(HsmSecrets, SealedSecretsOpenOnlyUnchangedAndForTheirOwnRecord) {
  test::SoftHsmToken token;
  auto hsm = Hsm::open(token.config());
  const std::string key = hsm->generate_secrets_key("station-secrets");
  EXPECT_EQ(key.size(), 32u);
  const std::string secret = "softap-password-7f3a";
  const Bytes sealed = hsm->seal(key, as_bytes(secret), as_bytes("ACME-1"));
  EXPECT_EQ(sealed.size(), 12 + secret.size() + 16);
  EXPECT_EQ(std::string(sealed.begin(), sealed.end()).find(secret), std::string::npos);
  const auto opened = hsm->unseal(key, sealed, as_bytes("ACME-1"));
  EXPECT_EQ(std::string(opened.bytes().begin(), opened.bytes().end()), secret);
  // Two seals of one secret differ (fresh IV).
  EXPECT_NE(hsm->seal(key, as_bytes(secret), as_bytes("ACME-1")), sealed);
  Bytes flipped = sealed;
  flipped[14] ^= 0x01;
  try {
    hsm->unseal(key, flipped, as_bytes("ACME-1"));
    FAIL() << "a changed sealed secret opened";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::tampered) << e.what() << " rv " << e.native();
  }
  EXPECT_THROW(hsm->unseal(key, sealed, as_bytes("ACME-2")), Error);  // bound to its record
}

}  // namespace
}  // namespace station::pki
