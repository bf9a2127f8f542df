// The station's records in SQLite: CA certificates, devices and their identities.
// Schema and migrations: db/src/schema.cpp; described for auditors in docs/records.md.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/bytes.hpp"
#include "db/journal.hpp"
#include "db/sqlite.hpp"

namespace station::db {

// The schema version this program writes. A database with a higher user_version is
// refused (it was written by a newer station).
constexpr int kSchemaVersion = 3;

struct CaRecord {
  std::int64_t id = 0;
  std::string role;        // root | issuing | cross | audit
  std::string status;      // active | retired | revoked
  std::string subject, issuer, serial, not_before, not_after;
  std::string key_id;      // SHA-256 of the SPKI (names the key, shared by cross-certificates)
  std::string key_label;
  std::string sha256;
  std::string issuer_key_id;
  Bytes der;
  std::string created;
};

struct DeviceRecord {
  std::int64_t id = 0;
  std::string serial;
  std::optional<std::string> chip_id, mac;
  std::optional<std::int64_t> batch_id;
  std::optional<std::string> fixture;
  std::string state;
  std::optional<std::string> reason;
  std::string created, updated;
};

struct IdentityRecord {
  std::int64_t id = 0;
  std::int64_t device_id = 0;
  std::string cert_serial, cert_sha256, issuer_key_id, profile;
  Bytes cert_der, public_key;
  std::string pkhash;
  std::optional<std::string> dpp_uri;
  std::string key_mode;    // injected | on-device | external
  std::string status;      // active | voided | revoked
  std::string op;          // the operator (user) under whom it was issued
  std::string created;
};


// A user of the station (issue 9): operators, security officers, auditors. Only a slow
// hash of the token is stored.
struct UserRecord {
  std::int64_t id = 0;
  std::string name;
  std::string role;        // operator | officer | auditor
  std::string token_hash;  // libsodium crypto_pwhash_str (Argon2id) of the token's secret
  bool disabled = false;
  std::string created;
};

// A two-person ceremony proposed by one officer, waiting for a second (issue 10).
struct ProposalRecord {
  std::int64_t id = 0;
  std::string ref;         // the id officers type (16 lowercase hex digits)
  std::string action;      // rotate-root | revoke-ca | destroy-key
  std::string params;      // JSON
  std::string proposer;
  std::string created, expires;
  std::string status;      // pending | approved | failed
  std::optional<std::string> approver, decided;
};

// Where and from when a CA key works. Keys made by `station init` have no row: they are on
// the station's own token and effective from their certificate's creation.
struct CaKeyRecord {
  std::int64_t id = 0;
  std::string key_id;
  std::optional<std::string> token_label;  // another token (e.g. an offline root token)
  std::optional<std::string> pin;          // that token's PIN reference (file:/env:)
  std::string effective;                   // RFC 3339: signs new device certificates from then
  std::optional<std::string> trust_until;  // a retired root stays a trust anchor until then
  std::string created;
};

struct RevocationRecord {
  std::int64_t id = 0;
  std::string cert_serial, issuer_key_id;
  std::string reason;      // RFC 5280 reason name
  std::string time;        // RFC 3339
};

struct CrlRecord {
  std::int64_t id = 0;
  std::string issuer_key_id;
  std::int64_t crl_number = 0;
  std::string this_update, next_update;
  std::int64_t entries = 0;
  std::string sha256;
  Bytes der;
  std::string created;
};

class Records {
 public:
  // Opens (creating if needed) and migrates the database at `path`.
  explicit Records(const std::filesystem::path& path, bool read_only = false);

  Connection& connection() noexcept { return conn_; }

  std::vector<CaRecord> cas();
  std::optional<CaRecord> active_ca(const std::string& role);

  // True when a certificate (device or CA) with this serial was ever recorded.
  bool certificate_serial_used(const std::string& serial_hex);

  std::optional<DeviceRecord> device_by_serial(const std::string& serial);
  std::vector<IdentityRecord> identities_of(std::int64_t device_id);

  std::optional<IdentityRecord> identity_by_cert_serial(const std::string& serial_hex);
  // Identities of the devices of a batch (by batch name), oldest first.
  std::vector<IdentityRecord> identities_of_batch(const std::string& batch_name);
  std::vector<IdentityRecord> identities_by_issuer(const std::string& issuer_key_id, const std::string& status);

