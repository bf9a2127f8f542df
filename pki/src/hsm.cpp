#include "pki/hsm.hpp"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <type_traits>
#include <mutex>

#include <fmt/format.h>
#include <openssl/core_names.h>
#include <openssl/rand.h>

#include "common/ossl.hpp"
#include "internal/ec.hpp"

namespace station::pki {

// ---------------------------------------------------------------------------------------
// PIN references

PinRef PinRef::parse(std::string_view text) {
  const bool ok = (text.rfind("file:", 0) == 0 && text.size() > 5) || (text.rfind("env:", 0) == 0 && text.size() > 4);
  if (!ok) {
    throw Error(Errc::config_error,
                "a PIN must be given by reference, as file:PATH or env:VAR (never the PIN itself)");
  }
  PinRef ref;
  ref.text_ = std::string(text);
  return ref;
}

SecretString PinRef::read(const std::filesystem::path& base) const {
  if (text_.rfind("env:", 0) == 0) {
    const std::string var = text_.substr(4);
    char* value = std::getenv(var.c_str());
    if (value == nullptr || *value == '\0')
      throw Error(Errc::config_error, fmt::format("PIN variable {} is not set (hsm.pin = {})", var, text_));
    SecretString pin{std::string(value)};
    secure_wipe(value, std::strlen(value));  // the copy in environ
    ::unsetenv(var.c_str());
    return pin;
  }
  std::filesystem::path path = text_.substr(5);
  if (path.is_relative() && !base.empty()) path = base / path;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw Error(Errc::config_error, fmt::format("PIN file {} cannot be read: {}", path.string(), std::strerror(errno)));
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
    spdlog::warn("PIN file {} is readable by others (mode {:o}); chmod 600 it", path.string(), st.st_mode & 0777);
  std::ifstream in(path, std::ios::binary);
  std::string line;
  if (!in || !std::getline(in, line)) {
    secure_wipe(line.data(), line.size());
    throw Error(Errc::config_error, fmt::format("PIN file {} is empty or unreadable", path.string()));
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return SecretString(std::move(line));
}

// ---------------------------------------------------------------------------------------
// Curves and encodings

std::string_view to_string(CaCurve c) noexcept { return c == CaCurve::p256 ? "P-256" : "P-384"; }

CaCurve ca_curve_from_string(std::string_view s) {
  if (s == "P-256") return CaCurve::p256;
  if (s == "P-384") return CaCurve::p384;
  throw Error(Errc::config_error, fmt::format("unsupported CA key curve '{}' (use P-256 or P-384)", s));
}

Bytes ec_params_der(CaCurve curve) {
  // id-ecPublicKey named curves (RFC 5480 §2.1.1.1)
  if (curve == CaCurve::p256) return {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};  // prime256v1
  return {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};                                             // secp384r1
}

Bytes ecdsa_raw_to_der(ByteView raw) {
  if (raw.empty() || raw.size() % 2 != 0)
    throw Error(Errc::hsm_error, fmt::format("HSM returned an ECDSA signature of odd length {}", raw.size()));
  const std::size_t half = raw.size() / 2;
  ossl::EcdsaSig sig(ossl::check(::ECDSA_SIG_new(), "ECDSA_SIG_new"));
  BIGNUM* r = ::BN_bin2bn(raw.data(), static_cast<int>(half), nullptr);
  BIGNUM* s = ::BN_bin2bn(raw.data() + half, static_cast<int>(half), nullptr);
  if (r == nullptr || s == nullptr || ::ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    ::BN_free(r);
    ::BN_free(s);
    throw ossl::error("ECDSA_SIG_set0");
  }
  const int len = ::i2d_ECDSA_SIG(sig.get(), nullptr);
  Bytes der(static_cast<std::size_t>(len));
  unsigned char* p = der.data();
  ::i2d_ECDSA_SIG(sig.get(), &p);
  return der;
}

// ---------------------------------------------------------------------------------------
// The PKCS#11-backed HSM with a session pool

namespace {

using p11::Attr;

void system_random_fill(Bytes& out) {
  if (::RAND_bytes(out.data(), static_cast<int>(out.size())) != 1) throw ossl::error("RAND_bytes");
}

class Pkcs11Hsm final : public Hsm {
 public:
  explicit Pkcs11Hsm(const HsmConfig& config)
      : config_(config), pin_(PinRef::parse(config.pin).read(config.base_dir)) {
    module_ = p11::Module::load(config.module);
    slot_ = module_->find_token(config.token_label);
    token_ = module_->token_info(slot_);
    std::size_t cap = config.max_sessions;
    if (token_.max_sessions != CK_EFFECTIVELY_INFINITE && token_.max_sessions != CK_UNAVAILABLE_INFORMATION)
      cap = std::min<std::size_t>(cap, token_.max_sessions > 1 ? token_.max_sessions - 1 : 1);
    max_leased_ = std::max<std::size_t>(cap, 1);
    connect();
  }

  ~Pkcs11Hsm() override {
    const std::lock_guard lock(mutex_);
    idle_.clear();
    login_.reset();
    anchor_.reset();
  }

  const p11::TokenInfo& token() const noexcept override { return token_; }

  HsmKeyInfo generate_ca_key(CaCurve curve, const std::string& label) override {
    return with_session([&](const p11::Session& s) {
      const Bytes params = ec_params_der(curve);
      CK_MECHANISM mech{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
      std::vector<Attr> pub{{CKA_TOKEN, true}, {CKA_PRIVATE, false}, {CKA_VERIFY, true},
                            {CKA_ENCRYPT, false}, {CKA_WRAP, false}, {CKA_DERIVE, false},
                            {CKA_LABEL, label}, {CKA_EC_PARAMS, ByteView(params)}};
      std::vector<Attr> priv{{CKA_TOKEN, true},     {CKA_PRIVATE, true},  {CKA_SENSITIVE, true},
                             {CKA_EXTRACTABLE, false}, {CKA_SIGN, true},  {CKA_SIGN_RECOVER, false},
                             {CKA_DECRYPT, false},  {CKA_UNWRAP, false},  {CKA_DERIVE, false},
                             {CKA_LABEL, label}};
      auto pub_t = p11::raw_template(pub);
      auto priv_t = p11::raw_template(priv);
      CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE, hpriv = CK_INVALID_HANDLE;
      P11_CALL(s.fl(), C_GenerateKeyPair, s.handle(), &mech, pub_t.data(), pub_t.size(), priv_t.data(),
               priv_t.size(), &hpub, &hpriv);
      try {
        HsmKeyInfo info;
        info.curve = curve;
        info.label = label;
        info.spki_der = ec_point_to_spki(curve, s.get_attribute(hpub, CKA_EC_POINT));
        info.key_id = sha256_hex(info.spki_der);
        const Bytes id = *hex_decode(info.key_id);
        s.set_attribute(hpub, CKA_ID, id);
        s.set_attribute(hpriv, CKA_ID, id);
        remember(info.key_id, hpriv, info);
        return info;
      } catch (...) {
        // Leave nothing half-made: a key pair without its id would be an orphan.
        s.fl()->C_DestroyObject(s.handle(), hpriv);
        s.fl()->C_DestroyObject(s.handle(), hpub);
        throw;
      }
    });
  }

  std::optional<HsmKeyInfo> find_key(const std::string& key_id) override {
    {
      const std::lock_guard lock(mutex_);
      if (auto it = keys_.find(key_id); it != keys_.end()) return it->second.info;
    }
    return with_session([&](const p11::Session& s) -> std::optional<HsmKeyInfo> {
      const auto located = locate(s, key_id);
      if (!located) return std::nullopt;
      return located->info;
    });
  }

  KeyAttributes key_attributes(const std::string& key_id) override {
    return with_session([&](const p11::Session& s) {
      const auto h = handle_of(s, key_id);
      KeyAttributes a;
      a.token = s.get_bool(h, CKA_TOKEN);
      a.is_private = s.get_bool(h, CKA_PRIVATE);
      a.sensitive = s.get_bool(h, CKA_SENSITIVE);
      a.always_sensitive = s.get_bool(h, CKA_ALWAYS_SENSITIVE);
      a.extractable = s.get_bool(h, CKA_EXTRACTABLE);
      a.never_extractable = s.get_bool(h, CKA_NEVER_EXTRACTABLE);
      a.local = s.get_bool(h, CKA_LOCAL);
      a.sign = s.get_bool(h, CKA_SIGN);
      a.decrypt = s.get_bool(h, CKA_DECRYPT);
      a.unwrap = s.get_bool(h, CKA_UNWRAP);
      a.derive = s.get_bool(h, CKA_DERIVE);
      return a;
    });
  }

  Bytes sign_digest(const std::string& key_id, ByteView digest) override {
    return with_session([&](const p11::Session& s) {
      const auto h = handle_of(s, key_id);
      CK_MECHANISM mech{CKM_ECDSA, nullptr, 0};
      P11_CALL(s.fl(), C_SignInit, s.handle(), &mech, h);
      unsigned char raw[2 * 66];  // big enough for P-521's r||s
      CK_ULONG len = sizeof raw;
      P11_CALL(s.fl(), C_Sign, s.handle(), const_cast<CK_BYTE*>(digest.data()), digest.size(), raw, &len);
      return ecdsa_raw_to_der(ByteView(raw, len));
    });
  }

  std::string generate_secrets_key(const std::string& label) override {
    Bytes id(16);
    system_random_fill(id);
    with_session([&](const p11::Session& s) {
      CK_MECHANISM mech{CKM_AES_KEY_GEN, nullptr, 0};
      std::vector<Attr> t{{CKA_CLASS, CK_ULONG{CKO_SECRET_KEY}}, {CKA_KEY_TYPE, CK_ULONG{CKK_AES}},
                          {CKA_VALUE_LEN, CK_ULONG{32}},    {CKA_TOKEN, true},
                          {CKA_PRIVATE, true},              {CKA_SENSITIVE, true},
                          {CKA_EXTRACTABLE, false},         {CKA_ENCRYPT, true},
                          {CKA_DECRYPT, true},              {CKA_WRAP, false},
                          {CKA_UNWRAP, false},              {CKA_SIGN, false},
                          {CKA_VERIFY, false},              {CKA_DERIVE, false},
                          {CKA_LABEL, label},               {CKA_ID, ByteView(id)}};
      auto raw = p11::raw_template(t);
      CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
      P11_CALL(s.fl(), C_GenerateKey, s.handle(), &mech, raw.data(), raw.size(), &h);
      return 0;
    });
    return hex_encode(id);
  }

  Bytes seal(const std::string& key_id, ByteView plaintext, ByteView aad) override {
    Bytes iv(12);
    system_random_fill(iv);
    return with_session([&](const p11::Session& s) {
      const auto h = secret_handle(s, key_id);
      CK_GCM_PARAMS params{iv.data(), iv.size(), 96, const_cast<CK_BYTE*>(aad.data()), aad.size(), 128};
      CK_MECHANISM mech{CKM_AES_GCM, &params, sizeof params};
      P11_CALL(s.fl(), C_EncryptInit, s.handle(), &mech, h);
      Bytes out(iv.size() + plaintext.size() + 16);
      std::copy(iv.begin(), iv.end(), out.begin());
      CK_ULONG len = out.size() - iv.size();
      P11_CALL(s.fl(), C_Encrypt, s.handle(), const_cast<CK_BYTE*>(plaintext.data()), plaintext.size(),
               out.data() + iv.size(), &len);
      out.resize(iv.size() + len);
      return out;
    });
  }

  SecretBytes unseal(const std::string& key_id, ByteView sealed, ByteView aad) override {
    if (sealed.size() < 12 + 16) throw Error(Errc::tampered, "sealed secret is too short");
    return with_session([&](const p11::Session& s) {
      const auto h = secret_handle(s, key_id);
      CK_GCM_PARAMS params{const_cast<CK_BYTE*>(sealed.data()), 12, 96, const_cast<CK_BYTE*>(aad.data()), aad.size(), 128};
      CK_MECHANISM mech{CKM_AES_GCM, &params, sizeof params};
      P11_CALL(s.fl(), C_DecryptInit, s.handle(), &mech, h);
      SecretBytes out(Bytes(sealed.size()));
      CK_ULONG len = out.size();
      const CK_RV rv = s.fl()->C_Decrypt(s.handle(), const_cast<CK_BYTE*>(sealed.data()) + 12, sealed.size() - 12,
                                         out.data(), &len);
      // A failed GCM tag check: CKR_ENCRYPTED_DATA_INVALID by the standard; SoftHSM2 2.6
      // answers CKR_GENERAL_ERROR.
      if (rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_FUNCTION_FAILED || rv == CKR_ENCRYPTED_DATA_LEN_RANGE ||
          rv == CKR_GENERAL_ERROR)
        throw Error(Errc::tampered,
                    fmt::format("a sealed secret does not authenticate (changed, or bound to another record; {})",
                                p11::rv_name(rv)),
                    static_cast<std::int64_t>(rv));
      p11::check("C_Decrypt", rv);
      Bytes plain(out.data(), out.data() + len);
      return SecretBytes(std::move(plain));
    });
  }

  void destroy_key(const std::string& key_id) override {
    with_session([&](const p11::Session& s) {
      const Bytes id = *hex_decode(key_id);
      p11::ObjectSearch search(s, {{CKA_ID, ByteView(id)}});
      const auto objects = search.all();
      for (const auto h : objects) P11_CALL(s.fl(), C_DestroyObject, s.handle(), h);
      const std::lock_guard lock(mutex_);
      keys_.erase(key_id);
      return 0;
    });
  }

 private:
  struct CachedKey {
    CK_OBJECT_HANDLE private_handle = CK_INVALID_HANDLE;
    HsmKeyInfo info;
  };

  // A session taken from the pool; returned on destruction unless the pool reconnected.
  class Lease {
   public:
    Lease(Pkcs11Hsm& hsm, p11::Session s, std::uint64_t generation)
        : hsm_(hsm), session_(std::move(s)), generation_(generation) {}
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { hsm_.release(std::move(session_), discard_ ? ~std::uint64_t{0} : generation_); }
    const p11::Session& session() const noexcept { return session_; }
    // After a failed operation the session's state is unknown (an operation may still be
    // active): close it instead of returning it to the pool.
    void discard() noexcept { discard_ = true; }

   private:
    Pkcs11Hsm& hsm_;
    p11::Session session_;
    std::uint64_t generation_;
    bool discard_ = false;
  };

  // The anchor session carries the login (a login ends when the application's last session
  // closes), so leased sessions can come and go.
  void connect() {
    anchor_.emplace(module_, slot_, true);
    login_.emplace(*anchor_, CKU_USER, pin_);
  }

  // The token or session went away: reopen and log in again, once per failed operation.
  void reconnect(std::uint64_t seen_generation) {
    std::unique_lock lock(mutex_);
    if (generation_ != seen_generation) return;  // another thread already did it
    spdlog::warn("HSM token '{}': sessions lost; reopening and logging in again", token_.label);
    idle_.clear();
    keys_.clear();
    secret_keys_.clear();
    login_.reset();
    anchor_.reset();
    slot_ = module_->find_token(config_.token_label);  // the slot id may change on re-insertion
    connect();
    ++generation_;
  }

  Lease acquire() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return !idle_.empty() || leased_ < max_leased_; });
    const auto gen = generation_;
    ++leased_;
    if (!idle_.empty()) {
      p11::Session s = std::move(idle_.back());
      idle_.pop_back();
      return Lease(*this, std::move(s), gen);
    }
    lock.unlock();
    try {
      return Lease(*this, p11::Session(module_, slot_, true), gen);
    } catch (...) {
      lock.lock();
      --leased_;
      cv_.notify_one();
      throw;
    }
  }

  void release(p11::Session s, std::uint64_t generation) noexcept {
    const std::lock_guard lock(mutex_);
    --leased_;
    if (generation == generation_ && s.handle() != CK_INVALID_HANDLE) idle_.push_back(std::move(s));
    cv_.notify_one();
  }

  std::uint64_t generation() {
    const std::lock_guard lock(mutex_);
    return generation_;
  }

  template <class F>
  auto with_session(F&& fn) -> std::invoke_result_t<F&, const p11::Session&> {
    bool reconnected = false, refreshed = false, rerun = false;
    for (;;) {
      const std::uint64_t gen = generation();
      try {
        Lease lease = acquire();
        try {
          return fn(lease.session());
        } catch (...) {
          lease.discard();
          throw;
        }
      } catch (const Error& e) {
        const auto rv = static_cast<CK_RV>(e.native());
        // Another thread reconnected while this operation ran on a session of the old login:
        // its logout fails operations in flight with whatever the token says then
        // (CKR_USER_NOT_LOGGED_IN, CKR_GENERAL_ERROR from SoftHSM2, ...). Run it once more
        // on the new login. (reconnect() holds the mutex throughout, so a failure it caused
        // always sees the new generation here.)
        if (!rerun && generation() != gen) {
          rerun = true;
          continue;
        }
        // A login lost underneath (another application logged the token out) is repaired by
        // the same reconnect as a lost session.
        const bool lost = (e.code() == Errc::hsm_unavailable && p11::rv_means_reconnect(rv)) ||
                          rv == CKR_USER_NOT_LOGGED_IN;
        if (!reconnected && lost) {
          reconnected = true;
          reconnect(gen);
          continue;
        }
        // A key handle cached from before a reconnect (another thread may have looked the
        // key up on a session of the old login and cached it after the reconnect cleared the
        // cache), or a token changed underneath: look the keys up again, once.
        if (!refreshed && (rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID)) {
          refreshed = true;
          forget_handles();
          continue;
        }
        throw;
      }
    }
  }

  void forget_handles() {
    const std::lock_guard lock(mutex_);
    keys_.clear();
    secret_keys_.clear();
  }

  void remember(const std::string& key_id, CK_OBJECT_HANDLE h, const HsmKeyInfo& info) {
    const std::lock_guard lock(mutex_);
    keys_[key_id] = CachedKey{h, info};
  }

  std::optional<CachedKey> locate(const p11::Session& s, const std::string& key_id) {
    const auto id = hex_decode(key_id);
    if (!id || id->size() != 32) throw Error(Errc::invalid_argument, "not a key_id (64 hex digits): " + key_id);
    CK_OBJECT_HANDLE priv = CK_INVALID_HANDLE, pub = CK_INVALID_HANDLE;
    {
      p11::ObjectSearch search(s, {{CKA_CLASS, CK_ULONG{CKO_PRIVATE_KEY}}, {CKA_ID, ByteView(*id)}});
      const auto found = search.next(2);
      search.finish();
      if (found.empty()) return std::nullopt;
      if (found.size() > 1) throw Error(Errc::hsm_error, "two private keys on the token carry the id " + key_id);
      priv = found[0];
    }
    {
      p11::ObjectSearch search(s, {{CKA_CLASS, CK_ULONG{CKO_PUBLIC_KEY}}, {CKA_ID, ByteView(*id)}});
      const auto found = search.next(1);
      search.finish();
      if (found.empty()) throw Error(Errc::hsm_error, "the public key object of key " + key_id + " is missing");
      pub = found[0];
    }
    CachedKey key;
    key.private_handle = priv;
    const Bytes params = s.get_attribute(pub, CKA_EC_PARAMS);
    key.info.curve = params == ec_params_der(CaCurve::p256) ? CaCurve::p256 : CaCurve::p384;
    if (params != ec_params_der(key.info.curve)) throw Error(Errc::hsm_error, "key " + key_id + " is on an unsupported curve");
    const Bytes label = s.get_attribute(priv, CKA_LABEL);
    key.info.label.assign(label.begin(), label.end());
    key.info.spki_der = ec_point_to_spki(key.info.curve, s.get_attribute(pub, CKA_EC_POINT));
    key.info.key_id = sha256_hex(key.info.spki_der);
    if (key.info.key_id != key_id)
      throw Error(Errc::tampered, "token key with id " + key_id + " has a different public key (" + key.info.key_id + ")");
    remember(key_id, priv, key.info);
    return key;
  }

  CK_OBJECT_HANDLE secret_handle(const p11::Session& s, const std::string& key_id) {
    {
      const std::lock_guard lock(mutex_);
      if (auto it = secret_keys_.find(key_id); it != secret_keys_.end()) return it->second;
    }
    const auto id = hex_decode(key_id);
    if (!id) throw Error(Errc::invalid_argument, "not a secrets key id: " + key_id);
    p11::ObjectSearch search(s, {{CKA_CLASS, CK_ULONG{CKO_SECRET_KEY}}, {CKA_ID, ByteView(*id)}});
    const auto found = search.next(1);
    search.finish();
    if (found.empty())
      throw Error(Errc::not_found, fmt::format("secrets key {} is not on token '{}'", key_id, token_.label));
    const std::lock_guard lock(mutex_);
    secret_keys_[key_id] = found[0];
    return found[0];
  }

  CK_OBJECT_HANDLE handle_of(const p11::Session& s, const std::string& key_id) {
    {
      const std::lock_guard lock(mutex_);
      if (auto it = keys_.find(key_id); it != keys_.end()) return it->second.private_handle;
    }
    const auto key = locate(s, key_id);
    if (!key)
      throw Error(Errc::not_found, fmt::format("key {} is not on token '{}'; was the token replaced or the key destroyed?",
                                               key_id, token_.label));
    return key->private_handle;
  }

  HsmConfig config_;
  SecretString pin_;  // kept (wiped on destruction) only to log in again after a reconnect
  std::shared_ptr<p11::Module> module_;
  CK_SLOT_ID slot_ = 0;
  p11::TokenInfo token_;
  std::size_t max_leased_ = 1;

  std::mutex mutex_;
  std::condition_variable cv_;
  std::optional<p11::Session> anchor_;
  std::optional<p11::Login> login_;
  std::vector<p11::Session> idle_;
  std::size_t leased_ = 0;
  std::uint64_t generation_ = 0;
  std::map<std::string, CachedKey> keys_;
  std::map<std::string, CK_OBJECT_HANDLE> secret_keys_;
};

}  // namespace

std::unique_ptr<Hsm> Hsm::open(const HsmConfig& config) { return std::make_unique<Pkcs11Hsm>(config); }

}  // namespace station::pki
