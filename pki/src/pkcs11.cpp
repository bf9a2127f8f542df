#include "pki/pkcs11.hpp"

#include <dlfcn.h>
#include <p11-kit/p11-kit.h>
#include <spdlog/spdlog.h>

#include <cstring>
#include <map>
#include <mutex>

#include <fmt/format.h>

namespace station::pki::p11 {

std::string rv_name(CK_RV rv) {
  switch (rv) {
#define RV(x) \
  case x: return #x;
    RV(CKR_OK)
    RV(CKR_CANCEL)
    RV(CKR_HOST_MEMORY)
    RV(CKR_SLOT_ID_INVALID)
    RV(CKR_GENERAL_ERROR)
    RV(CKR_FUNCTION_FAILED)
    RV(CKR_ARGUMENTS_BAD)
    RV(CKR_ATTRIBUTE_READ_ONLY)
    RV(CKR_ATTRIBUTE_SENSITIVE)
    RV(CKR_ATTRIBUTE_TYPE_INVALID)
    RV(CKR_ATTRIBUTE_VALUE_INVALID)
    RV(CKR_DATA_INVALID)
    RV(CKR_DATA_LEN_RANGE)
    RV(CKR_DEVICE_ERROR)
    RV(CKR_DEVICE_MEMORY)
    RV(CKR_DEVICE_REMOVED)
    RV(CKR_FUNCTION_CANCELED)
    RV(CKR_FUNCTION_NOT_SUPPORTED)
    RV(CKR_KEY_HANDLE_INVALID)
    RV(CKR_KEY_TYPE_INCONSISTENT)
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED)
    RV(CKR_MECHANISM_INVALID)
    RV(CKR_MECHANISM_PARAM_INVALID)
    RV(CKR_OBJECT_HANDLE_INVALID)
    RV(CKR_OPERATION_ACTIVE)
    RV(CKR_OPERATION_NOT_INITIALIZED)
    RV(CKR_PIN_INCORRECT)
    RV(CKR_PIN_INVALID)
    RV(CKR_PIN_LEN_RANGE)
    RV(CKR_PIN_EXPIRED)
    RV(CKR_PIN_LOCKED)
    RV(CKR_SESSION_CLOSED)
    RV(CKR_SESSION_COUNT)
    RV(CKR_SESSION_HANDLE_INVALID)
    RV(CKR_SESSION_READ_ONLY)
    RV(CKR_SESSION_EXISTS)
    RV(CKR_SIGNATURE_INVALID)
    RV(CKR_SIGNATURE_LEN_RANGE)
    RV(CKR_TEMPLATE_INCOMPLETE)
    RV(CKR_TEMPLATE_INCONSISTENT)
    RV(CKR_TOKEN_NOT_PRESENT)
    RV(CKR_TOKEN_NOT_RECOGNIZED)
    RV(CKR_TOKEN_WRITE_PROTECTED)
    RV(CKR_USER_ALREADY_LOGGED_IN)
    RV(CKR_USER_NOT_LOGGED_IN)
    RV(CKR_USER_PIN_NOT_INITIALIZED)
    RV(CKR_USER_TYPE_INVALID)
    RV(CKR_USER_ANOTHER_ALREADY_LOGGED_IN)
    RV(CKR_USER_TOO_MANY_TYPES)
    RV(CKR_RANDOM_NO_RNG)
    RV(CKR_BUFFER_TOO_SMALL)
    RV(CKR_CRYPTOKI_NOT_INITIALIZED)
    RV(CKR_CRYPTOKI_ALREADY_INITIALIZED)
    RV(CKR_CURVE_NOT_SUPPORTED)
#undef RV
    default: return fmt::format("CKR_0x{:08x}", rv);
  }
}

