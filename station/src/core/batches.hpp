// Batches (work orders): what a run of devices gets, and the serial numbers it hands out.
// Every change is journaled (subject "batch:NAME").
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/station.hpp"

namespace station::core {

struct BatchSettings {
  std::string product;
  std::int64_t quantity = 0;
  // Serial pattern: literal text with {yyyy} {yy} {mm} {dd} (fixed when the batch opens)
  // and one {seq:0N} (N digits, zero-padded; {seq} without width means no padding).
  // {seq} counts per rendered prefix across batches, so two batches never collide.
  std::string serial_pattern = "SN-{yyyy}-{seq:06}";
  std::string mac_source = "device";  // "device" (as the chip reports) | "pool:OUI:FIRST-LAST" (hex)
  std::string profile;                 // certificate profile (empty: the config's default)
  std::string label_template = "default";
  std::string key_mode = "station";    // "station" (generated and injected) | "on-device"
  std::string curve = "P-256";         // DPP curve
  bool lock = false;                   // lock the provisioning area after verification
  // Trusted configurator public keys (DER SPKI, base64) loaded into every device, so it can
  // authenticate the enterprise's configurator (mutual authentication) with no key carried
  // to it later.
  std::vector<std::string> configurator_keys;

  nlohmann::json to_json() const;
  static BatchSettings from_json(const nlohmann::json& j);
  // Errc::invalid_argument naming the setting and the reason.
  void validate() const;
};

struct BatchCounts {
  std::int64_t done = 0, failed = 0, voided = 0, in_flight = 0;
};

struct Batch {
  std::int64_t id = 0;
  std::string name;
  std::string state;  // open | paused | closed
  BatchSettings settings;
  std::string prefix;  // the serial pattern's rendered text before {seq}, fixed at open
  std::string created;
  std::optional<std::string> closed;
  BatchCounts counts;
};

// Renders the pattern's date fields at `when`: returns {prefix, width, suffix} where the
// serial is prefix + seq (zero-padded to width) + suffix.
struct SerialPattern {
  std::string prefix, suffix;
  int width = 0;
  std::string render(std::int64_t seq) const;
};
SerialPattern parse_serial_pattern(const std::string& pattern, std::chrono::system_clock::time_point when);

Batch open_batch(Station& station, const std::string& name, const BatchSettings& settings, const std::string& actor);
Batch set_batch_state(Station& station, const std::string& name, const std::string& to, const std::string& actor);
std::optional<Batch> find_batch(Station& station, const std::string& name);
std::vector<Batch> list_batches(Station& station);
std::vector<Batch> list_batches(db::Records& records);  // e.g. on a Station::reader()

// Reserves the next serial for the batch: takes the counter for its prefix and advances it
// inside `conn` (call from a journal mutation so the reservation and its record commit
// together). Returns the serial and the counter row it changed.
// Refuses (Errc::tampered, with the fix) while the database is behind its high-water marks
// (db/highwater.hpp: restored from an older backup).
std::pair<std::string, db::RowRef> next_serial(db::Connection& conn, const Batch& batch);
// The next MAC (12 lowercase hex digits) of a batch whose mac_source is a pool; the counter
// is per OUI. Errc::constraint_violation when the pool is used up. Same restore guard.
std::pair<std::string, db::RowRef> next_mac(db::Connection& conn, const Batch& batch);

// Closes a batch: reconciles done/failed/voided against the quantity and writes the
// customer manifest (an audit bundle of the batch, signed with the audit key, verifiable
// with `station audit verify --bundle`) to `manifest`.
struct CloseResult {
  Batch batch;
  std::int64_t missing = 0;  // quantity - done
  std::filesystem::path manifest;
};
CloseResult close_batch(Station& station, const std::string& name, const std::filesystem::path& manifest,
                        const std::string& actor);

nlohmann::json to_json(const Batch& b);

}  // namespace station::core

namespace station::core {

// After a restore from an older backup: raises every serial/MAC counter that is below the
// high-water marks (the file beside the database, or `marks_file`, e.g. a copy kept with
// an audit export) to its mark, journaled ("db.resumed_after_restore", with the checkpoint
// the marks came from), so allocation can go on without repeating a number. Returns the
// counters raised ("prefix: from -> to"); empty when none was behind.
std::vector<std::string> resume_after_restore(Station& station, const std::string& actor,
                                              const std::optional<std::filesystem::path>& marks_file);

}  // namespace station::core
