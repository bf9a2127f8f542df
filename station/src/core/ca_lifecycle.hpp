// The CA lifecycle (issue 10): issuing-CA and root rotation, revocation, CRLs, the
// two-person rule and trust bundles. Every change is one journal entry naming the
// officers involved; docs/ca.md describes the ceremonies.
//
// For the pipeline and the HTTP API:
// - current_issuer(): the issuing CA for a device certificate now (announced moments are
//   honoured; issue_device_certificate re-checks it inside the record's transaction).
// - trust_anchors(): the roots a device provisioned now must trust (both during an overlap).
// - refresh_crls(): re-signs CRLs that are due; call it periodically (e.g. hourly).
// - crl_health(): stale-CRL alarms for the operator's page.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/station.hpp"
#include "core/users.hpp"
#include "db/records.hpp"

namespace station::core {

using SysSeconds = std::chrono::sys_seconds;
SysSeconds now_seconds();
// "2026-11-22T01:02:03Z" -> time; Errc::invalid_argument naming `what` otherwise.
SysSeconds parse_rfc3339(const std::string& text, const std::string& what);
// "90s", "30m", "24h", "7d" -> seconds; Errc::invalid_argument otherwise.
std::chrono::seconds parse_duration(const std::string& text, const std::string& what);

// How long things last. Defaults suit a factory: issuing-CA CRLs for 7 days re-signed
// 2 days before they lapse; root CRLs for 90 days; proposals for 24 hours.
struct CaTiming {
  std::chrono::seconds issuing_crl_validity = std::chrono::hours(24 * 7);
  std::chrono::seconds root_crl_validity = std::chrono::hours(24 * 90);
  std::chrono::seconds resign_before = std::chrono::hours(24 * 2);
};

// ---- issuer selection and trust anchors

// The issuing CA that signs device certificates at `now`. Errc::not_found when none;
// Errc::config_error when it is revoked (rotate first: never fall back to an older CA).
db::CaRecord current_issuer(Station& station, SysSeconds now = now_seconds());
// Active roots, plus retired roots whose overlap window (trust_until) has not ended.
std::vector<db::CaRecord> trust_anchors(Station& station, SysSeconds now = now_seconds());

// ---- rotations

struct RotationResult {
  std::vector<db::CaRecord> created;  // in creation order
  std::string effective;              // when the new issuing CA takes over (RFC 3339)
  nlohmann::json details;             // what the journal entry says
};

// A new issuing-CA key in the station's token and its certificate under the active root.
// From `at` (default: now) new device certificates use it; the old issuing CA is retired
// then, stays valid for verification and keeps getting CRLs. Any officer may do this.
RotationResult rotate_issuing(Station& station, const Actor& officer, std::optional<SysSeconds> at = std::nullopt);

struct RootRotationOptions {
  std::optional<std::string> token_label;  // the new root key's token (e.g. normally offline)
  std::optional<std::string> pin;          // that token's PIN reference (file:PATH | env:VAR)
  std::optional<std::string> subject;      // default: the configured root subject + " G<n>"
  int overlap_days = 365;                  // the old root stays a trust anchor this long
  std::optional<SysSeconds> at;            // when the new issuing CA takes over (default: approval)
};

// ---- the two-person rule

struct ProposalOptions {
  std::chrono::seconds expires_in = std::chrono::hours(24);
};

db::ProposalRecord propose_root_rotation(Station& station, const Actor& officer, const RootRotationOptions& options,
                                         const ProposalOptions& proposal = {});
// Revoking an issuing CA (by key_id): all its certificates (and so all its devices).
db::ProposalRecord propose_ca_revocation(Station& station, const Actor& officer, const std::string& key_id,
                                         const std::string& reason, const ProposalOptions& proposal = {});
// Destroying a retired or revoked CA's key in the HSM.
db::ProposalRecord propose_key_destruction(Station& station, const Actor& officer, const std::string& key_id,
                                           const ProposalOptions& proposal = {});

// A second, different officer approves a pending, unexpired proposal; the ceremony runs
// and is journaled with both officers. Refusals are journaled too.
RotationResult approve(Station& station, const Actor& approver, const std::string& ref,
                       SysSeconds now = now_seconds());

nlohmann::json proposal_json(const db::ProposalRecord& p);

// ---- revocation of device certificates (one officer)

struct RevokeSelector {
  std::optional<std::string> cert_serial;   // hex
  std::optional<std::string> device_serial;
  std::optional<std::string> batch;
};
struct RevokedDevice {
  std::string device_serial, cert_serial, issuer_key_id;
};
std::vector<RevokedDevice> revoke_devices(Station& station, const Actor& officer, const RevokeSelector& selector,
                                          const std::string& reason);

// ---- CRLs

struct CrlState {
  std::string key_id, role, subject;
  std::int64_t crl_number = 0;             // 0: never published
  std::string this_update, next_update;
  std::int64_t entries = 0;
  bool signed_now = false;
  bool stale = false;
  std::string alarm;                       // why it is stale, and what to do
  std::optional<std::filesystem::path> file;
};

// Signs a new CRL for every CA key that needs one: none yet, revocations since the last,
// or within `resign_before` of nextUpdate (or always with `force`). Roots whose token is
// not present are skipped with an alarm (only_issuing skips roots altogether: the periodic
// re-signing of issuing-CA CRLs). Writes every CA's latest CRL as PEM into `out` when given.
std::vector<CrlState> refresh_crls(Station& station, const std::string& actor, const std::optional<std::filesystem::path>& out,
                                   bool force = false, bool only_issuing = false, const CaTiming& timing = {},
                                   SysSeconds now = now_seconds());
// Every CA's CRL state now, with stale-CRL alarms (no CRL, nextUpdate passed, or
// revocations not yet published). Reads only.
std::vector<CrlState> crl_health(Station& station, SysSeconds now = now_seconds());

// ---- trust bundle

struct BundleFiles {
  std::filesystem::path pem, manifest, signature, audit_certificate;
};
// FILE: the trust anchors as PEM; FILE.manifest.json lists them (and the cross-certificates
// and issuing CAs) with hashes; FILE.manifest.sig is the audit key's DER ECDSA signature
// over SHA-256 of the manifest bytes; FILE.audit.pem the audit certificate to check it.
BundleFiles export_trust_bundle(Station& station, const std::string& actor, const std::filesystem::path& file);

}  // namespace station::core
