// Shared records for many stations (DESIGN.md "Scale"): each station pushes its journal to
// one PostgreSQL database as signed segments, contiguous runs of entries exported as audit
// bundles (write_bundle: entries, the records they vouch for, checkpoints, the audit key's
// signature), and the same data into tables auditors query across stations. Nothing in the
// shared database is trusted for itself: `verify` checks every segment against a trusted root
// as `audit verify --bundle` does, that each station's segments join into one unbroken chain,
// and that the queryable tables say exactly what the signed segments say. Each station's
// journal thus stays verifiable on its own, wherever its records are kept.
//
// Tables (created when missing; docs/records.md):
//   shared_stations(station_id, last_seq, last_hash, pushed)
//   shared_segments(station_id, first_seq, last_seq, prev_hash, last_hash, pushed, bundle)
//   shared_entries(station_id, seq, time, actor, action, subject, details, hash)
//   shared_records(station_id, tbl, row_id, seq, cols)      the latest vouched content of a row
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/bytes.hpp"
#include "common/secure.hpp"
#include "db/journal.hpp"
#include "db/sqlite.hpp"

namespace station::db::shared {

struct PushReport {
  std::string station_id;
  std::int64_t first_seq = 0;  // the entries pushed now (0/0 when there was nothing new)
  std::int64_t last_seq = 0;
  std::int64_t entries = 0;
  std::int64_t records = 0;
  std::int64_t segments = 0;
  std::int64_t shared_last_seq = 0;  // what the shared records held before
};

// Pushes the entries of `local`'s journal after the last one the shared records hold for
// `station_id`, in segments of at most `segment_entries` entries, each in one PostgreSQL
// transaction (a crash or a lost connection leaves whole segments only). Refuses, changing
// nothing, when the shared records hold a different history for this station at the entry
// where they end (another database under the same station id, or one restored from an older
// backup) or more entries than the local journal. `progress` is called after each segment.
PushReport push(Connection& local, CheckpointSigner& signer, const std::string& station_id,
                const SecretString& conninfo, std::int64_t segment_entries = 20000,
                const std::function<void(const PushReport&)>& progress = {});

struct StationVerifyReport {
  std::string station_id;
  std::int64_t segments = 0;
  std::int64_t entries = 0;
  std::int64_t last_seq = 0;
  std::int64_t unsigned_tail = 0;  // entries after the station's last signed checkpoint (in any segment)
  bool ok = true;
  std::optional<std::int64_t> first_bad_seq;
  std::string reason;
};

// Verifies every station's pushed records (or one station's) against a trusted root
// certificate (DER): each segment as a bundle, their chain across segments, and the
// queryable tables against the segments. Errc::not_found for a station with nothing pushed.
std::vector<StationVerifyReport> verify(const SecretString& conninfo, const std::optional<std::string>& station_id,
                                        ByteView trusted_root_der);

struct SharedQuery {
  std::optional<std::string> serial, mac, pkhash, cert_serial, station_id;
};

// Identities across stations: one object per identity, {"station_id", "serial", "chip_id",
// "mac", "state", "pkhash", "cert_serial", "issuer", "status", "dpp_uri", "batch_id",
// "seq"} (seq: the entry that last vouched for the identity), ordered by station and serial.
std::vector<nlohmann::json> query(const SecretString& conninfo, const SharedQuery& q);

}  // namespace station::db::shared