Errc rv_errc(CK_RV rv) noexcept {
  switch (rv) {
    case CKR_OK: return Errc::ok;
    case CKR_PIN_INCORRECT:
    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE: return Errc::hsm_pin_incorrect;
    case CKR_PIN_LOCKED:
    case CKR_PIN_EXPIRED: return Errc::hsm_pin_locked;
    case CKR_DEVICE_REMOVED:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_TOKEN_NOT_RECOGNIZED:
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
    case CKR_SLOT_ID_INVALID:
    case CKR_CRYPTOKI_NOT_INITIALIZED: return Errc::hsm_unavailable;
    case CKR_SESSION_COUNT: return Errc::busy;
    default: return Errc::hsm_error;
  }
}

bool rv_means_reconnect(CK_RV rv) noexcept {
  return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT ||
         rv == CKR_SESSION_CLOSED;
}

CK_RV check(const char* call, CK_RV rv, std::initializer_list<CK_RV> accepted) {
  spdlog::debug("pkcs11 {} -> {}", call, rv_name(rv));
  if (rv == CKR_OK) return rv;
  for (const auto a : accepted)
    if (rv == a) return rv;
  throw Error(rv_errc(rv), fmt::format("PKCS#11 {} failed: {}", call, rv_name(rv)), static_cast<std::int64_t>(rv));
}

std::string trim_field(const unsigned char* field, std::size_t size) {
  std::string s(reinterpret_cast<const char*>(field), size);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

// ---------------------------------------------------------------------------------------
// Module

namespace {

// Resolves a p11-kit module name ("softhsm2") to its shared object path.
std::string resolve_module_name(const std::string& name) {
  CK_FUNCTION_LIST** modules = ::p11_kit_modules_load(nullptr, P11_KIT_MODULE_UNMANAGED);
  if (modules == nullptr) {
    throw Error(Errc::hsm_unavailable,
                fmt::format("PKCS#11 module '{}': p11-kit could not list its modules: {}", name,
                            ::p11_kit_message() != nullptr ? ::p11_kit_message() : "unknown error"));
  }
  std::string found;
  std::vector<std::string> names;
  for (CK_FUNCTION_LIST** m = modules; *m != nullptr; ++m) {
    char* n = ::p11_kit_module_get_name(*m);
    char* f = ::p11_kit_module_get_filename(*m);
    if (n != nullptr) {
      names.emplace_back(n);
      if (name == n && f != nullptr) found = f;
    }
    ::free(n);
    ::free(f);
  }
  ::p11_kit_modules_release(modules);
  if (found.empty()) {
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
    throw Error(Errc::hsm_unavailable, fmt::format("PKCS#11 module '{}' is not registered with p11-kit (known: {}); "
                                                   "give the module's path instead",
                                                   name, list.empty() ? "none" : list));
  }
  return found;
}

// Modules already loaded in this process, so two users of one module share one
// C_Initialize (a second C_Initialize would fail with CKR_CRYPTOKI_ALREADY_INITIALIZED).
std::mutex g_modules_mutex;
std::map<std::string, std::weak_ptr<Module>>& loaded_modules() {
  static std::map<std::string, std::weak_ptr<Module>> modules;
  return modules;
}

}  // namespace

std::shared_ptr<Module> Module::load(const std::string& path_or_name) {
  if (path_or_name.empty()) throw Error(Errc::config_error, "no PKCS#11 module configured (hsm.module)");
  const std::string path =
      path_or_name.find('/') != std::string::npos ? path_or_name : resolve_module_name(path_or_name);

  const std::lock_guard lock(g_modules_mutex);
  if (auto existing = loaded_modules()[path].lock()) return existing;

  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    throw Error(Errc::hsm_unavailable, fmt::format("cannot load PKCS#11 module {}: {}; check hsm.module in the "
                                                   "config (is the package installed?)",
                                                   path, why != nullptr ? why : "unknown error"));
  }
  auto* get_list = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(handle, "C_GetFunctionList"));
  if (get_list == nullptr) {
    ::dlclose(handle);
    throw Error(Errc::hsm_unavailable, fmt::format("{} is not a PKCS#11 module (no C_GetFunctionList)", path));
  }
  CK_FUNCTION_LIST* fl = nullptr;
  try {
    check("C_GetFunctionList", get_list(&fl));
    CK_C_INITIALIZE_ARGS args{};
    args.flags = CKF_OS_LOCKING_OK;
    const CK_RV rv = P11_CALL_ACCEPT({CKR_CRYPTOKI_ALREADY_INITIALIZED}, fl, C_Initialize, &args);
    std::shared_ptr<Module> module(new Module(path, handle, fl, rv == CKR_OK));
    loaded_modules()[path] = module;
    return module;
  } catch (const Error& e) {
    ::dlclose(handle);
    throw Error(e.code(), fmt::format("PKCS#11 module {}: {}", path, e.what()), e.native());
  }
}

