// The HSM as the station uses it: one token behind PKCS#11, a pool of logged-in sessions,
// CA keys generated inside the token, and ECDSA signing over digests computed here.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.hpp"
#include "common/secure.hpp"
#include "pki/pkcs11.hpp"

namespace station::pki {

// A PIN given by reference only: "file:PATH" (relative paths against `base`) or "env:VAR".
// Never a literal: PINs must not appear on a command line, in a config or in a log.
class PinRef {
 public:
  static PinRef parse(std::string_view text);  // Errc::config_error on anything else
  const std::string& text() const noexcept { return text_; }
  // Reads the PIN. From a file: the first line, without its newline. From the
  // environment: the variable is wiped in place and unset, so child processes never see it.
  SecretString read(const std::filesystem::path& base = {}) const;

 private:
  std::string text_;
};

struct HsmConfig {
  std::string module;                 // path, or a p11-kit module name
  std::string token_label;
  std::string pin;                    // PinRef text
  std::filesystem::path base_dir;     // where relative PIN file paths are resolved
  std::size_t max_sessions = 8;       // pool size cap (the token's own limit also applies)
};

// The curves CA keys may use (RSA-3072 is not offered yet).
enum class CaCurve { p256, p384 };
std::string_view to_string(CaCurve c) noexcept;      // "P-256", "P-384"
CaCurve ca_curve_from_string(std::string_view s);    // Errc::config_error otherwise

struct HsmKeyInfo {
  std::string key_id;      // lowercase hex SHA-256 of spki_der; also the token objects' CKA_ID
  std::string label;       // CKA_LABEL: says what the key is for
  CaCurve curve = CaCurve::p256;
  Bytes spki_der;          // SubjectPublicKeyInfo, uncompressed point
};

// Attributes of a private key object, as the token reports them.
struct KeyAttributes {
  bool token = false, is_private = false, sensitive = false, always_sensitive = false;
  bool extractable = false, never_extractable = false, local = false;
  bool sign = false, decrypt = false, unwrap = false, derive = false;
};

class Hsm {
 public:
  // Loads the module, finds the token by label, reads the PIN (once) and logs in once.
  static std::unique_ptr<Hsm> open(const HsmConfig& config);
  virtual ~Hsm() = default;

  virtual const p11::TokenInfo& token() const noexcept = 0;

  // A new EC key pair inside the token: token objects, private key CKA_SENSITIVE,
  // CKA_PRIVATE, not extractable, CKA_SIGN only (no decrypt/unwrap/derive). The objects'
  // CKA_ID is set to the key_id.
  virtual HsmKeyInfo generate_ca_key(CaCurve curve, const std::string& label) = 0;
  virtual std::optional<HsmKeyInfo> find_key(const std::string& key_id) = 0;
  virtual KeyAttributes key_attributes(const std::string& key_id) = 0;
  // CKM_ECDSA over `digest`; returns the DER ECDSA-Sig-Value (converted from raw r||s).
  virtual Bytes sign_digest(const std::string& key_id, ByteView digest) = 0;
  virtual void destroy_key(const std::string& key_id) = 0;

  // Setup secrets at rest (SoftAP passwords, WPS PINs): an AES-256 key generated in the
  // token (sensitive, never extractable, encrypt/decrypt only), CKA_ID = 16 random bytes,
  // returned as hex. seal() is CKM_AES_GCM with a fresh random 96-bit IV and a 128-bit tag:
  // the result is IV || ciphertext || tag; `aad` binds it to its record (e.g. the serial).
  virtual std::string generate_secrets_key(const std::string& label) = 0;
  virtual Bytes seal(const std::string& secrets_key_id, ByteView plaintext, ByteView aad) = 0;
  // Errc::tampered when the sealed bytes or the aad were changed.
  virtual SecretBytes unseal(const std::string& secrets_key_id, ByteView sealed, ByteView aad) = 0;
};

// Converts PKCS#11's raw r||s into a DER ECDSA-Sig-Value (RFC 3279 §2.2.3).
Bytes ecdsa_raw_to_der(ByteView raw);
// DER encoding of the named curve OID, as CKA_EC_PARAMS wants it.
Bytes ec_params_der(CaCurve curve);

}  // namespace station::pki
