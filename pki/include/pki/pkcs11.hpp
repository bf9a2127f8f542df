// The PKCS#11 layer: owners for a module, sessions, a login and an object search, and
// the one checked wrapper that every C_* call goes through (pattern: Botan p11.cpp
// handle_return_value; pkcs11-provider interface.pre). Cryptoki v2.40 as shipped by
// p11-kit.
#pragma once

#include <p11-kit/pkcs11.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/bytes.hpp"
#include "common/error.hpp"
#include "common/secure.hpp"

namespace station::pki::p11 {

// "CKR_PIN_INCORRECT" for CKR_PIN_INCORRECT; "CKR_0x..." for codes it does not know.
std::string rv_name(CK_RV rv);

// What a CK_RV means for the station (which Errc it maps to).
Errc rv_errc(CK_RV rv) noexcept;

// True for the return values after which the pool reopens its sessions and logs in again
// once: the session or the token went away (not a rejected PIN).
bool rv_means_reconnect(CK_RV rv) noexcept;

// The one checked wrapper. Logs the call at debug level; returns rv when it is CKR_OK or
// one of `accepted`; otherwise throws Error(rv_errc(rv), "PKCS#11 <call> failed: <name>", rv).
CK_RV check(const char* call, CK_RV rv, std::initializer_list<CK_RV> accepted = {});

// Every call site: P11_CALL(fl, C_Sign, session, ...) or P11_CALL_ACCEPT(...).
#define P11_CALL(fl, fn, ...) ::station::pki::p11::check(#fn, (fl)->fn(__VA_ARGS__))
#define P11_CALL_ACCEPT(accepted, fl, fn, ...) ::station::pki::p11::check(#fn, (fl)->fn(__VA_ARGS__), accepted)

// Trims the blank padding of a fixed-width PKCS#11 string field.
std::string trim_field(const unsigned char* field, std::size_t size);

struct TokenInfo {
  CK_SLOT_ID slot = 0;
  std::string label;
  std::string manufacturer;
  std::string model;
  std::string serial;
  CK_FLAGS flags = 0;
  CK_ULONG max_sessions = 0;     // CK_EFFECTIVELY_INFINITE (0) or CK_UNAVAILABLE_INFORMATION possible
  CK_ULONG max_rw_sessions = 0;
  bool initialized() const noexcept { return (flags & CKF_TOKEN_INITIALIZED) != 0; }
};

// A loaded and initialised PKCS#11 module. C_Initialize with CKF_OS_LOCKING_OK (the layer
// is used from several threads; with NULL arguments SoftHSM2 runs without mutexes).
// Shared: sessions and pools keep the module alive.
class Module : public std::enable_shared_from_this<Module> {
 public:
  // `path_or_name`: a path (contains '/') to the module's shared object, or the name of a
  // module registered with p11-kit (e.g. "softhsm2"; see `p11-kit list-modules`).
  static std::shared_ptr<Module> load(const std::string& path_or_name);

  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  ~Module();

  CK_FUNCTION_LIST* fl() const noexcept { return fl_; }
  const std::string& path() const noexcept { return path_; }

  std::vector<CK_SLOT_ID> slots(bool with_token_only) const;
  TokenInfo token_info(CK_SLOT_ID slot) const;
  // The slot whose token carries `label`; Errc::hsm_unavailable naming the label if none.
  CK_SLOT_ID find_token(const std::string& label) const;
  // A slot with a token that is not yet initialised (SoftHSM2 always offers one).
  std::optional<CK_SLOT_ID> find_free_slot() const;
  // C_InitToken with the SO PIN, then C_InitPIN with the user PIN under an SO login.
  // Returns the slot the initialised token is in (SoftHSM2 moves it to a new slot id).
  CK_SLOT_ID init_token(CK_SLOT_ID slot, const std::string& label, const SecretString& so_pin,
                        const SecretString& user_pin);

 private:
  Module(std::string path, void* handle, CK_FUNCTION_LIST* fl, bool finalize);
  std::string path_;
  void* handle_ = nullptr;
  CK_FUNCTION_LIST* fl_ = nullptr;
  bool finalize_ = true;
};

// An open session. Move-only; C_CloseSession on destruction.
class Session {
 public:
  Session(std::shared_ptr<Module> module, CK_SLOT_ID slot, bool read_write = true);
  Session(Session&& other) noexcept;
  Session& operator=(Session&& other) noexcept;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session();

  CK_SESSION_HANDLE handle() const noexcept { return handle_; }
  CK_FUNCTION_LIST* fl() const noexcept { return module_->fl(); }
  CK_SLOT_ID slot() const noexcept { return slot_; }
  const std::shared_ptr<Module>& module() const noexcept { return module_; }

  // Attribute access on objects of this session.
  Bytes get_attribute(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) const;
  bool get_bool(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) const;
  void set_attribute(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type, ByteView value) const;

 private:
  void close() noexcept;
  std::shared_ptr<Module> module_;
  CK_SLOT_ID slot_ = 0;
  CK_SESSION_HANDLE handle_ = CK_INVALID_HANDLE;
};

// A login of the token (PKCS#11 logins are per application and token, not per session).
// Checks the token's PIN flags first and refuses when the PIN is locked or one more wrong
// try would lock it; calls C_Login exactly once and never retries a rejected PIN; treats
// CKR_USER_ALREADY_LOGGED_IN as success. C_Logout on destruction.
class Login {
 public:
  Login(const Session& session, CK_USER_TYPE user, const SecretString& pin);
  Login(Login&& other) noexcept;
  Login& operator=(Login&&) = delete;
  Login(const Login&) = delete;
  Login& operator=(const Login&) = delete;
  ~Login();

 private:
  CK_FUNCTION_LIST* fl_ = nullptr;
  CK_SESSION_HANDLE session_ = CK_INVALID_HANDLE;
  std::shared_ptr<Module> module_;
};

// An attribute template entry with owned storage.
class Attr {
 public:
  Attr(CK_ATTRIBUTE_TYPE type, bool value) : type_(type), value_{static_cast<std::uint8_t>(value ? CK_TRUE : CK_FALSE)} {}
  Attr(CK_ATTRIBUTE_TYPE type, CK_ULONG value);
  Attr(CK_ATTRIBUTE_TYPE type, ByteView value) : type_(type), value_(value.begin(), value.end()) {}
  Attr(CK_ATTRIBUTE_TYPE type, const std::string& value) : Attr(type, as_bytes(value)) {}
  CK_ATTRIBUTE raw() { return CK_ATTRIBUTE{type_, value_.data(), value_.size()}; }

 private:
  CK_ATTRIBUTE_TYPE type_;
  Bytes value_;
};
std::vector<CK_ATTRIBUTE> raw_template(std::vector<Attr>& attrs);

// C_FindObjectsInit .. C_FindObjectsFinal. Move-only; finalises on destruction.
class ObjectSearch {
 public:
  ObjectSearch(const Session& session, std::vector<Attr> match);
  ObjectSearch(const ObjectSearch&) = delete;
  ObjectSearch& operator=(const ObjectSearch&) = delete;
  ~ObjectSearch();
  std::vector<CK_OBJECT_HANDLE> next(CK_ULONG max = 16);
  // Reads every match and finalises the search (a failed C_FindObjectsFinal throws).
  std::vector<CK_OBJECT_HANDLE> all();
  // C_FindObjectsFinal, checked. The destructor finalises unchecked on error paths only.
  void finish();

 private:
  const Session& session_;
  bool active_ = false;
};

}  // namespace station::pki::p11