Module::Module(std::string path, void* handle, CK_FUNCTION_LIST* fl, bool finalize)
    : path_(std::move(path)), handle_(handle), fl_(fl), finalize_(finalize) {}

Module::~Module() {
  if (finalize_) {
    const CK_RV rv = fl_->C_Finalize(nullptr);
    if (rv != CKR_OK) spdlog::warn("PKCS#11 C_Finalize of {} failed: {}", path_, rv_name(rv));
  }
  ::dlclose(handle_);
}

std::vector<CK_SLOT_ID> Module::slots(bool with_token_only) const {
  const CK_BBOOL present = with_token_only ? CK_TRUE : CK_FALSE;
  for (int attempt = 0; attempt < 3; ++attempt) {
    CK_ULONG count = 0;
    P11_CALL(fl_, C_GetSlotList, present, nullptr, &count);
    std::vector<CK_SLOT_ID> slots(count);
    if (count == 0) return slots;
    const CK_RV rv = P11_CALL_ACCEPT({CKR_BUFFER_TOO_SMALL}, fl_, C_GetSlotList, present, slots.data(), &count);
    if (rv == CKR_OK) {
      slots.resize(count);
      return slots;
    }
  }
  throw Error(Errc::hsm_error, "PKCS#11 C_GetSlotList: the slot list kept changing");
}

TokenInfo Module::token_info(CK_SLOT_ID slot) const {
  CK_TOKEN_INFO raw{};
  P11_CALL(fl_, C_GetTokenInfo, slot, &raw);
  TokenInfo info;
  info.slot = slot;
  info.label = trim_field(raw.label, sizeof raw.label);
  info.manufacturer = trim_field(raw.manufacturerID, sizeof raw.manufacturerID);
  info.model = trim_field(raw.model, sizeof raw.model);
  info.serial = trim_field(raw.serialNumber, sizeof raw.serialNumber);
  info.flags = raw.flags;
  info.max_sessions = raw.ulMaxSessionCount;
  info.max_rw_sessions = raw.ulMaxRwSessionCount;
  return info;
}

CK_SLOT_ID Module::find_token(const std::string& label) const {
  std::vector<std::string> labels;
  for (const auto slot : slots(true)) {
    const auto info = token_info(slot);
    if (!info.initialized()) continue;
    if (info.label == label) return slot;
    labels.push_back(info.label);
  }
  std::string known;
  for (const auto& l : labels) known += (known.empty() ? "'" : ", '") + l + "'";
  throw Error(Errc::hsm_unavailable,
              fmt::format("no token labelled '{}' in PKCS#11 module {} (tokens present: {}); check hsm.token_label "
                          "and that the HSM is connected",
                          label, path_, known.empty() ? "none" : known));
}

std::optional<CK_SLOT_ID> Module::find_free_slot() const {
  for (const auto slot : slots(true))
    if (!token_info(slot).initialized()) return slot;
  return std::nullopt;
}

