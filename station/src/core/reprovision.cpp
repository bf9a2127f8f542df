#include "core/reprovision.hpp"

#include <fmt/format.h>

#include "core/batches.hpp"
#include "pki/ca.hpp"

namespace station::core {
namespace {

nlohmann::json or_null(const std::optional<std::string>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); }

std::optional<Batch> batch_by_id(Station& s, std::int64_t id) {
  for (auto& b : list_batches(s))
    if (b.id == id) return b;
  return std::nullopt;
}

// Inside the unit's transaction: the device is still in `state` (a line or another officer may
// have acted since it was read) and none of the certificates to revoke was revoked meanwhile.
void require_unchanged(db::Connection& c, const db::DeviceRecord& d, const std::string& state,
                       const std::vector<db::IdentityRecord>& to_revoke) {
  auto st = c.prepare("SELECT state FROM devices WHERE id = ?");
  st.bind(1, d.id);
  if (!st.step()) throw Error(Errc::not_found, fmt::format("device {} is gone from the records", d.serial));
  if (const auto now = st.text(0); now != state)
    throw Error(Errc::invalid_argument,
                fmt::format("device {} changed to '{}' meanwhile; nothing was changed, run the command again", d.serial,
                            now));
  for (const auto& i : to_revoke) {
    auto q = c.prepare("SELECT status FROM identities WHERE id = ?");
    q.bind(1, i.id);
    if (q.step() && q.text(0) == "revoked")
      throw Error(Errc::invalid_argument,
                  fmt::format("certificate {} was revoked meanwhile; nothing was changed, run the command again",
                              i.cert_serial));
  }
}

}  // namespace

