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
constexpr int kSchemaVersion = 1;

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

// RFC 3339 UTC time of now, as stored in every `created`/`updated` column.
std::string now_rfc3339();

}  // namespace station::db
