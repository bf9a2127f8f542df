// One error vocabulary for the whole station (pattern: Boost.Beast http/error.hpp).
// Asio handlers see std::error_code; callers see station::Error, which carries the code,
// a message that names the thing and the fix, and the native code of the library that
// failed (CK_RV, sqlite rc, libusb rc, errno) when there is one.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <system_error>

namespace station {

// What each code means for retrying is part of its contract.
enum class Errc : int {
  ok = 0,
  invalid_argument = 1,     // caller's input is wrong; retrying the same input fails again
  parse_error = 2,          // malformed text or bytes (URI, frame, config, JSON); never retry
  config_error = 3,         // station.conf or a setting is wrong; fix the config
  not_found = 4,            // the named thing does not exist
  already_exists = 5,       // refusing to overwrite (an existing hierarchy, file, record)
  permission_denied = 6,    // file or device access; fix permissions
  hsm_unavailable = 7,      // module/slot/token missing or removed; retry after it returns
  hsm_pin_incorrect = 8,    // rejected PIN: NEVER retry, a real token locks
  hsm_pin_locked = 9,       // token PIN locked or about to be; officer action needed
  hsm_error = 10,           // other PKCS#11 failure; native() holds the CK_RV
  crypto_error = 11,        // OpenSSL failure or a signature that does not verify
  io_error = 12,            // file or transport I/O; native() holds errno
  timeout = 13,             // no answer in time; the operation may be retried
  device_error = 14,        // the device answered with an error
  protocol_error = 15,      // the device broke the wire protocol
  db_error = 16,            // SQLite failure; native() holds the sqlite rc
  constraint_violation = 17,// would give a serial/MAC/key/cert to two devices: never retry
  tampered = 18,            // integrity check failed (journal, digest, signature)
  unsupported = 19,         // valid but not supported by this build or device
  busy = 20,                // resource held elsewhere; retry later
  internal = 21,            // a bug: please report
};

const std::error_category& station_category() noexcept;
std::error_code make_error_code(Errc e) noexcept;
const char* errc_name(Errc e) noexcept;

class Error : public std::runtime_error {
 public:
  Error(Errc code, const std::string& message, std::int64_t native = 0)
      : std::runtime_error(message), code_(code), native_(native) {}

  Errc code() const noexcept { return code_; }
  std::error_code error_code() const noexcept { return make_error_code(code_); }
  // The failing library's own code (CK_RV, sqlite rc, libusb rc, errno), or 0.
  std::int64_t native() const noexcept { return native_; }

 private:
  Errc code_;
  std::int64_t native_;
};

// Throws Error(Errc::io_error, what + ": " + strerror(errno), errno).
[[noreturn]] void throw_errno(const std::string& what);

}  // namespace station

template <>
struct std::is_error_code_enum<station::Errc> : std::true_type {};
