// Re-provisioning a done device: a security officer's decision (DESIGN.md: "the same chip
// never gets two identities unless a security officer re-provisions it"). One journal unit
// revokes the device's certificates and sets the device back to `reserved` in an open batch;
// the line then gives it a new key and certificate when the chip is next in a fixture,
// keeping its serial number, chip id and MAC. docs/pipeline.md, "Re-provisioning".
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/ca_lifecycle.hpp"
#include "core/station.hpp"
#include "core/users.hpp"

namespace station::core {

struct ReprovisionRequest {
  std::string serial;                  // the device's serial number
  std::string why;                     // the officer's reason, in words (journaled)
  std::optional<std::string> batch;    // the open batch to provision it in (default: its own)
  std::string revoke_reason = "superseded";  // RFC 5280 reason for its certificates
  bool erased = false;                 // a device that was locked: its provisioning area has been erased
};

struct ReprovisionResult {
  std::string serial;
  std::optional<std::string> chip_id, mac;
  // Where it was done and where it is provisioned again; nullopt for a device issued with
  // `station issue` (no batch), whose next certificate `station issue` makes.
  std::optional<std::string> from_batch, batch;
  std::vector<RevokedDevice> revoked;     // certificates revoked now
  std::vector<std::string> already_revoked;  // its certificates revoked before
  bool was_locked = false;
  std::int64_t seq = 0;                   // the journal entry
};

// Refuses (nothing changed) with the problem and the fix named: Errc::not_found for an
// unknown serial or batch; Errc::invalid_argument for a line device that is not done (it
// resumes at the line by itself), an empty reason, a closed target batch, or a device that
// was locked unless `erased`. A device issued with `station issue` (no batch, state
// `issued`) becomes `reserved` without a batch: `station issue --serial` then issues its
// next certificate. Revokes each certificate of the device not revoked yet (one
// `device.revoked` entry each, as `station ca revoke` does) and journals
// `device.reprovisioned`, all as one unit: every entry and row change lands, or none does.
ReprovisionResult reprovision_device(Station& station, const Actor& officer, const ReprovisionRequest& request);

nlohmann::json to_json(const ReprovisionResult& r);

}  // namespace station::core
