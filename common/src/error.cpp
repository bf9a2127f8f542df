#include "common/error.hpp"

#include <cerrno>
#include <cstring>

namespace station {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "station"; }
  std::string message(int ev) const override { return errc_name(static_cast<Errc>(ev)); }
};

}  // namespace

const char* errc_name(Errc e) noexcept {
  switch (e) {
    case Errc::ok: return "ok";
    case Errc::invalid_argument: return "invalid argument";
    case Errc::parse_error: return "parse error";
    case Errc::config_error: return "configuration error";
    case Errc::not_found: return "not found";
    case Errc::already_exists: return "already exists";
    case Errc::permission_denied: return "permission denied";
    case Errc::hsm_unavailable: return "HSM unavailable";
    case Errc::hsm_pin_incorrect: return "HSM PIN incorrect";
    case Errc::hsm_pin_locked: return "HSM PIN locked";
    case Errc::hsm_error: return "HSM error";
    case Errc::crypto_error: return "cryptographic error";
    case Errc::io_error: return "I/O error";
    case Errc::timeout: return "timed out";
    case Errc::device_error: return "device error";
    case Errc::protocol_error: return "protocol error";
    case Errc::db_error: return "database error";
    case Errc::constraint_violation: return "constraint violation";
    case Errc::tampered: return "tampered";
    case Errc::unsupported: return "unsupported";
    case Errc::busy: return "busy";
    case Errc::internal: return "internal error";
  }
  return "unknown error";
}

const std::error_category& station_category() noexcept {
  static const Category category;
  return category;
}

std::error_code make_error_code(Errc e) noexcept { return {static_cast<int>(e), station_category()}; }

void throw_errno(const std::string& what) {
  const int err = errno;
  throw Error(err == EACCES || err == EPERM ? Errc::permission_denied
              : err == ENOENT               ? Errc::not_found
                                            : Errc::io_error,
              what + ": " + std::strerror(err), err);
}

}  // namespace station
