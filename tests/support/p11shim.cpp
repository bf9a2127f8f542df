// A forwarding PKCS#11 module for tests: the station loads it like any module; it loads
// the real one (P11SHIM_MODULE, default SoftHSM2) and forwards every call, after
//  - appending "<C_Name>\n" to the file P11SHIM_LOG (when set), so tests count calls;
//  - failing the N-th forwarded call (P11SHIM_FAIL_AT=N, 1-based, counted across all
//    functions except C_GetFunctionList) with P11SHIM_FAIL_RV (hex, default CKR_DEVICE_ERROR),
//    or the N-th call of one function (P11SHIM_FAIL_CALL=C_Sign, with P11SHIM_FAIL_AT=N).
//  - failing every call (or every call of P11SHIM_FAIL_CALL) while the file named by
//    P11SHIM_FAIL_WHILE exists, with P11SHIM_FAIL_RV (default CKR_DEVICE_REMOVED): an HSM
//    unplugged and plugged back in, as a test decides.
// This is the fault injection by count that STYLE.md asks for, on the real HSM path.
#include <dlfcn.h>
#include <unistd.h>
#include <p11-kit/pkcs11.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

namespace {

CK_FUNCTION_LIST* g_real = nullptr;
CK_FUNCTION_LIST g_list{};
std::atomic<unsigned long> g_count{0};
std::mutex g_log_mutex;

bool load_real() {
  if (g_real != nullptr) return true;
  const char* path = std::getenv("P11SHIM_MODULE");
  void* h = ::dlopen(path != nullptr ? path : "/usr/lib/softhsm/libsofthsm2.so", RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) return false;
  auto* get = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(h, "C_GetFunctionList"));
  return get != nullptr && get(&g_real) == CKR_OK;
}

// Returns a failure code when this call is the one to fail, CKR_OK otherwise.
CK_RV before(const char* name) {
  if (const char* log = std::getenv("P11SHIM_LOG")) {
    const std::lock_guard lock(g_log_mutex);
    if (FILE* f = std::fopen(log, "a")) {
      std::fprintf(f, "%s\n", name);
      std::fclose(f);
    }
  }
  const char* only = std::getenv("P11SHIM_FAIL_CALL");
  if (const char* gate = std::getenv("P11SHIM_FAIL_WHILE")) {
    if ((only == nullptr || std::strcmp(only, name) == 0) && ::access(gate, F_OK) == 0) {
      const char* rv = std::getenv("P11SHIM_FAIL_RV");
      return rv != nullptr ? std::strtoul(rv, nullptr, 16) : CKR_DEVICE_REMOVED;
    }
  }
  const char* at = std::getenv("P11SHIM_FAIL_AT");
  if (at == nullptr) return CKR_OK;
  if (only != nullptr && std::strcmp(only, name) != 0) return CKR_OK;
  const unsigned long n = ++g_count;
  if (n != std::strtoul(at, nullptr, 10)) return CKR_OK;
  const char* rv = std::getenv("P11SHIM_FAIL_RV");
  return rv != nullptr ? std::strtoul(rv, nullptr, 16) : CKR_DEVICE_ERROR;
}

template <auto Member>
struct Fwd;

template <class... A, CK_RV (*CK_FUNCTION_LIST::*Member)(A...)>
struct Fwd<Member> {
  static inline const char* name = "?";
  static CK_RV call(A... args) {
    if (const CK_RV rv = before(name); rv != CKR_OK) return rv;
    return (g_real->*Member)(args...);
  }
};

#define SHIM(fn)                                      \
  Fwd<&CK_FUNCTION_LIST::fn>::name = #fn;             \
  g_list.fn = &Fwd<&CK_FUNCTION_LIST::fn>::call;

void build_list() {
  g_list.version = g_real->version;
  SHIM(C_Initialize) SHIM(C_Finalize) SHIM(C_GetInfo) SHIM(C_GetSlotList) SHIM(C_GetSlotInfo)
  SHIM(C_GetTokenInfo) SHIM(C_GetMechanismList) SHIM(C_GetMechanismInfo) SHIM(C_InitToken) SHIM(C_InitPIN)
  SHIM(C_SetPIN) SHIM(C_OpenSession) SHIM(C_CloseSession) SHIM(C_CloseAllSessions) SHIM(C_GetSessionInfo)
  SHIM(C_GetOperationState) SHIM(C_SetOperationState) SHIM(C_Login) SHIM(C_Logout) SHIM(C_CreateObject)
  SHIM(C_CopyObject) SHIM(C_DestroyObject) SHIM(C_GetObjectSize) SHIM(C_GetAttributeValue)
  SHIM(C_SetAttributeValue) SHIM(C_FindObjectsInit) SHIM(C_FindObjects) SHIM(C_FindObjectsFinal)
  SHIM(C_EncryptInit) SHIM(C_Encrypt) SHIM(C_EncryptUpdate) SHIM(C_EncryptFinal) SHIM(C_DecryptInit)
  SHIM(C_Decrypt) SHIM(C_DecryptUpdate) SHIM(C_DecryptFinal) SHIM(C_DigestInit) SHIM(C_Digest)
  SHIM(C_DigestUpdate) SHIM(C_DigestKey) SHIM(C_DigestFinal) SHIM(C_SignInit) SHIM(C_Sign) SHIM(C_SignUpdate)
  SHIM(C_SignFinal) SHIM(C_SignRecoverInit) SHIM(C_SignRecover) SHIM(C_VerifyInit) SHIM(C_Verify)
  SHIM(C_VerifyUpdate) SHIM(C_VerifyFinal) SHIM(C_VerifyRecoverInit) SHIM(C_VerifyRecover)
  SHIM(C_DigestEncryptUpdate) SHIM(C_DecryptDigestUpdate) SHIM(C_SignEncryptUpdate)
  SHIM(C_DecryptVerifyUpdate) SHIM(C_GenerateKey) SHIM(C_GenerateKeyPair) SHIM(C_WrapKey) SHIM(C_UnwrapKey)
  SHIM(C_DeriveKey) SHIM(C_SeedRandom) SHIM(C_GenerateRandom) SHIM(C_GetFunctionStatus) SHIM(C_CancelFunction)
  SHIM(C_WaitForSlotEvent)
  g_list.C_GetFunctionList = &C_GetFunctionList;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
  if (list == nullptr) return CKR_ARGUMENTS_BAD;
  if (!load_real()) return CKR_GENERAL_ERROR;
  build_list();
  *list = &g_list;
  return CKR_OK;
}
