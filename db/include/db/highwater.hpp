// The restore guard. Serial numbers and pool MACs come from counters in the database
// (serial_counters). A database restored from a backup has counters from the past, and
// would hand out numbers again that devices already carry. So with every checkpoint the
// journal writes the counters' high-water marks to a file beside the database
// (<db>-highwater.json, replaced atomically); before allocating, the station checks its
// counters against that file and refuses while any is below its mark. `station db
// resume-after-restore` raises them (journaled), after which allocation goes on.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "db/sqlite.hpp"

namespace station::db {

struct HighWater {
  std::string station_id;
  std::int64_t seq = 0;        // the checkpoint the marks were taken with
  std::string hash;            // that entry's hash
  std::string time;
  std::map<std::string, std::int64_t> counters;  // serial_counters: prefix -> next value
};

std::filesystem::path highwater_path(const std::filesystem::path& db_path);

// The counters as the database holds them now.
std::map<std::string, std::int64_t> read_counters(Connection& conn);

// Writes the file (temporary file, fsync, rename, fsync of the folder). Throws io_error.
void write_highwater(const std::filesystem::path& file, const HighWater& marks);
// nullopt when there is no file; Errc::parse_error naming the file when it is malformed.
std::optional<HighWater> read_highwater(const std::filesystem::path& file);

// The counters below their marks: "SN-2026-: 12 < 40".
std::vector<std::string> counters_below(Connection& conn, const HighWater& marks);

// Throws Errc::tampered with the fix when the database behind `conn` has a counter below
// the marks beside it. Passing once is remembered for this process and database file
// (counters only grow), so the hot path pays one map lookup.
void require_above_highwater(Connection& conn);

}  // namespace station::db
