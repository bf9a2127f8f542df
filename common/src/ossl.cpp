#include "common/ossl.hpp"

#include <openssl/err.h>

namespace station::ossl {

Error error(const std::string& what, Errc code) {
  std::string reason;
  unsigned long e = 0;
  while ((e = ::ERR_get_error()) != 0) {
    char buf[256];
    ::ERR_error_string_n(e, buf, sizeof buf);
    if (reason.empty()) reason = buf;  // the first error is the root cause
  }
  return Error(code, reason.empty() ? what : what + ": " + reason);
}

namespace {
// Deliberately never freed: digests may run until the process exits (atexit order).
const EVP_MD* fetched(const char* name) {
  const EVP_MD* md = ::EVP_MD_fetch(nullptr, name, nullptr);
  if (md == nullptr) throw error(std::string("fetching the ") + name + " digest");
  return md;
}
}  // namespace

const EVP_MD* sha1() {
  static const EVP_MD* md = fetched("SHA1");
  return md;
}
const EVP_MD* sha256() {
  static const EVP_MD* md = fetched("SHA2-256");
  return md;
}
const EVP_MD* sha384() {
  static const EVP_MD* md = fetched("SHA2-384");
  return md;
}
const EVP_MD* sha512() {
  static const EVP_MD* md = fetched("SHA2-512");
  return md;
}

}  // namespace station::ossl
