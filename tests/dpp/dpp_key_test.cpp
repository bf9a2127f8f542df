// DPP bootstrapping keys: the hand-built DER must equal what OpenSSL's own encoders and the
// openssl command line produce, on every curve.
#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/bytes.hpp"
#include "common/ossl.hpp"
#include "pki/dpp_key.hpp"
#include "support.hpp"

namespace station::pki::dpp {
namespace {

Bytes openssl_spki(EVP_PKEY* pkey, const char* form) {
  // A duplicate so the caller's key keeps its point format.
  ossl::Pkey dup(::EVP_PKEY_dup(pkey));
  EXPECT_EQ(::EVP_PKEY_set_utf8_string_param(dup.get(), OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, form), 1);
  unsigned char* der = nullptr;
  const int len = ::i2d_PUBKEY(dup.get(), &der);
  EXPECT_GT(len, 0);
  Bytes out(der, der + len);
  ::OPENSSL_free(der);
  return out;
}

Bytes file_bytes(const std::filesystem::path& p) {
  const auto s = test::read_file(p);
  return Bytes(s.begin(), s.end());
}

class DppKeyOnCurve : public ::testing::TestWithParam<Curve> {};

TEST_P(DppKeyOnCurve, CompressedSpkiEqualsOpenSslEncoder) {
  const auto key = KeyPair::generate(GetParam());
  EXPECT_EQ(key.curve(), GetParam());
  EXPECT_EQ(key.public_key().compressed_point().size(), 1 + curve_field_size(GetParam()));
  EXPECT_EQ(key.public_key().spki_der(), openssl_spki(key.evp(), "compressed"));
  EXPECT_EQ(key.public_key().key_hash(), sha256(openssl_spki(key.evp(), "compressed")));
}

TEST_P(DppKeyOnCurve, LoadsCompressedAndUncompressedSpkiToTheSameKey) {
  const auto key = KeyPair::generate(GetParam());
  const auto a = PublicKey::from_spki_der(openssl_spki(key.evp(), "compressed"));
  const auto b = PublicKey::from_spki_der(openssl_spki(key.evp(), "uncompressed"));
  EXPECT_EQ(a, key.public_key());
  EXPECT_EQ(b, key.public_key());
  EXPECT_EQ(b.spki_der(), key.public_key().spki_der());
  const auto evp = a.to_evp();
  EXPECT_EQ(::EVP_PKEY_eq(evp.get(), key.evp()), 1);
}

TEST_P(DppKeyOnCurve, Rfc5915DerEqualsOpenSslAndReloads) {
  const auto key = KeyPair::generate(GetParam());
  const SecretBytes der = key.ec_private_key_der();
  unsigned char* ref = nullptr;
  const int len = ::i2d_PrivateKey(key.evp(), &ref);  // type-specific: RFC 5915 ECPrivateKey
  ASSERT_GT(len, 0);
  const Bytes expected(ref, ref + len);
  ::OPENSSL_clear_free(ref, static_cast<std::size_t>(len));
  EXPECT_EQ(der.bytes(), expected);
  const auto again = KeyPair::from_ec_private_key_der(der.bytes());
  EXPECT_EQ(again.public_key(), key.public_key());
  EXPECT_EQ(again.ec_private_key_der().bytes(), der.bytes());
}

TEST_P(DppKeyOnCurve, PemIsReadByOpenSslCommandLine) {
  test::TempDir dir("dpp-key");
  const auto key = KeyPair::generate(GetParam());
  test::write_file(dir / "k.pem", key.ec_private_key_pem().str());
  const auto r = test::run({"openssl", "ec", "-in", (dir / "k.pem").string(), "-pubout", "-outform", "DER",
                            "-conv_form", "compressed", "-out", (dir / "pub.der").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(file_bytes(dir / "pub.der"), key.public_key().spki_der());
  EXPECT_NE(key.ec_private_key_pem().str().find("-----BEGIN EC PRIVATE KEY-----\n"), std::string::npos);
}

TEST_P(DppKeyOnCurve, ReadsAKeyMadeByTheOpenSslCommandLine) {
  // The device-generated mode: only the public key reaches the station.
  test::TempDir dir("dpp-key");
  const std::string name(curve_openssl_name(GetParam()));
  ASSERT_EQ(test::run({"openssl", "ecparam", "-name", name, "-genkey", "-noout", "-out", (dir / "k.pem").string()})
                .exit_code, 0);
  ASSERT_EQ(test::run({"openssl", "ec", "-in", (dir / "k.pem").string(), "-pubout", "-out",
                       (dir / "pub.pem").string()}).exit_code, 0);
  ASSERT_EQ(test::run({"openssl", "ec", "-in", (dir / "k.pem").string(), "-pubout", "-outform", "DER",
                       "-conv_form", "compressed", "-out", (dir / "pubc.der").string()}).exit_code, 0);
  const auto from_pem = PublicKey::from_spki_pem_or_der(file_bytes(dir / "pub.pem"));
  EXPECT_EQ(from_pem.curve(), GetParam());
  EXPECT_EQ(from_pem.spki_der(), file_bytes(dir / "pubc.der"));
}

INSTANTIATE_TEST_SUITE_P(AllCurves, DppKeyOnCurve, ::testing::ValuesIn(kAllCurves),
                         [](const auto& param_info) {
                           std::string n(curve_name(param_info.param));
                           n.erase(std::remove(n.begin(), n.end(), '-'), n.end());
                           return n;
                         });

TEST(DppCurveNames, MapBothWays) {
  for (const Curve c : kAllCurves) {
    EXPECT_EQ(curve_from_name(curve_name(c)), c);
    EXPECT_EQ(curve_from_name(curve_openssl_name(c)), c);
  }
  EXPECT_EQ(curve_from_name("bp-384"), Curve::bp384);
  EXPECT_FALSE(curve_from_name("secp256k1").has_value());
}

TEST(DppPublicKey, RefusesAnRsaKeyAndSaysSo) {
  test::TempDir dir("dpp-key");
  ASSERT_EQ(test::run({"openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out",
                       (dir / "rsa.pem").string()}).exit_code, 0);
  ASSERT_EQ(test::run({"openssl", "pkey", "-in", (dir / "rsa.pem").string(), "-pubout", "-outform", "DER", "-out",
                       (dir / "rsa.der").string()}).exit_code, 0);
  try {
    PublicKey::from_spki_der(file_bytes(dir / "rsa.der"));
    FAIL() << "an RSA key was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::unsupported);
    EXPECT_NE(std::string(e.what()).find("rsaEncryption"), std::string::npos) << e.what();
  }
}

TEST(DppPublicKey, RefusesAnEcKeyOnACurveDppDoesNotUse) {
  test::TempDir dir("dpp-key");
  ASSERT_EQ(test::run({"openssl", "ecparam", "-name", "secp256k1", "-genkey", "-noout", "-out",
                       (dir / "k.pem").string()}).exit_code, 0);
  ASSERT_EQ(test::run({"openssl", "ec", "-in", (dir / "k.pem").string(), "-pubout", "-outform", "DER", "-out",
                       (dir / "k.der").string()}).exit_code, 0);
  try {
    PublicKey::from_spki_der(file_bytes(dir / "k.der"));
    FAIL() << "a secp256k1 key was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::unsupported);
    EXPECT_NE(std::string(e.what()).find("not a DPP curve"), std::string::npos) << e.what();
  }
}

TEST(DppPublicKey, RefusesTrailingBytesAPointOffTheCurveAndTheWrongLength) {
  const auto key = KeyPair::generate(Curve::p256);
  Bytes der = key.public_key().spki_der();
  der.push_back(0);
  EXPECT_THROW(PublicKey::from_spki_der(der), Error);
  der.pop_back();
  der.back() ^= 0x01;  // x changes; for about half of all x there is no y
  Bytes uncompressed = openssl_spki(key.evp(), "uncompressed");
  uncompressed.back() ^= 0x01;  // y no longer matches x: never on the curve
  try {
    PublicKey::from_spki_der(uncompressed);
    FAIL() << "a point off the curve was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::parse_error) << e.what();
  }
  EXPECT_THROW(PublicKey::from_point(Curve::p384, key.public_key().compressed_point()), Error);
}

TEST(DppKeyPair, RefusesPrivateKeyDerThatIsNotEc) {
  const Bytes junk{0x30, 0x03, 0x02, 0x01, 0x01};
  EXPECT_THROW(KeyPair::from_ec_private_key_der(junk), Error);
}

TEST(DppKeyPair, GeneratesDistinctKeys) {
  const auto a = KeyPair::generate();
  const auto b = KeyPair::generate();
  EXPECT_EQ(a.curve(), Curve::p256);
  EXPECT_NE(a.public_key(), b.public_key());
}

}  // namespace
}  // namespace station::pki::dpp
