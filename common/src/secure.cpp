#include "common/secure.hpp"

#include <openssl/crypto.h>

namespace station {

void secure_wipe(void* data, std::size_t size) noexcept {
  if (data != nullptr && size > 0) ::OPENSSL_cleanse(data, size);
}

}  // namespace station
