// The auditor's tools over the records: queries, a device's story, self-contained signed
// bundles (export) and their offline verification.
#pragma once

#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "db/highwater.hpp"
#include "db/journal.hpp"
#include "db/sqlite.hpp"

namespace station::db {

struct QueryFilter {
  std::optional<std::string> serial, mac, chip_id, pkhash, cert_serial, batch, op, fixture, ca, state, since, until;
};

// One element per identity (DESIGN.md conventions: absent values are null).
struct IdentityRow {
  std::string serial;
  std::optional<std::string> chip_id, mac;
  std::string state, identity_status;
  std::optional<std::string> dpp_uri;
  std::string pkhash, cert_serial, issuer;
  std::optional<std::string> batch, fixture;
  std::string op, created, updated;
};

std::vector<IdentityRow> query_identities(Connection& c, const QueryFilter& f);
nlohmann::json to_json(const IdentityRow& r);
extern const std::vector<std::string> kIdentityColumns;  // CSV/JSON field names, in order

// With `also`, entries about either subject (a device's "device:SERIAL" and the
// "chip:ID" entries from before its serial was reserved).
std::vector<Entry> journal_entries_for(Connection& c, const std::string& subject, const std::string& also = {});

struct ExportFilter {
  std::optional<std::string> since, until, batch;
  // Entries by sequence number. With to_seq the bundle ends at it exactly (not at the
  // checkpoint that covers it): shared-records segments (db/shared.hpp) are cut this way.
  std::optional<std::int64_t> from_seq, to_seq;
};

// Writes a bundle as JSON lines: a header, every CA and audit certificate, the journal
// entries (a contiguous run from the first matching entry to the checkpoint that covers
// the last one) with their record lists, the current record rows the matching entries
// vouch for, the checkpoints, and last a signature by the audit key over all lines
// before it. Returns the number of entries written.
std::int64_t write_bundle(Connection& c, CheckpointSigner& signer, const ExportFilter& f, std::ostream& out,
                          const nlohmann::json& extra_header = nlohmann::json::object());

// Verifies a bundle offline against a trusted root certificate (DER). Errc::parse_error
// for an unreadable bundle; a report with ok=false for a tampered one.
VerifyReport verify_bundle(std::istream& in, ByteView trusted_root_der);

// Whether `text` is an audit bundle (its first line is a station-audit-bundle-v1 header).
bool is_bundle(std::string_view text);
// The serial/MAC counters a bundle carries (its `serial_counters` record lines: the values
// as of its last entry that touched each), as high-water marks taken at its last entry.
// Verify the bundle first: this only reads it. Errc::parse_error when malformed.
HighWater highwater_of_bundle(std::string_view text);

}  // namespace station::db