  // Users, proposals, CA keys, revocations and CRLs (schema v2).
  std::optional<UserRecord> user_by_name(const std::string& name);
  std::int64_t count_users(const std::string& role);
  std::optional<ProposalRecord> proposal(const std::string& ref);
  std::vector<ProposalRecord> proposals();
  std::optional<CaKeyRecord> ca_key(const std::string& key_id);
  std::vector<RevocationRecord> revocations(const std::string& issuer_key_id);
  std::optional<CrlRecord> latest_crl(const std::string& issuer_key_id);

 private:
  void migrate();
  Connection conn_;
};

// Writers, for use inside a journal mutation (db/journal.hpp): every change to the
// records is made together with the journal entry that describes it. Each returns the
// rows it created.
RowRef insert_station(Connection& c, const std::string& station_id);
RowRef insert_ca(Connection& c, const CaRecord& ca);
// A device and its first identity. A serial, MAC, chip id, key hash or certificate serial
// that belongs to another device is refused with Errc::constraint_violation naming which.
std::vector<RowRef> insert_device_with_identity(Connection& c, const DeviceRecord& device, const IdentityRecord& identity);
// The pipeline's writers: a device reserved before it has an identity, an identity for an
// existing device (identity.device_id), a state change (reason set on failed, cleared
// otherwise; fixture kept when nullopt), a printed label.
RowRef insert_device(Connection& c, const DeviceRecord& device);
RowRef insert_identity(Connection& c, const IdentityRecord& identity);
RowRef set_device_state(Connection& c, std::int64_t device_id, const std::string& state,
                        const std::optional<std::string>& reason = std::nullopt,
                        const std::optional<std::string>& fixture = std::nullopt);
RowRef insert_label(Connection& c, std::int64_t device_id, const std::string& printer, const std::string& result);
// Re-provisioning (an officer's decision): the device is provisioned again in `batch_id`,
// keeping its serial, chip id and MAC; its state becomes `reserved`.
RowRef set_device_batch(Connection& c, std::int64_t device_id, std::int64_t batch_id);
// For a unit that depends on an earlier one it did not wait for: throws Errc::db_error naming
// both states unless the device's record is in `state` (the earlier unit did not land).
void require_device_state(Connection& c, std::int64_t device_id, const std::string& state);
std::optional<DeviceRecord> device_by_chip(Connection& c, const std::string& chip_id);
std::vector<DeviceRecord> devices_in_states(Connection& c, const std::vector<std::string>& states);
std::vector<IdentityRecord> identities_of(Connection& c, std::int64_t device_id);  // oldest first

// Schema v2 writers (users, CA lifecycle), each returning the row it touched.
RowRef insert_user(Connection& c, const UserRecord& user);
RowRef insert_proposal(Connection& c, const ProposalRecord& proposal);
RowRef decide_proposal(Connection& c, std::int64_t id, const std::string& status,
                       const std::optional<std::string>& approver);
RowRef insert_ca_key(Connection& c, const CaKeyRecord& key);
RowRef set_ca_key_trust_until(Connection& c, const std::string& key_id, const std::string& trust_until);
RowRef set_ca_status(Connection& c, std::int64_t ca_id, const std::string& status);
RowRef insert_revocation(Connection& c, const RevocationRecord& revocation);
RowRef set_identity_status(Connection& c, std::int64_t identity_id, const std::string& status);
RowRef insert_crl(Connection& c, const CrlRecord& crl);

// The issuing CA that signs new device certificates at `now` (RFC 3339): of the issuing
// CAs, the one whose effective moment is latest but not after `now` (ties: the newest).
// It may be revoked: then nothing may be issued until the next rotation (never fall back
// to an older CA). Works on any connection, so a journal mutation can re-check it inside
// its transaction. Empty when there is none.
std::optional<CaRecord> issuing_ca_at(Connection& c, const std::string& now);
std::vector<CaRecord> all_cas(Connection& c);

// RFC 3339 UTC time of now, as stored in every `created`/`updated` column.
std::string now_rfc3339();

}  // namespace station::db