CK_SLOT_ID Module::init_token(CK_SLOT_ID slot, const std::string& label, const SecretString& so_pin,
                              const SecretString& user_pin) {
  if (label.size() > 32) throw Error(Errc::invalid_argument, "token label longer than 32 characters: " + label);
  unsigned char padded[32];
  std::memset(padded, ' ', sizeof padded);
  std::memcpy(padded, label.data(), label.size());
  auto* so = reinterpret_cast<CK_UTF8CHAR*>(const_cast<char*>(so_pin.str().data()));
  P11_CALL(fl_, C_InitToken, slot, so, so_pin.size(), padded);
  // SoftHSM2 gives an initialised token a new slot id: look it up again by label.
  const CK_SLOT_ID token_slot = find_token(label);
  const Session session(shared_from_this(), token_slot, true);
  {
    const Login login(session, CKU_SO, so_pin);
    auto* user = reinterpret_cast<CK_UTF8CHAR*>(const_cast<char*>(user_pin.str().data()));
    P11_CALL(fl_, C_InitPIN, session.handle(), user, user_pin.size());
  }
  return token_slot;
}

// ---------------------------------------------------------------------------------------
// Session

Session::Session(std::shared_ptr<Module> module, CK_SLOT_ID slot, bool read_write)
    : module_(std::move(module)), slot_(slot) {
  CK_FLAGS flags = CKF_SERIAL_SESSION;
  if (read_write) flags |= CKF_RW_SESSION;
  P11_CALL(module_->fl(), C_OpenSession, slot, flags, nullptr, nullptr, &handle_);
}

Session::Session(Session&& other) noexcept
    : module_(std::move(other.module_)), slot_(other.slot_), handle_(other.handle_) {
  other.handle_ = CK_INVALID_HANDLE;
}

Session& Session::operator=(Session&& other) noexcept {
  if (this != &other) {
    close();
    module_ = std::move(other.module_);
    slot_ = other.slot_;
    handle_ = other.handle_;
    other.handle_ = CK_INVALID_HANDLE;
  }
  return *this;
}

Session::~Session() { close(); }

void Session::close() noexcept {
  if (handle_ == CK_INVALID_HANDLE || !module_) return;
  const CK_RV rv = module_->fl()->C_CloseSession(handle_);
  spdlog::debug("pkcs11 C_CloseSession -> {}", rv_name(rv));
  if (rv != CKR_OK && rv != CKR_SESSION_HANDLE_INVALID && rv != CKR_DEVICE_REMOVED)
    spdlog::warn("PKCS#11 C_CloseSession failed: {}", rv_name(rv));
  handle_ = CK_INVALID_HANDLE;
}

Bytes Session::get_attribute(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) const {
  CK_ATTRIBUTE attr{type, nullptr, 0};
  P11_CALL(fl(), C_GetAttributeValue, handle_, object, &attr, 1);
  if (attr.ulValueLen == CK_UNAVAILABLE_INFORMATION)
    throw Error(Errc::hsm_error, fmt::format("PKCS#11 attribute 0x{:x} is unavailable", type));
  Bytes value(attr.ulValueLen);
  attr.pValue = value.data();
  P11_CALL(fl(), C_GetAttributeValue, handle_, object, &attr, 1);
  value.resize(attr.ulValueLen);
  return value;
}

bool Session::get_bool(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) const {
  CK_BBOOL value = CK_FALSE;
  CK_ATTRIBUTE attr{type, &value, sizeof value};
  P11_CALL(fl(), C_GetAttributeValue, handle_, object, &attr, 1);
  return value == CK_TRUE;
}

void Session::set_attribute(CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type, ByteView value) const {
  Bytes copy(value.begin(), value.end());
  CK_ATTRIBUTE attr{type, copy.data(), copy.size()};
  P11_CALL(fl(), C_SetAttributeValue, handle_, object, &attr, 1);
}

// ---------------------------------------------------------------------------------------
// Login

