// libFuzzer target for the PKCS#10 certificate request reader (pki/x509.hpp,
// public_key_from_csr, behind `station issue --csr`). Any input must give a key or a
// station::Error, never another exception, a crash, a leak or a sanitizer report; a key it
// gives, when the station's public-key reader takes it (an EC key; Ed25519 and others are
// refused there, and by the issuer), must come back unchanged.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/error.hpp"
#include "pki/x509.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  station::Bytes spki;
  try {
    spki = station::pki::public_key_from_csr(input);
  } catch (const station::Error& e) {
    if (std::string(e.what()).empty()) __builtin_trap();
    return 0;
  }
  if (spki.empty()) __builtin_trap();
  try {
    const std::string der(spki.begin(), spki.end());
    if (station::pki::public_key_from_pem_or_der(der) != spki) __builtin_trap();
  } catch (const station::Error&) {
    return 0;  // a key type the station does not certify
  }
  return 0;
}