ReprovisionResult reprovision_device(Station& s, const Actor& officer, const ReprovisionRequest& req) {
  if (req.why.empty())
    throw Error(Errc::invalid_argument, "say why the device is re-provisioned (--reason TEXT): the journal keeps it");
  const auto revoke_reason = std::string(pki::to_string(pki::revocation_reason_from_string(req.revoke_reason)));
  auto& records = s.records();
  const auto d = records.device_by_serial(req.serial);
  if (!d) throw Error(Errc::not_found, fmt::format("no device with serial {}", req.serial));
  ReprovisionResult out;
  out.serial = d->serial;
  out.chip_id = d->chip_id;
  out.mac = d->mac;
  std::optional<std::int64_t> target_id;
  std::string expected_state;  // what the device must still be inside the transaction
  if (!d->batch_id) {
    // Issued with `station issue`, no line: its next certificate comes from `station issue`.
    if (req.batch)
      throw Error(Errc::invalid_argument,
                  fmt::format("device {} was issued outside a batch (station issue): it gets its new certificate from "
                              "station issue --serial {}, not from a line; leave out --batch",
                              req.serial, req.serial));
    if (d->state != "issued")
      throw Error(Errc::invalid_argument,
                  fmt::format("device {} is '{}': it was re-provisioned already; issue its new certificate with: "
                              "station issue --pubkey NEW_KEY.pem --serial {}",
                              req.serial, d->state, req.serial));
    expected_state = "issued";
  } else {
    const auto from = batch_by_id(s, *d->batch_id);
    if (!from) throw Error(Errc::not_found, fmt::format("the batch of device {} is gone from the records", req.serial));
    if (d->state != "done")
      throw Error(Errc::invalid_argument,
                  fmt::format("device {} is '{}', not done: a device that is not done needs no officer, it resumes "
                              "where it stopped when it is next in a fixture of its batch's line",
                              req.serial, d->state));
    const std::string target_name = req.batch.value_or(from->name);
    const auto target = target_name == from->name ? from : find_batch(s, target_name);
    if (!target)
      throw Error(Errc::not_found,
                  fmt::format("no batch named {}; open one to re-provision in with: station batch open", target_name));
    if (target->state == "closed")
      throw Error(Errc::invalid_argument,
                  fmt::format("batch {} is closed; name an open batch to provision device {} in (--batch NAME), e.g. "
                              "a rework batch opened with: station batch open",
                              target->name, req.serial));
    out.was_locked = from->settings.lock;
    if (out.was_locked && !req.erased)
      throw Error(Errc::invalid_argument,
                  fmt::format("device {} was locked when provisioned (batch {} locks): it refuses a new identity until "
                              "its provisioning area is erased; erase it at the rework bench, then run this again with "
                              "--erased",
                              req.serial, from->name));
    out.from_batch = from->name;
    out.batch = target->name;
    target_id = target->id;
    expected_state = "done";
  }
  std::vector<db::IdentityRecord> to_revoke;
  for (auto& i : records.identities_of(d->id)) {
    if (i.status == "revoked") out.already_revoked.push_back(i.cert_serial);
    else if (i.status == "active") to_revoke.push_back(std::move(i));
    // voided: never delivered, already in the CRLs as voided
  }

  const std::string subject = "device:" + d->serial;
  const std::string now = db::now_rfc3339();
  std::vector<db::Journal::Request> unit;
  auto revoked = nlohmann::json::array();
  for (const auto& i : to_revoke) {
    unit.emplace_back(db::EntryRequest{officer.name, "device.revoked", subject,
                                       {{"serial", d->serial}, {"cert_serial", i.cert_serial}, {"issuer", i.issuer_key_id},
                                        {"reason", revoke_reason}, {"officer", officer.name}, {"reprovisioned", true}}},
                      [i, revoke_reason, now](db::Connection& c) {
                        return std::vector<db::RowRef>{
                            db::insert_revocation(c, {0, i.cert_serial, i.issuer_key_id, revoke_reason, now}),
                            db::set_identity_status(c, i.id, "revoked")};
                      });
    revoked.push_back(i.cert_serial);
    out.revoked.push_back({d->serial, i.cert_serial, i.issuer_key_id});
  }
  unit.emplace_back(db::EntryRequest{officer.name, "device.reprovisioned", subject,
                                     {{"serial", d->serial},
                                      {"chip_id", or_null(out.chip_id)},
                                      {"mac", or_null(out.mac)},
                                      {"officer", officer.name},
                                      {"why", req.why},
                                      {"from_batch", or_null(out.from_batch)},
                                      {"batch", or_null(out.batch)},
                                      {"revoked_cert_serials", revoked},
                                      {"already_revoked", out.already_revoked},
                                      {"revoke_reason", revoke_reason},
                                      {"was_locked", out.was_locked},
                                      {"erased", req.erased}}},
                    [id = d->id, target_id](db::Connection& c) {
                      return std::vector<db::RowRef>{target_id ? db::set_device_batch(c, id, *target_id)
                                                               : db::set_device_state(c, id, "reserved")};
                    });
  // The unit's first mutation checks, inside the transaction, that nothing changed since
  // the records were read above (a line or another officer may have acted meanwhile).
  unit.front().second = [first = std::move(unit.front().second), device = *d, to_revoke,
                         expected_state](db::Connection& c) {
    require_unchanged(c, device, expected_state, to_revoke);
    return first(c);
  };
  const auto entries = s.journal().commit_together(std::move(unit));
  out.seq = entries.back().seq;
  return out;
}

nlohmann::json to_json(const ReprovisionResult& r) {
  auto revoked = nlohmann::json::array();
  for (const auto& d : r.revoked) revoked.push_back({{"cert_serial", d.cert_serial}, {"issuer", d.issuer_key_id}});
  return {{"serial", r.serial},
          {"chip_id", or_null(r.chip_id)},
          {"mac", or_null(r.mac)},
          {"state", "reserved"},
          {"from_batch", or_null(r.from_batch)},
          {"batch", or_null(r.batch)},
          {"revoked", revoked},
          {"already_revoked", r.already_revoked},
          {"was_locked", r.was_locked},
          {"seq", r.seq}};
}

}  // namespace station::core