Login::Login(const Session& session, CK_USER_TYPE user, const SecretString& pin)
    : fl_(session.fl()), session_(session.handle()), module_(session.module()) {
  const auto info = session.module()->token_info(session.slot());
  const bool so = user == CKU_SO;
  const CK_FLAGS locked = so ? CKF_SO_PIN_LOCKED : CKF_USER_PIN_LOCKED;
  const CK_FLAGS final_try = so ? CKF_SO_PIN_FINAL_TRY : CKF_USER_PIN_FINAL_TRY;
  const char* who = so ? "security officer" : "user";
  if ((info.flags & locked) != 0) {
    throw Error(Errc::hsm_pin_locked,
                fmt::format("token '{}': the {} PIN is locked; the token's security officer must unlock it "
                            "before the station can log in",
                            info.label, who));
  }
  if ((info.flags & final_try) != 0) {
    throw Error(Errc::hsm_pin_locked,
                fmt::format("token '{}': one more wrong {} PIN would lock the token, so the station will not try; "
                            "confirm the PIN out of band and log in once with the token's own tools to reset the counter",
                            info.label, who));
  }
  if (!so && (info.flags & CKF_USER_PIN_INITIALIZED) == 0) {
    throw Error(Errc::hsm_error,
                fmt::format("token '{}': the user PIN is not initialised; initialise the token first", info.label));
  }
  auto* p = reinterpret_cast<CK_UTF8CHAR*>(const_cast<char*>(pin.str().data()));
  // Exactly one C_Login: a rejected PIN is never retried (a real token locks).
  try {
    P11_CALL_ACCEPT({CKR_USER_ALREADY_LOGGED_IN}, fl_, C_Login, session_, user, p, pin.size());
  } catch (const Error& e) {
    if (e.code() == Errc::hsm_pin_incorrect) {
      throw Error(Errc::hsm_pin_incorrect,
                  fmt::format("token '{}': the HSM rejected the {} PIN ({}); not retrying, since a real token locks "
                              "after a few wrong tries; check the PIN file or variable named in hsm.pin",
                              info.label, who, rv_name(static_cast<CK_RV>(e.native()))),
                  e.native());
    }
    throw;
  }
}

Login::Login(Login&& other) noexcept
    : fl_(other.fl_), session_(other.session_), module_(std::move(other.module_)) {
  other.session_ = CK_INVALID_HANDLE;
}

Login::~Login() {
  if (session_ == CK_INVALID_HANDLE) return;
  const CK_RV rv = fl_->C_Logout(session_);
  spdlog::debug("pkcs11 C_Logout -> {}", rv_name(rv));
}

// ---------------------------------------------------------------------------------------
// Attributes and object search

Attr::Attr(CK_ATTRIBUTE_TYPE type, CK_ULONG value) : type_(type), value_(sizeof value) {
  std::memcpy(value_.data(), &value, sizeof value);
}

std::vector<CK_ATTRIBUTE> raw_template(std::vector<Attr>& attrs) {
  std::vector<CK_ATTRIBUTE> out;
  out.reserve(attrs.size());
  for (auto& a : attrs) out.push_back(a.raw());
  return out;
}

ObjectSearch::ObjectSearch(const Session& session, std::vector<Attr> match) : session_(session) {
  auto tmpl = raw_template(match);
  P11_CALL(session_.fl(), C_FindObjectsInit, session_.handle(), tmpl.data(), tmpl.size());
  active_ = true;
}

ObjectSearch::~ObjectSearch() {
  if (!active_) return;
  const CK_RV rv = session_.fl()->C_FindObjectsFinal(session_.handle());
  spdlog::debug("pkcs11 C_FindObjectsFinal -> {}", rv_name(rv));
}

std::vector<CK_OBJECT_HANDLE> ObjectSearch::next(CK_ULONG max) {
  std::vector<CK_OBJECT_HANDLE> handles(max);
  CK_ULONG count = 0;
  P11_CALL(session_.fl(), C_FindObjects, session_.handle(), handles.data(), max, &count);
  handles.resize(count);
  return handles;
}

std::vector<CK_OBJECT_HANDLE> ObjectSearch::all() {
  std::vector<CK_OBJECT_HANDLE> out;
  for (;;) {
    auto batch = next();
    if (batch.empty()) break;
    out.insert(out.end(), batch.begin(), batch.end());
  }
  finish();
  return out;
}

void ObjectSearch::finish() {
  if (!active_) return;
  active_ = false;
  P11_CALL(session_.fl(), C_FindObjectsFinal, session_.handle());
}

}  // namespace station::pki::p11
