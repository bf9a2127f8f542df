#include "core/ca_lifecycle.hpp"

#include <fcntl.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <ctime>
#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>

#include "common/ossl.hpp"
#include "pki/ca.hpp"

namespace station::core {
namespace fs = std::filesystem;

SysSeconds now_seconds() { return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now()); }

SysSeconds parse_rfc3339(const std::string& text, const std::string& what) {
  std::tm tm{};
  char z = 0;
  int consumed = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                  &tm.tm_min, &tm.tm_sec, &z, &consumed) != 7 ||
      z != 'Z' || static_cast<std::size_t>(consumed) != text.size())
    throw Error(Errc::invalid_argument, fmt::format("{} '{}' is not an RFC 3339 UTC time like 2026-11-22T08:00:00Z",
                                                    what, text));
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return SysSeconds(std::chrono::seconds(::timegm(&tm)));
}

std::chrono::seconds parse_duration(const std::string& text, const std::string& what) {
  std::size_t used = 0;
  long long n = -1;
  try {
    n = std::stoll(text, &used);
  } catch (const std::exception&) {
  }
  const std::string unit = used < text.size() ? text.substr(used) : "";
  long long mul = 0;
  if (unit == "s") mul = 1;
  else if (unit == "m") mul = 60;
  else if (unit == "h") mul = 3600;
  else if (unit == "d") mul = 86400;
  if (n <= 0 || mul == 0 || n > 3650LL * 86400 / mul)
    throw Error(Errc::invalid_argument, fmt::format("{} '{}' is not a duration like 90s, 30m, 24h or 7d", what, text));
  return std::chrono::seconds(n * mul);
}

namespace {

std::string iso(SysSeconds t) { return pki::rfc3339(t); }

std::string stamp(SysSeconds t) {
  std::string s = iso(t);
  std::erase(s, '-');
  std::erase(s, ':');
  return s;
}

std::string random_ref() {
  unsigned char r[8];
  if (::RAND_bytes(r, sizeof r) != 1) throw ossl::error("RAND_bytes");
  return hex_encode(ByteView(r, sizeof r));
}

nlohmann::json ca_json(const db::CaRecord& r) {
  return {{"role", r.role}, {"key_id", r.key_id}, {"key_label", r.key_label}, {"subject", r.subject},
          {"serial", r.serial}, {"sha256", r.sha256}, {"issuer_key_id", r.issuer_key_id}, {"not_after", r.not_after}};
}

// The HSMs CA keys live in: the station's own token, and other tokens (e.g. an offline
// root token) named in ca_keys, opened only when a key there must sign.
class KeyRing {
 public:
  explicit KeyRing(Station& s) : station_(s) {}

  pki::Hsm& for_key(const std::string& key_id) {
    const auto k = station_.records().ca_key(key_id);
    if (!k || !k->token_label) return station_.hsm();
    return token(*k->token_label, k->pin.value_or(""));
  }

  pki::Hsm& token(const std::string& label, const std::string& pin) {
    if (label == station_.config().hsm.token_label) return station_.hsm();
    auto& slot = others_[label];
    if (!slot) {
      prepare_hsm_environment(station_.config());
      pki::HsmConfig c = station_.config().hsm_config();
      c.token_label = label;
      c.pin = pin;
      try {
        slot = pki::Hsm::open(c);
      } catch (const Error& e) {
        others_.erase(label);
        throw Error(e.code(), fmt::format("token '{}' (PIN {}) cannot be used: {}; connect the token and retry", label,
                                          pin, e.what()),
                    e.native());
      }
    }
    return *slot;
  }

