// Users, roles and tokens (issue 9's core, built for issue 10's two-person rule).
//
// Roles: operator (runs batches, reprints labels), officer (CA ceremonies, user
// management), auditor (read only). A user proves who they are with a token: 32 random
// bytes shown once at creation as "<name>.<64 hex digits>"; the station keeps only a slow
// hash of it (libsodium's crypto_pwhash_str, Argon2id). Every grant and every denial is
// journaled with the user. docs/security.md says what this does not protect against:
// whoever can read the data folder and the PIN file bypasses all of it.
//
// The HTTP API (issue 9) authenticates a bearer token with authenticate() and checks the
// role with require_role(); the CLI reads the token with TokenSource.
#pragma once

#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include "common/secure.hpp"
#include "core/station.hpp"

namespace station::core {

// Where a command's token comes from: `--token-file FILE`, else the environment variable
// STATION_TOKEN (wiped and unset after reading, like a PIN).
struct TokenSource {
  std::optional<std::filesystem::path> file;
  // Errc::permission_denied when neither is given.
  SecretString read() const;
};

// An authenticated user.
struct Actor {
  std::string name;
  std::string role;  // operator | officer | auditor
};

bool is_valid_role(std::string_view role) noexcept;

// Checks the token against the stored hashes. On success returns the user; otherwise
// journals "auth.denied" (with the attempted action) and throws Errc::permission_denied.
Actor authenticate(Station& station, const SecretString& token, std::string_view action);

// Refuses (journaled, Errc::permission_denied) when the actor's role is not among `roles`.
void require_role(Station& station, const Actor& actor, std::initializer_list<std::string_view> roles,
                  std::string_view action);

// authenticate() + require_role() for a command's token.
Actor authorize(Station& station, const TokenSource& token, std::initializer_list<std::string_view> roles,
                std::string_view action);

// Journals a refusal that is not about the token (e.g. approving one's own proposal) and
// returns the error to throw.
Error deny(Station& station, const std::string& actor, std::string_view action, const std::string& subject,
           const std::string& reason);

struct NewUser {
  Actor user;
  SecretString token;  // shown once; only its hash is stored
};

// Adds a user. While no officer exists, whoever holds the data folder may add users (that
// is how the first officer is made); afterwards `by` must be an officer's token.
NewUser add_user(Station& station, const std::string& name, const std::string& role, const TokenSource* by);

}  // namespace station::core
