#include "core/users.hpp"

#include <sodium.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include <fmt/format.h>

namespace station::core {
namespace {

void sodium_ready() {
  static const bool ok = ::sodium_init() >= 0;
  if (!ok) throw Error(Errc::crypto_error, "libsodium failed to initialise");
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (const char c : name)
    if (std::isalnum(static_cast<unsigned char>(c)) == 0 && c != '-' && c != '_' && c != '.' && c != '@') return false;
  return true;
}

// "<name>.<64 hex>" -> name and secret. The secret is the part after the last '.'.
bool split_token(std::string_view token, std::string& name, std::string_view& secret) {
  const auto dot = token.rfind('.');
  if (dot == std::string_view::npos || dot == 0) return false;
  secret = token.substr(dot + 1);
  if (secret.size() != 64 || secret.find_first_not_of("0123456789abcdef") != std::string_view::npos) return false;
  name = std::string(token.substr(0, dot));
  return valid_name(name);
}

std::string hash_secret(std::string_view secret) {
  // Argon2id at libsodium's "interactive" cost: ~64 MiB and a fraction of a second. The
  // secret already has 256 bits of entropy; the slow hash is defence in depth for a
  // stolen database, as issue 9 asks.
  std::array<char, crypto_pwhash_STRBYTES> out{};
  if (::crypto_pwhash_str(out.data(), secret.data(), secret.size(), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
    throw Error(Errc::crypto_error, "crypto_pwhash_str ran out of memory hashing a token");
  return std::string(out.data());
}

std::string os_actor() { return "os:" + os_user(); }

}  // namespace

SecretString TokenSource::read() const {
  if (file) {
    struct stat st {};
    if (::stat(file->c_str(), &st) != 0)
      throw Error(Errc::permission_denied, fmt::format("token file {} cannot be read: {}; give the file `station user "
                                                       "add` printed your token into",
                                                       file->string(), std::strerror(errno)));
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
      spdlog::warn("token file {} is readable by others (mode {:o}); chmod 600 it", file->string(), st.st_mode & 0777);
    std::ifstream in(*file, std::ios::binary);
    std::string line;
    std::getline(in, line);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    SecretString token(std::move(line));
    if (token.size() == 0) throw Error(Errc::permission_denied, fmt::format("token file {} is empty", file->string()));
    return token;
  }
  const char* env = std::getenv("STATION_TOKEN");
  if (env != nullptr && *env != '\0') return pki::PinRef::parse("env:STATION_TOKEN").read();
  throw Error(Errc::permission_denied,
              "this command acts as a user: give your token with --token-file FILE or in STATION_TOKEN "
              "(an officer creates users with `station user add`)");
}

bool is_valid_role(std::string_view role) noexcept {
  return role == "operator" || role == "officer" || role == "auditor";
}

Error deny(Station& station, const std::string& actor, std::string_view action, const std::string& subject,
           const std::string& reason) {
  // The station's lock only to open the journal (thread-safe once open): callers need not
  // hold it, and an allowed request (require_role returns before this) takes no lock.
  db::Journal* journal = nullptr;
  {
    const std::lock_guard lock(station.mutex());
    journal = &station.journal();
  }
  journal->commit({actor, "auth.denied", subject, {{"attempted", action}, {"reason", reason}}});
  return Error(Errc::permission_denied, reason);
}

Actor authenticate(Station& station, const SecretString& token, std::string_view action) {
  sodium_ready();
  std::string name;
  std::string_view secret;
  if (!split_token(token.str(), name, secret))
    throw deny(station, os_actor(), action, "user:unknown",
               "the token is not a station token (NAME.<64 hex digits>); use the one `station user add` printed");
  const auto user = station.records().user_by_name(name);
  if (!user || user->token_hash.empty()) {
    // Spend the same time as for a real user, so answers do not reveal which names exist.
    static const std::string dummy = hash_secret(std::string(64, '0'));
    const int ignored = ::crypto_pwhash_str_verify(dummy.c_str(), secret.data(), secret.size());
    static_cast<void>(ignored);
  }
  if (!user || user->token_hash.empty() ||
      ::crypto_pwhash_str_verify(user->token_hash.c_str(), secret.data(), secret.size()) != 0)
    throw deny(station, os_actor(), action, "user:" + name,
               fmt::format("the token for user '{}' is not valid; ask an officer for a new one", name));
  if (user->disabled)
    throw deny(station, name, action, "user:" + name, fmt::format("user '{}' is disabled", name));
  return {user->name, user->role};
}

void require_role(Station& station, const Actor& actor, std::initializer_list<std::string_view> roles,
                  std::string_view action) {
  std::string wanted;
  for (const auto r : roles) {
    if (r == actor.role) return;
    wanted += wanted.empty() ? std::string(r) : " or " + std::string(r);
  }
  throw deny(station, actor.name, action, "user:" + actor.name,
             fmt::format("{} needs the {} role; user '{}' is {}", action, wanted, actor.name, actor.role));
}

Actor authorize(Station& station, const TokenSource& token, std::initializer_list<std::string_view> roles,
                std::string_view action) {
  const SecretString secret = token.read();
  Actor actor = authenticate(station, secret, action);
  require_role(station, actor, roles, action);
  return actor;
}

NewUser add_user(Station& station, const std::string& name, const std::string& role, const TokenSource* by) {
  sodium_ready();
  if (!valid_name(name))
    throw Error(Errc::invalid_argument,
                fmt::format("user name '{}' must be 1 to 64 letters, digits, '-', '_', '.' or '@'", name));
  if (!is_valid_role(role))
    throw Error(Errc::invalid_argument, fmt::format("role '{}' is not operator, officer or auditor", role));

  std::string actor = os_actor();
  bool bootstrap = false;
  if (station.records().count_users("officer") == 0) {
    bootstrap = true;  // whoever holds the data folder makes the first users (docs/security.md)
  } else {
    if (by == nullptr) throw Error(Errc::permission_denied, "adding a user needs an officer's token (--token-file FILE)");
    actor = authorize(station, *by, {"officer"}, "user.add").name;
  }
  if (station.records().user_by_name(name))
    throw Error(Errc::already_exists, fmt::format("a user named '{}' already exists; choose another name", name));

  std::array<std::uint8_t, 32> raw{};
  ::randombytes_buf(raw.data(), raw.size());
  NewUser out;
  out.user = {name, role};
  std::string secret = hex_encode(ByteView(raw.data(), raw.size()));
  ::sodium_memzero(raw.data(), raw.size());
  db::UserRecord record;
  record.name = name;
  record.role = role;
  record.token_hash = hash_secret(secret);
  out.token = SecretString(name + "." + secret);
  secure_wipe(secret.data(), secret.size());
  station.journal().commit({actor, "user.added", "user:" + name,
                            {{"name", name}, {"role", role}, {"bootstrap", bootstrap}}},
                           [&](db::Connection& c) { return std::vector<db::RowRef>{db::insert_user(c, record)}; });
  return out;
}

}  // namespace station::core