 private:
  Station& station_;
  std::map<std::string, std::unique_ptr<pki::Hsm>> others_;
};

// Removes keys a failed ceremony generated, so a token keeps nothing unrecorded.
struct KeyCleanup {
  std::vector<std::pair<pki::Hsm*, std::string>> keys;
  void keep() { keys.clear(); }
  ~KeyCleanup() {
    for (const auto& [hsm, id] : keys) {
      try {
        hsm->destroy_key(id);
      } catch (const std::exception& e) {
        spdlog::error("could not remove key {} after a failed ceremony: {}", id, e.what());
      }
    }
  }
};

std::string next_subject(const std::string& configured, std::size_t n) {
  // "..., CN=Station Issuing CA 1" -> "..., CN=Station Issuing CA <n>"; otherwise append " <n>".
  std::string base = configured;
  auto end = base.size();
  while (end > 0 && std::isdigit(static_cast<unsigned char>(base[end - 1])) != 0) --end;
  if (end < base.size() && end > 0 && base[end - 1] == ' ') base.resize(end - 1);
  return fmt::format("{} {}", base, n);
}

std::size_t count_role(const std::vector<db::CaRecord>& cas, const std::string& role) {
  std::size_t n = 0;
  for (const auto& c : cas) n += c.role == role ? 1 : 0;
  return n;
}

pki::CaCurve curve_of(Station& s) { return pki::ca_curve_from_string(s.config().ca.curve); }

db::CaRecord active_root(Station& s) {
  auto root = s.records().active_ca("root");
  if (!root) throw Error(Errc::not_found, "no active root CA in the records; the station is incomplete");
  return *root;
}

// Active issuing CAs other than the current one are retired once their successor is in
// effect (an announced moment may have passed since the rotation). Journaled.
void settle_issuing(Station& s, const std::string& actor, SysSeconds now) {
  const auto current = db::issuing_ca_at(s.records().connection(), iso(now));
  if (!current) return;
  for (const auto& ca : s.records().cas()) {
    if (ca.role != "issuing" || ca.status != "active" || ca.id == current->id) continue;
    if (ca.id > current->id) continue;  // announced for later: still waiting
    s.journal().commit({actor, "ca.retired", "ca:" + ca.key_id,
                        {{"key_id", ca.key_id}, {"successor", current->key_id}, {"reason", "successor in effect"}}},
                       [&](db::Connection& c) { return std::vector<db::RowRef>{db::set_ca_status(c, ca.id, "retired")}; });
  }
}

db::ProposalRecord make_proposal(Station& s, const Actor& officer, const std::string& action, nlohmann::json params,
                                 const ProposalOptions& o, const std::string& subject) {
  db::ProposalRecord p;
  p.ref = random_ref();
  p.action = action;
  p.params = params.dump();
  p.proposer = officer.name;
  const auto now = now_seconds();
  p.created = iso(now);
  p.expires = iso(now + o.expires_in);
  p.status = "pending";
  s.journal().commit({officer.name, "ca.proposed", subject,
                      {{"proposal", p.ref}, {"action", action}, {"params", params}, {"proposer", officer.name},
                       {"expires", p.expires}}},
                     [&](db::Connection& c) {
                       const auto row = db::insert_proposal(c, p);
                       p.id = row.id;
                       return std::vector<db::RowRef>{row};
                     });
  return p;
}

// ---- ceremonies run on approval

RotationResult run_root_rotation(Station& s, const db::ProposalRecord& p, const Actor& approver, SysSeconds now) {
  const auto params = nlohmann::json::parse(p.params);
  KeyRing ring(s);
  const db::CaRecord old_root = active_root(s);
  const auto old_issuing = db::issuing_ca_at(s.records().connection(), iso(now));
  const auto cas = s.records().cas();
  const std::optional<std::string> token_label =
      params.contains("token_label") ? std::optional<std::string>(params["token_label"].get<std::string>()) : std::nullopt;
  const std::optional<std::string> pin =
      params.contains("pin") ? std::optional<std::string>(params["pin"].get<std::string>()) : std::nullopt;
  const std::string subject = params.contains("subject")
                                  ? params["subject"].get<std::string>()
                                  : fmt::format("{} G{}", s.config().ca.root_subject, count_role(cas, "root") + 1);
  const int overlap_days = params.value("overlap_days", 365);
  const SysSeconds effective = params.contains("at") ? parse_rfc3339(params["at"], "at") : now;

  pki::Hsm& old_hsm = ring.for_key(old_root.key_id);
  pki::Hsm& new_root_hsm = token_label ? ring.token(*token_label, pin.value_or("")) : s.hsm();
  const auto curve = curve_of(s);
  KeyCleanup cleanup;
  const auto root_key = new_root_hsm.generate_ca_key(curve, "station-root-ca-" + stamp(now));
  cleanup.keys.emplace_back(&new_root_hsm, root_key.key_id);
  const auto issuing_key = s.hsm().generate_ca_key(curve, "station-issuing-ca-" + stamp(now));
  cleanup.keys.emplace_back(&s.hsm(), issuing_key.key_id);

  const pki::CaCertRequest root_req{pki::CaKind::root, subject, s.config().ca.root_validity_days, &root_key, nullptr};
  const Bytes root_der = pki::make_ca_certificate(new_root_hsm, root_req);
  const pki::CaSigner new_signer{root_der, root_key.key_id};
  const pki::CaSigner old_signer{old_root.der, old_root.key_id};
  // The old root certifies the new root's key, and the new root the old one's (RFC 4158 §2.3).
  const Bytes cross_old_new = pki::make_cross_certificate(old_hsm, root_der, old_signer);
  const Bytes cross_new_old = pki::make_cross_certificate(new_root_hsm, old_root.der, new_signer);
  const pki::CaCertRequest issuing_req{pki::CaKind::issuing,
                                       next_subject(s.config().ca.issuing_subject, count_role(cas, "issuing") + 1),
                                       s.config().ca.issuing_validity_days, &issuing_key, &new_signer};
  const Bytes issuing_der = pki::make_ca_certificate(new_root_hsm, issuing_req);

  RotationResult out;
  out.effective = iso(effective);
  std::vector<db::CaRecord> made = {ca_record(root_der, "root", root_key.label, root_key.key_id),
                                    ca_record(cross_old_new, "cross", root_key.label, old_root.key_id),
                                    ca_record(cross_new_old, "cross", old_root.key_label, root_key.key_id),
                                    ca_record(issuing_der, "issuing", issuing_key.label, root_key.key_id)};
  const std::string trust_until = iso(now + std::chrono::hours(24) * overlap_days);
  out.details = {{"proposal", p.ref},
                 {"proposer", p.proposer},
                 {"approver", approver.name},
                 {"old_root", old_root.key_id},
                 {"new_root", ca_json(made[0])},
                 {"cross_certificates", {ca_json(made[1]), ca_json(made[2])}},
                 {"new_issuing", ca_json(made[3])},
                 {"effective", out.effective},
                 {"old_root_trusted_until", trust_until},
                 {"root_token", token_label ? nlohmann::json(*token_label) : nlohmann::json(nullptr)}};
  s.journal().commit({approver.name, "ca.root.rotated", "ca:" + root_key.key_id, out.details},
                     [&](db::Connection& c) {
                       std::vector<db::RowRef> rows;
                       for (auto& r : made) {
                         rows.push_back(db::insert_ca(c, r));
                         r.id = rows.back().id;
                       }
                       db::CaKeyRecord rk;
                       rk.key_id = root_key.key_id;
                       rk.token_label = token_label;
                       rk.pin = pin;
                       rk.effective = iso(now);
                       rows.push_back(db::insert_ca_key(c, rk));
                       db::CaKeyRecord ik;
                       ik.key_id = issuing_key.key_id;
                       ik.effective = out.effective;
                       rows.push_back(db::insert_ca_key(c, ik));
                       rows.push_back(db::set_ca_key_trust_until(c, old_root.key_id, trust_until));
                       rows.push_back(db::set_ca_status(c, old_root.id, "retired"));
                       if (old_issuing && old_issuing->status == "active" && effective <= now)
                         rows.push_back(db::set_ca_status(c, old_issuing->id, "retired"));
                       rows.push_back(db::decide_proposal(c, p.id, "approved", approver.name));
                       return rows;
                     });
  cleanup.keep();
  out.created = std::move(made);
  return out;
}

RotationResult run_ca_revocation(Station& s, const db::ProposalRecord& p, const Actor& approver) {
  const auto params = nlohmann::json::parse(p.params);
  const std::string key_id = params.at("key_id");
  const std::string reason = params.at("reason");
  std::vector<db::CaRecord> certs;
  for (const auto& ca : s.records().cas())
    if (ca.key_id == key_id && ca.status != "revoked") certs.push_back(ca);
  if (certs.empty()) throw Error(Errc::not_found, fmt::format("CA {} has no certificate left to revoke", key_id));
  RotationResult out;
  nlohmann::json serials = nlohmann::json::array();
  for (const auto& c : certs) serials.push_back({{"serial", c.serial}, {"issuer_key_id", c.issuer_key_id}});
  out.details = {{"proposal", p.ref}, {"proposer", p.proposer}, {"approver", approver.name}, {"key_id", key_id},
                 {"reason", reason}, {"certificates", serials}};
  s.journal().commit({approver.name, "ca.revoked", "ca:" + key_id, out.details}, [&](db::Connection& c) {
    std::vector<db::RowRef> rows;
    for (const auto& ca : certs) {
      rows.push_back(db::insert_revocation(c, {0, ca.serial, ca.issuer_key_id, reason, db::now_rfc3339()}));
      rows.push_back(db::set_ca_status(c, ca.id, "revoked"));
    }
    rows.push_back(db::decide_proposal(c, p.id, "approved", approver.name));
    return rows;
  });
  return out;
}

RotationResult run_key_destruction(Station& s, const db::ProposalRecord& p, const Actor& approver) {
  const auto params = nlohmann::json::parse(p.params);
  const std::string key_id = params.at("key_id");
  KeyRing ring(s);
  RotationResult out;
  out.details = {{"proposal", p.ref}, {"proposer", p.proposer}, {"approver", approver.name}, {"key_id", key_id}};
  // Journaled first: if the token then fails, the record says the ceremony was approved and
  // the key can be destroyed again; never the other way round.
  s.journal().commit({approver.name, "ca.key.destroyed", "ca:" + key_id, out.details}, [&](db::Connection& c) {
    return std::vector<db::RowRef>{db::decide_proposal(c, p.id, "approved", approver.name)};
  });
  ring.for_key(key_id).destroy_key(key_id);
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------

db::CaRecord current_issuer(Station& s, SysSeconds now) {
  const auto ca = db::issuing_ca_at(s.records().connection(), iso(now));
  if (!ca) throw Error(Errc::not_found, "no issuing CA in effect; run `station init`, or wait for the announced moment");
  if (ca->status == "revoked")
    throw Error(Errc::config_error,
                fmt::format("the issuing CA {} is revoked; rotate it (`station ca rotate-issuing`) before issuing", ca->key_id));
  return *ca;
}

std::vector<db::CaRecord> trust_anchors(Station& s, SysSeconds now) {
  std::vector<db::CaRecord> out;
  for (const auto& ca : s.records().cas()) {
    if (ca.role != "root" || ca.status == "revoked") continue;
    if (ca.status == "active") {
      out.push_back(ca);
      continue;
    }
    const auto k = s.records().ca_key(ca.key_id);
    if (k && k->trust_until && *k->trust_until > iso(now)) out.push_back(ca);
  }
  return out;
}

RotationResult rotate_issuing(Station& s, const Actor& officer, std::optional<SysSeconds> at) {
  const auto now = now_seconds();
  const SysSeconds effective = at.value_or(now);
  if (effective < now - std::chrono::seconds(60))
    throw Error(Errc::invalid_argument, "--at is in the past; announce a moment from now on (or leave it out for now)");
  KeyRing ring(s);
  const db::CaRecord root = active_root(s);
  const auto old_issuing = db::issuing_ca_at(s.records().connection(), iso(now));
  pki::Hsm& root_hsm = ring.for_key(root.key_id);
  KeyCleanup cleanup;
  const auto key = s.hsm().generate_ca_key(curve_of(s), "station-issuing-ca-" + stamp(now));
  cleanup.keys.emplace_back(&s.hsm(), key.key_id);
  const pki::CaSigner root_signer{root.der, root.key_id};
  const auto cas = s.records().cas();
  const pki::CaCertRequest req{pki::CaKind::issuing,
                               next_subject(s.config().ca.issuing_subject, count_role(cas, "issuing") + 1),
                               s.config().ca.issuing_validity_days, &key, &root_signer};
  const Bytes der = pki::make_ca_certificate(root_hsm, req);
  RotationResult out;
  out.effective = iso(std::max(effective, now));
  db::CaRecord rec = ca_record(der, "issuing", key.label, root.key_id);
  out.details = {{"officer", officer.name},
                 {"new_issuing", ca_json(rec)},
                 {"previous_issuing", old_issuing ? nlohmann::json(old_issuing->key_id) : nlohmann::json(nullptr)},
                 {"root", root.key_id},
                 {"effective", out.effective}};
  s.journal().commit({officer.name, "ca.issuing.rotated", "ca:" + key.key_id, out.details}, [&](db::Connection& c) {
    std::vector<db::RowRef> rows;
    rows.push_back(db::insert_ca(c, rec));
    rec.id = rows.back().id;
    db::CaKeyRecord k;
    k.key_id = key.key_id;
    k.effective = out.effective;
    rows.push_back(db::insert_ca_key(c, k));
    if (old_issuing && old_issuing->status == "active" && effective <= now)
      rows.push_back(db::set_ca_status(c, old_issuing->id, "retired"));
    return rows;
  });
  cleanup.keep();
  out.created.push_back(std::move(rec));
  return out;
}

db::ProposalRecord propose_root_rotation(Station& s, const Actor& officer, const RootRotationOptions& o,
                                         const ProposalOptions& po) {
  nlohmann::json params = {{"overlap_days", o.overlap_days}};
  if (o.overlap_days < 1 || o.overlap_days > 36500)
    throw Error(Errc::invalid_argument, "--overlap-days must be 1 to 36500");
  if (o.token_label.has_value() != o.pin.has_value())
    throw Error(Errc::invalid_argument, "a separate root token needs both --root-token-label and --root-pin");
  if (o.token_label) {
    pki::PinRef::parse(*o.pin);  // a reference, never the PIN
    params["token_label"] = *o.token_label;
    params["pin"] = *o.pin;
  }
  if (o.subject) params["subject"] = *o.subject;
  if (o.at) params["at"] = iso(*o.at);
  return make_proposal(s, officer, "rotate-root", params, po, "ca:" + active_root(s).key_id);
}

db::ProposalRecord propose_ca_revocation(Station& s, const Actor& officer, const std::string& key_id,
                                         const std::string& reason, const ProposalOptions& po) {
  const auto r = pki::revocation_reason_from_string(reason);
  bool found = false;
  for (const auto& ca : s.records().cas()) {
    if (ca.key_id != key_id) continue;
    found = true;
    if (ca.role == "root" || ca.role == "cross")
      throw Error(Errc::invalid_argument,
                  "a root cannot be revoked by a CRL it signs itself; replace it with `station ca rotate-root`");
    if (ca.role == "audit") throw Error(Errc::invalid_argument, "the audit signer is not a CA");
    if (ca.status == "revoked") throw Error(Errc::already_exists, fmt::format("CA {} is already revoked", key_id));
  }
  if (!found) throw Error(Errc::not_found, fmt::format("no CA with key_id {} (see `station ca show`)", key_id));
  return make_proposal(s, officer, "revoke-ca", {{"key_id", key_id}, {"reason", std::string(pki::to_string(r))}}, po,
                       "ca:" + key_id);
}

db::ProposalRecord propose_key_destruction(Station& s, const Actor& officer, const std::string& key_id,
                                           const ProposalOptions& po) {
  bool found = false;
  for (const auto& ca : s.records().cas()) {
    if (ca.key_id != key_id) continue;
    found = true;
    if (ca.status == "active")
      throw Error(Errc::invalid_argument,
                  fmt::format("CA {} is active; rotate or revoke it before destroying its key", key_id));
  }
  if (!found) throw Error(Errc::not_found, fmt::format("no CA with key_id {} (see `station ca show`)", key_id));
  return make_proposal(s, officer, "destroy-key", {{"key_id", key_id}}, po, "ca:" + key_id);
}

RotationResult approve(Station& s, const Actor& approver, const std::string& ref, SysSeconds now) {
  require_role(s, approver, {"officer"}, "ca.approve");
  const auto p = s.records().proposal(ref);
  if (!p) throw Error(Errc::not_found, fmt::format("no proposal {}; list them with `station ca proposals`", ref));
  const std::string subject = "proposal:" + ref;
  if (p->status != "pending")
    throw deny(s, approver.name, "ca.approve", subject,
               fmt::format("proposal {} is already {}; nothing to approve", ref, p->status));
  if (p->proposer == approver.name)
    throw deny(s, approver.name, "ca.approve", subject,
               fmt::format("officer '{}' proposed {} and cannot also approve it; a second, different officer must",
                           approver.name, ref));
  if (now > parse_rfc3339(p->expires, "expires"))
    throw deny(s, approver.name, "ca.approve", subject,
               fmt::format("proposal {} expired at {}; propose the ceremony again", ref, p->expires));
  try {
    if (p->action == "rotate-root") return run_root_rotation(s, *p, approver, now);
    if (p->action == "revoke-ca") return run_ca_revocation(s, *p, approver);
    if (p->action == "destroy-key") return run_key_destruction(s, *p, approver);
    throw Error(Errc::internal, "unknown proposal action " + p->action);
  } catch (const Error& e) {
    if (e.code() != Errc::permission_denied)
      s.journal().commit({approver.name, "ca.approve.failed", subject,
                          {{"proposal", ref}, {"proposer", p->proposer}, {"approver", approver.name},
                           {"reason", e.what()}}});
    throw;
  }
}

nlohmann::json proposal_json(const db::ProposalRecord& p) {
  return {{"proposal", p.ref},
          {"action", p.action},
          {"params", nlohmann::json::parse(p.params)},
          {"proposer", p.proposer},
          {"created", p.created},
          {"expires", p.expires},
          {"status", p.status},
          {"approver", p.approver ? nlohmann::json(*p.approver) : nlohmann::json(nullptr)},
          {"decided", p.decided ? nlohmann::json(*p.decided) : nlohmann::json(nullptr)}};
}

std::vector<RevokedDevice> revoke_devices(Station& s, const Actor& officer, const RevokeSelector& sel,
                                          const std::string& reason_text) {
  const auto reason = std::string(pki::to_string(pki::revocation_reason_from_string(reason_text)));
  const int given = (sel.cert_serial ? 1 : 0) + (sel.device_serial ? 1 : 0) + (sel.batch ? 1 : 0);
  if (given != 1) throw Error(Errc::invalid_argument, "name exactly one of --cert-serial, --serial or --batch");
  auto& records = s.records();
  std::vector<db::IdentityRecord> ids;
  if (sel.cert_serial) {
    std::string hex;
    for (const char c : *sel.cert_serial)
      if (c != ':') hex.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    while (hex.size() > 1 && hex[0] == '0') hex.erase(0, 1);
    auto id = records.identity_by_cert_serial(hex);
    if (!id) throw Error(Errc::not_found, fmt::format("no device certificate with serial {}", *sel.cert_serial));
    ids.push_back(std::move(*id));
  } else if (sel.device_serial) {
    const auto d = records.device_by_serial(*sel.device_serial);
    if (!d) throw Error(Errc::not_found, fmt::format("no device with serial {}", *sel.device_serial));
    for (auto& i : records.identities_of(d->id))
      if (i.status != "revoked") ids.push_back(std::move(i));
  } else {
    for (auto& i : records.identities_of_batch(*sel.batch))
      if (i.status != "revoked") ids.push_back(std::move(i));
    if (ids.empty()) throw Error(Errc::not_found, fmt::format("batch {} has no certificate to revoke", *sel.batch));
  }
  std::vector<RevokedDevice> out;
  for (const auto& i : ids) {
    if (i.status == "revoked")
      throw Error(Errc::already_exists, fmt::format("certificate {} is already revoked", i.cert_serial));
    auto q = records.connection().prepare("SELECT serial FROM devices WHERE id = ?");
    q.bind(1, i.device_id);
    q.step();
    const std::string device = q.text(0);
    s.journal().commit({officer.name, "device.revoked", "device:" + device,
                        {{"serial", device}, {"cert_serial", i.cert_serial}, {"issuer", i.issuer_key_id},
                         {"reason", reason}, {"officer", officer.name}}},
                       [&](db::Connection& c) {
                         return std::vector<db::RowRef>{
                             db::insert_revocation(c, {0, i.cert_serial, i.issuer_key_id, reason, db::now_rfc3339()}),
                             db::set_identity_status(c, i.id, "revoked")};
                       });
    out.push_back({device, i.cert_serial, i.issuer_key_id});
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// CRLs

namespace {

std::vector<db::CaRecord> crl_issuers(Station& s) {
  std::vector<db::CaRecord> out;
  std::set<std::string> seen;
  for (const auto& ca : s.records().cas())
    if ((ca.role == "root" || ca.role == "issuing") && seen.insert(ca.key_id).second) out.push_back(ca);
  return out;
}

std::vector<pki::RevokedCertificate> revoked_under(Station& s, const std::string& key_id) {
  std::vector<pki::RevokedCertificate> out;
  std::set<std::string> serials;
  for (const auto& r : s.records().revocations(key_id)) {
    serials.insert(r.cert_serial);
    out.push_back({r.cert_serial, parse_rfc3339(r.time, "revocation time"), pki::revocation_reason_from_string(r.reason)});
  }
  // Certificates the pipeline voided (issued, never delivered) are listed too (issue 8).
  for (const auto& i : s.records().identities_by_issuer(key_id, "voided"))
    if (serials.insert(i.cert_serial).second)
      out.push_back({i.cert_serial, parse_rfc3339(i.created, "identity time"), pki::RevocationReason::cessationOfOperation});
  return out;
}

fs::path crl_file(const fs::path& dir, const db::CaRecord& ca) {
  return dir / fmt::format("{}-{}.crl.pem", ca.role, ca.key_id.substr(0, 16));
}

void write_atomically(const fs::path& path, const std::string& content) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(Errc::io_error, "cannot write " + tmp.string() + "; check the folder exists and is writable");
    out << content;
    if (!out.flush()) throw Error(Errc::io_error, "cannot write " + tmp.string());
  }
  fs::rename(tmp, path);
}

CrlState state_of(Station& s, const db::CaRecord& ca, SysSeconds now) {
  CrlState st;
  st.key_id = ca.key_id;
  st.role = ca.role;
  st.subject = ca.subject;
  const auto latest = s.records().latest_crl(ca.key_id);
  const auto pending = static_cast<std::int64_t>(revoked_under(s, ca.key_id).size());
  if (latest) {
    st.crl_number = latest->crl_number;
    st.this_update = latest->this_update;
    st.next_update = latest->next_update;
    st.entries = latest->entries;
  }
  if (!latest) {
    st.stale = true;
    st.alarm = fmt::format("{} CA {} has no CRL yet; run `station ca crl --data DIR --out FOLDER`", ca.role,
                           ca.key_id.substr(0, 16));
  } else if (parse_rfc3339(latest->next_update, "next_update") <= now) {
    st.stale = true;
    st.alarm = fmt::format("the CRL of {} CA {} is stale: its nextUpdate {} has passed; relying parties reject it. "
                           "Run `station ca crl --data DIR --out FOLDER` and publish it",
                           ca.role, ca.key_id.substr(0, 16), latest->next_update);
  } else if (pending > latest->entries) {
    st.stale = true;
    st.alarm = fmt::format("{} revocation(s) under {} CA {} are not in its published CRL yet; run `station ca crl`",
                           pending - latest->entries, ca.role, ca.key_id.substr(0, 16));
  }
  return st;
}

}  // namespace

std::vector<CrlState> crl_health(Station& s, SysSeconds now) {
  std::vector<CrlState> out;
  for (const auto& ca : crl_issuers(s)) out.push_back(state_of(s, ca, now));
  return out;
}

std::vector<CrlState> refresh_crls(Station& s, const std::string& actor, const std::optional<fs::path>& out_dir,
                                   bool force, bool only_issuing, const CaTiming& timing, SysSeconds now) {
  settle_issuing(s, actor, now);
  KeyRing ring(s);
  std::vector<CrlState> states;
  for (const auto& ca : crl_issuers(s)) {
    if (only_issuing && ca.role != "issuing") continue;
    const auto latest = s.records().latest_crl(ca.key_id);
    const auto revoked = revoked_under(s, ca.key_id);
    const auto validity = ca.role == "root" ? timing.root_crl_validity : timing.issuing_crl_validity;
    std::string why;
    if (force) why = "on demand";
    else if (!latest) why = "first";
    else if (static_cast<std::int64_t>(revoked.size()) != latest->entries) why = "new revocations";
    else if (parse_rfc3339(latest->next_update, "next_update") - timing.resign_before <= now) why = "nextUpdate near";
    if (!why.empty()) {
      try {
        const pki::CaSigner signer{ca.der, ca.key_id};
        pki::CrlRequest req;
        req.issuer = &signer;
        req.crl_number = static_cast<std::uint64_t>(latest ? latest->crl_number + 1 : 1);
        req.this_update = now;
        req.next_update = now + validity;
        req.revoked = revoked;
        const Bytes der = pki::make_crl(ring.for_key(ca.key_id), req);
        db::CrlRecord rec;
        rec.issuer_key_id = ca.key_id;
        rec.crl_number = static_cast<std::int64_t>(req.crl_number);
        rec.this_update = iso(req.this_update);
        rec.next_update = iso(req.next_update);
        rec.entries = static_cast<std::int64_t>(revoked.size());
        rec.sha256 = sha256_hex(der);
        rec.der = der;
        s.journal().commit({actor, "ca.crl.signed", "ca:" + ca.key_id,
                            {{"key_id", ca.key_id}, {"role", ca.role}, {"crl_number", rec.crl_number},
                             {"this_update", rec.this_update}, {"next_update", rec.next_update},
                             {"entries", rec.entries}, {"sha256", rec.sha256}, {"why", why}}},
                           [&](db::Connection& c) { return std::vector<db::RowRef>{db::insert_crl(c, rec)}; });
      } catch (const Error& e) {
        if (e.code() != Errc::hsm_unavailable && e.code() != Errc::hsm_pin_incorrect && e.code() != Errc::config_error)
          throw;
        spdlog::warn("CRL of {} CA {} not signed: {}", ca.role, ca.key_id, e.what());
      }
    }
    CrlState st = state_of(s, ca, now);
    st.signed_now = !why.empty() && s.records().latest_crl(ca.key_id) &&
                    s.records().latest_crl(ca.key_id)->this_update == iso(now);
    if (out_dir) {
      if (const auto l = s.records().latest_crl(ca.key_id)) {
        fs::create_directories(*out_dir);
        st.file = crl_file(*out_dir, ca);
        write_atomically(*st.file, pki::to_pem(l->der, "X509 CRL"));
      }
    }
    states.push_back(std::move(st));
  }
  return states;
}

// ---------------------------------------------------------------------------------------
// Trust bundle

BundleFiles export_trust_bundle(Station& s, const std::string& actor, const fs::path& file) {
  const auto now = now_seconds();
  const auto anchors = trust_anchors(s, now);
  if (anchors.empty()) throw Error(Errc::not_found, "no trusted root in the records");
  std::string pem;
  nlohmann::json roots = nlohmann::json::array(), cross = nlohmann::json::array(), issuing = nlohmann::json::array();
  for (const auto& r : anchors) {
    pem += pki::to_pem(r.der);
    const auto k = s.records().ca_key(r.key_id);
    roots.push_back({{"subject", r.subject}, {"key_id", r.key_id}, {"sha256", r.sha256}, {"not_after", r.not_after},
                     {"status", r.status},
                     {"trusted_until", k && k->trust_until ? nlohmann::json(*k->trust_until) : nlohmann::json(nullptr)}});
  }
  for (const auto& c : s.records().cas()) {
    const nlohmann::json j = {{"subject", c.subject}, {"key_id", c.key_id}, {"issuer_key_id", c.issuer_key_id},
                              {"sha256", c.sha256}, {"status", c.status}, {"pem", pki::to_pem(c.der)}};
    if (c.role == "cross") cross.push_back(j);
    if (c.role == "issuing") issuing.push_back(j);
  }
  const auto audit = s.records().active_ca("audit");
  if (!audit) throw Error(Errc::not_found, "no active audit certificate; the station is incomplete");
  const nlohmann::json manifest = {{"format", "station-trust-bundle-v1"},
                                   {"station_id", s.config().station_id},
                                   {"created", iso(now)},
                                   {"bundle_file", file.filename().string()},
                                   {"bundle_sha256", sha256_hex(as_bytes(pem))},
                                   {"roots", roots},
                                   {"cross_certificates", cross},
                                   {"issuing_cas", issuing},
                                   {"audit_certificate_sha256", audit->sha256}};
  const std::string manifest_text = manifest.dump(2) + "\n";
  const Bytes sig = s.audit_signer().sign(as_bytes(manifest_text));
  BundleFiles out{file, file.string() + ".manifest.json", file.string() + ".manifest.sig", file.string() + ".audit.pem"};
  if (file.has_parent_path()) fs::create_directories(file.parent_path());
  write_atomically(out.pem, pem);
  write_atomically(out.manifest, manifest_text);
  write_atomically(out.signature, std::string(sig.begin(), sig.end()));
  write_atomically(out.audit_certificate, pki::to_pem(audit->der));
  s.journal().commit({actor, "ca.bundle.exported", "station:" + s.config().station_id,
                      {{"file", file.string()}, {"bundle_sha256", manifest["bundle_sha256"]},
                       {"manifest_sha256", sha256_hex(as_bytes(manifest_text))},
                       {"roots", static_cast<int>(anchors.size())}}});
  return out;
}

}  // namespace station::core
