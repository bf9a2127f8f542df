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

}  // namespace station::ossl
