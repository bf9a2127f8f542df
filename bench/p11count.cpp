// A forwarding PKCS#11 module for the benchmark: the station loads it as its hsm.module; it
// loads the real module (STATION_BENCH_P11_REAL, default SoftHSM2) and forwards every call
// unchanged, counting C_Sign calls with one atomic increment (so the count costs nothing
// measurable). The benchmark reads the count with station_bench_p11_signs() through
// dlopen(RTLD_NOLOAD) of this same file: signatures per device are measured, not derived.
#include <dlfcn.h>
#include <p11-kit/pkcs11.h>

#include <atomic>
#include <cstdlib>

namespace {

CK_FUNCTION_LIST* g_real = nullptr;
CK_FUNCTION_LIST g_list{};
std::atomic<unsigned long long> g_signs{0};

CK_RV counting_sign(CK_SESSION_HANDLE s, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len) {
  const CK_RV rv = g_real->C_Sign(s, data, len, sig, sig_len);
  if (rv == CKR_OK && sig != nullptr) g_signs.fetch_add(1, std::memory_order_relaxed);
  return rv;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
  if (list == nullptr) return CKR_ARGUMENTS_BAD;
  if (g_real == nullptr) {
    const char* path = std::getenv("STATION_BENCH_P11_REAL");
    void* h = ::dlopen(path != nullptr ? path : "/usr/lib/softhsm/libsofthsm2.so", RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) return CKR_GENERAL_ERROR;
    auto* get = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(h, "C_GetFunctionList"));
    if (get == nullptr || get(&g_real) != CKR_OK) return CKR_GENERAL_ERROR;
    g_list = *g_real;
    g_list.C_GetFunctionList = &C_GetFunctionList;
    g_list.C_Sign = &counting_sign;
  }
  *list = &g_list;
  return CKR_OK;
}

__attribute__((visibility("default"))) unsigned long long station_bench_p11_signs() {
  return g_signs.load(std::memory_order_relaxed);
}

}  // extern "C"
