#include "internal/schema.hpp"

namespace station::db {

const std::vector<std::string>& schema_migrations() {
  static const std::vector<std::string> steps = {
      // 0 -> 1: CA certificates, devices, identities.
      R"sql(
CREATE TABLE ca_certificates (
  id            INTEGER PRIMARY KEY,
  role          TEXT NOT NULL CHECK (role IN ('root', 'issuing', 'cross', 'audit')),
  status        TEXT NOT NULL CHECK (status IN ('active', 'retired', 'revoked')),
  subject       TEXT NOT NULL,
  issuer        TEXT NOT NULL,
  serial        TEXT NOT NULL,
  not_before    TEXT NOT NULL,
  not_after     TEXT NOT NULL,
  key_id        TEXT NOT NULL,
  key_label     TEXT NOT NULL,
  sha256        TEXT NOT NULL UNIQUE,
  issuer_key_id TEXT NOT NULL,
  der           BLOB NOT NULL,
  created       TEXT NOT NULL
);
CREATE INDEX ca_certificates_serial ON ca_certificates(serial);

CREATE TABLE devices (
  id       INTEGER PRIMARY KEY,
  serial   TEXT NOT NULL UNIQUE,
  chip_id  TEXT UNIQUE,
  mac      TEXT UNIQUE,
  state    TEXT NOT NULL,
  created  TEXT NOT NULL,
  updated  TEXT NOT NULL
);

CREATE TABLE identities (
  id            INTEGER PRIMARY KEY,
  device_id     INTEGER NOT NULL REFERENCES devices(id),
  cert_serial   TEXT NOT NULL UNIQUE,
  cert_sha256   TEXT NOT NULL UNIQUE,
  cert_der      BLOB NOT NULL,
  issuer_key_id TEXT NOT NULL,
  profile       TEXT NOT NULL,
  public_key    BLOB NOT NULL,
  pkhash        TEXT NOT NULL UNIQUE,
  dpp_uri       TEXT,
  key_mode      TEXT NOT NULL CHECK (key_mode IN ('injected', 'on-device', 'external')),
  status        TEXT NOT NULL CHECK (status IN ('active', 'voided', 'revoked')),
  created       TEXT NOT NULL
);
CREATE UNIQUE INDEX identities_one_active_per_device ON identities(device_id) WHERE status = 'active';
CREATE INDEX identities_issuer ON identities(issuer_key_id);
)sql",
  };
  return steps;
}

}  // namespace station::db
