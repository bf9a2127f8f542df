#include "internal/schema.hpp"

namespace station::db {

// Described for auditors in docs/records.md; keep the two in step.
const std::vector<std::string>& schema_migrations() {
  static const std::vector<std::string> steps = {
      // 0 -> 1
      R"sql(
CREATE TABLE stations (
  id       TEXT PRIMARY KEY,
  created  TEXT NOT NULL
);

CREATE TABLE users (
  id          INTEGER PRIMARY KEY,
  name        TEXT NOT NULL UNIQUE,
  role        TEXT NOT NULL CHECK (role IN ('operator', 'officer', 'auditor')),
  token_hash  TEXT,
  disabled    INTEGER NOT NULL DEFAULT 0,
  created     TEXT NOT NULL
);

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

CREATE TABLE batches (
  id          INTEGER PRIMARY KEY,
  name        TEXT NOT NULL UNIQUE,
  product     TEXT NOT NULL,
  quantity    INTEGER NOT NULL CHECK (quantity > 0),
  state       TEXT NOT NULL CHECK (state IN ('open', 'paused', 'closed')),
  settings    TEXT NOT NULL,
  created     TEXT NOT NULL,
  closed      TEXT
);

CREATE TABLE devices (
  id       INTEGER PRIMARY KEY,
  serial   TEXT NOT NULL UNIQUE,
  chip_id  TEXT UNIQUE,
  mac      TEXT UNIQUE,
  batch_id INTEGER REFERENCES batches(id),
  fixture  TEXT,
  state    TEXT NOT NULL,
  reason   TEXT,
  created  TEXT NOT NULL,
  updated  TEXT NOT NULL
);
CREATE INDEX devices_batch ON devices(batch_id);

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
  operator      TEXT NOT NULL,
  created       TEXT NOT NULL
);
CREATE UNIQUE INDEX identities_one_active_per_device ON identities(device_id) WHERE status = 'active';
CREATE INDEX identities_issuer ON identities(issuer_key_id);
CREATE INDEX identities_device ON identities(device_id);

CREATE TABLE labels (
  id        INTEGER PRIMARY KEY,
  device_id INTEGER NOT NULL REFERENCES devices(id),
  printer   TEXT NOT NULL,
  result    TEXT NOT NULL,
  time      TEXT NOT NULL
);

CREATE TABLE revocations (
  id            INTEGER PRIMARY KEY,
  cert_serial   TEXT NOT NULL,
  issuer_key_id TEXT NOT NULL,
  reason        TEXT NOT NULL,
  time          TEXT NOT NULL,
  UNIQUE (issuer_key_id, cert_serial)
);

-- The audit journal: append-only, hash-chained (docs/records.md).
CREATE TABLE journal (
  seq          INTEGER PRIMARY KEY,
  time         TEXT NOT NULL,
  station_id   TEXT NOT NULL,
  actor        TEXT NOT NULL,
  action       TEXT NOT NULL,
  subject      TEXT NOT NULL,
  details      TEXT NOT NULL,
  records_hash TEXT NOT NULL,
  prev_hash    TEXT NOT NULL,
  hash         TEXT NOT NULL
);
CREATE INDEX journal_time ON journal(time);
CREATE INDEX journal_subject ON journal(subject);

-- The record rows each entry created or changed, with the hash of the row after it.
CREATE TABLE journal_rows (
  seq      INTEGER NOT NULL REFERENCES journal(seq),
  tbl      TEXT NOT NULL,
  row_id   INTEGER NOT NULL,
  row_hash TEXT NOT NULL,
  PRIMARY KEY (seq, tbl, row_id)
) WITHOUT ROWID;
CREATE INDEX journal_rows_by_row ON journal_rows(tbl, row_id, seq);

-- Checkpoints signed with the HSM-held audit key.
CREATE TABLE checkpoints (
  seq           INTEGER PRIMARY KEY,
  hash          TEXT NOT NULL,
  time          TEXT NOT NULL,
  station_id    TEXT NOT NULL,
  signature     BLOB NOT NULL,
  signer_sha256 TEXT NOT NULL
);

CREATE TRIGGER journal_append_only_update BEFORE UPDATE ON journal
  BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER journal_append_only_delete BEFORE DELETE ON journal
  BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER journal_rows_append_only_update BEFORE UPDATE ON journal_rows
  BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER journal_rows_append_only_delete BEFORE DELETE ON journal_rows
  BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
)sql",
      // 1 -> 2: the CA lifecycle (issue 10): two-person proposals, where and from when each
      // CA key works, and the CRLs the station has signed.
      R"sql(
CREATE TABLE ca_proposals (
  id        INTEGER PRIMARY KEY,
  ref       TEXT NOT NULL UNIQUE,
  action    TEXT NOT NULL CHECK (action IN ('rotate-root', 'revoke-ca', 'destroy-key')),
  params    TEXT NOT NULL,
  proposer  TEXT NOT NULL,
  created   TEXT NOT NULL,
  expires   TEXT NOT NULL,
  status    TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'failed')),
  approver  TEXT,
  decided   TEXT
);

CREATE TABLE ca_keys (
  id          INTEGER PRIMARY KEY,
  key_id      TEXT NOT NULL UNIQUE,
  token_label TEXT,
  pin         TEXT,
  effective   TEXT NOT NULL,
  trust_until TEXT,
  created     TEXT NOT NULL
);

CREATE TABLE crls (
  id            INTEGER PRIMARY KEY,
  issuer_key_id TEXT NOT NULL,
  crl_number    INTEGER NOT NULL CHECK (crl_number > 0),
  this_update   TEXT NOT NULL,
  next_update   TEXT NOT NULL,
  entries       INTEGER NOT NULL,
  sha256        TEXT NOT NULL,
  der           BLOB NOT NULL,
  created       TEXT NOT NULL,
  UNIQUE (issuer_key_id, crl_number)
);
CREATE INDEX revocations_issuer ON revocations(issuer_key_id);
)sql",
      // 2 -> 3: batch serial numbers: `{seq}` counts per rendered prefix across batches.
      R"sql(
CREATE TABLE serial_counters (
  prefix  TEXT PRIMARY KEY,
  next    INTEGER NOT NULL CHECK (next > 0)
);
)sql",
  };
  return steps;
}

}  // namespace station::db
