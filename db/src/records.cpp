#include "db/records.hpp"

#include <chrono>
#include <ctime>

#include <fmt/format.h>

#include "db/journal.hpp"
#include "internal/schema.hpp"

namespace station::db {

std::string now_rfc3339() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec);
}

Records::Records(const std::filesystem::path& path, bool read_only) : conn_(path, read_only) {
  if (!read_only) migrate();
  else if (conn_.user_version() > kSchemaVersion)
    throw Error(Errc::unsupported, fmt::format("database {} has schema version {}, newer than this station ({}); "
                                               "use the station version that wrote it",
                                               path.string(), conn_.user_version(), kSchemaVersion));
}

void Records::migrate() {
  const int version = conn_.user_version();
  if (version > kSchemaVersion) {
    throw Error(Errc::unsupported,
                fmt::format("the database has schema version {}, newer than this station understands ({}); "
                            "run the station version that wrote it, or restore a backup",
                            version, kSchemaVersion));
  }
  const auto& steps = schema_migrations();
  for (int v = version; v < kSchemaVersion; ++v) {
    Transaction tx(conn_);
    conn_.exec(steps[static_cast<std::size_t>(v)]);
    conn_.exec(fmt::format("PRAGMA user_version = {}", v + 1));
    tx.commit();
  }
}

RowRef insert_station(Connection& c, const std::string& station_id) {
  auto st = c.prepare("INSERT INTO stations(id, created) VALUES(?, ?)");
  st.bind(1, station_id).bind(2, now_rfc3339());
  st.run();
  return {"stations", c.last_insert_rowid()};
}

RowRef insert_ca(Connection& c, const CaRecord& ca) {
  auto st = c.prepare(
      "INSERT INTO ca_certificates(role, status, subject, issuer, serial, not_before, not_after, key_id, key_label, "
      "sha256, issuer_key_id, der, created) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)");
  st.bind(1, ca.role).bind(2, ca.status).bind(3, ca.subject).bind(4, ca.issuer).bind(5, ca.serial);
  st.bind(6, ca.not_before).bind(7, ca.not_after).bind(8, ca.key_id).bind(9, ca.key_label).bind(10, ca.sha256);
  st.bind(11, ca.issuer_key_id).bind(12, ByteView(ca.der)).bind(13, ca.created.empty() ? now_rfc3339() : ca.created);
  st.run();
  return {"ca_certificates", c.last_insert_rowid()};
}

namespace {

constexpr const char* kCaColumns =
    "id, role, status, subject, issuer, serial, not_before, not_after, key_id, key_label, sha256, issuer_key_id, der, "
    "created";

CaRecord read_ca(const Statement& st) {
  CaRecord ca;
  ca.id = st.int64(0);
  ca.role = st.text(1);
  ca.status = st.text(2);
  ca.subject = st.text(3);
  ca.issuer = st.text(4);
  ca.serial = st.text(5);
  ca.not_before = st.text(6);
  ca.not_after = st.text(7);
  ca.key_id = st.text(8);
  ca.key_label = st.text(9);
  ca.sha256 = st.text(10);
  ca.issuer_key_id = st.text(11);
  ca.der = st.blob(12);
  ca.created = st.text(13);
  return ca;
}

}  // namespace

std::vector<CaRecord> Records::cas() {
  // Roots first, then cross-certificates, issuing CAs and the audit signer, oldest first.
  auto st = conn_.prepare(fmt::format(
      "SELECT {} FROM ca_certificates ORDER BY CASE role WHEN 'root' THEN 0 WHEN 'cross' THEN 1 WHEN 'issuing' "
      "THEN 2 ELSE 3 END, id",
      kCaColumns));
  std::vector<CaRecord> out;
  while (st.step()) out.push_back(read_ca(st));
  return out;
}

std::optional<CaRecord> Records::active_ca(const std::string& role) {
  auto st = conn_.prepare(fmt::format(
      "SELECT {} FROM ca_certificates WHERE role = ? AND status = 'active' ORDER BY id DESC LIMIT 1", kCaColumns));
  st.bind(1, role);
  if (!st.step()) return std::nullopt;
  return read_ca(st);
}

bool Records::certificate_serial_used(const std::string& serial_hex) {
  auto st = conn_.prepare(
      "SELECT EXISTS(SELECT 1 FROM identities WHERE cert_serial = ?1) OR "
      "EXISTS(SELECT 1 FROM ca_certificates WHERE serial = ?1)");
  st.bind(1, serial_hex);
  st.step();
  return st.int64(0) != 0;
}

namespace {

// Names which uniqueness rule a constraint failure broke, in the operator's words.
[[noreturn]] void explain_constraint(const Error& e, const DeviceRecord& d, const IdentityRecord& i) {
  const std::string msg = e.what();
  std::string what;
  if (msg.find("devices.serial") != std::string::npos) what = fmt::format("device serial {} is already taken", d.serial);
  else if (msg.find("devices.mac") != std::string::npos) what = fmt::format("MAC {} already belongs to another device", d.mac.value_or("?"));
  else if (msg.find("devices.chip_id") != std::string::npos) what = fmt::format("chip id {} is already recorded", d.chip_id.value_or("?"));
  else if (msg.find("identities.pkhash") != std::string::npos) what = fmt::format("DPP key hash {} already belongs to another device", i.pkhash);
  else if (msg.find("identities.cert_serial") != std::string::npos) what = fmt::format("certificate serial {} was already issued", i.cert_serial);
  else if (msg.find("identities.cert_sha256") != std::string::npos) what = "this certificate is already recorded";
  else what = msg;
  throw Error(Errc::constraint_violation, what + "; nothing was recorded", e.native());
}

}  // namespace

RowRef insert_device(Connection& c, const DeviceRecord& d) {
  const std::string now = now_rfc3339();
  try {
    auto st = c.prepare(
        "INSERT INTO devices(serial, chip_id, mac, batch_id, fixture, state, reason, created, updated) "
        "VALUES(?,?,?,?,?,?,?,?,?)");
    st.bind(1, d.serial).bind(2, d.chip_id).bind(3, d.mac);
    if (d.batch_id) st.bind(4, *d.batch_id); else st.bind_null(4);
    st.bind(5, d.fixture).bind(6, d.state).bind(7, d.reason).bind(8, now).bind(9, now);
    st.run();
  } catch (const Error& e) {
    if (e.code() == Errc::constraint_violation) explain_constraint(e, d, IdentityRecord{});
    throw;
  }
  return {"devices", c.last_insert_rowid()};
}

RowRef insert_identity(Connection& c, const IdentityRecord& i) {
  try {
    auto si = c.prepare(
        "INSERT INTO identities(device_id, cert_serial, cert_sha256, cert_der, issuer_key_id, profile, public_key, "
        "pkhash, dpp_uri, key_mode, status, operator, created) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)");
    si.bind(1, i.device_id).bind(2, i.cert_serial).bind(3, i.cert_sha256).bind(4, ByteView(i.cert_der));
    si.bind(5, i.issuer_key_id).bind(6, i.profile).bind(7, ByteView(i.public_key)).bind(8, i.pkhash);
    si.bind(9, i.dpp_uri).bind(10, i.key_mode).bind(11, i.status).bind(12, i.op).bind(13, now_rfc3339());
    si.run();
  } catch (const Error& e) {
    if (e.code() == Errc::constraint_violation) explain_constraint(e, DeviceRecord{}, i);
    throw;
  }
  return {"identities", c.last_insert_rowid()};
}

std::vector<RowRef> insert_device_with_identity(Connection& c, const DeviceRecord& d, const IdentityRecord& i) {
  std::vector<RowRef> rows;
  rows.push_back(insert_device(c, d));
  IdentityRecord with_device = i;
  with_device.device_id = rows.front().id;
  rows.push_back(insert_identity(c, with_device));
  return rows;
}

RowRef set_device_state(Connection& c, std::int64_t device_id, const std::string& state,
                        const std::optional<std::string>& reason, const std::optional<std::string>& fixture) {
  auto st = c.prepare(
      "UPDATE devices SET state = ?, reason = ?, fixture = coalesce(?, fixture), updated = ? WHERE id = ?");
  st.bind(1, state).bind(2, reason).bind(3, fixture).bind(4, now_rfc3339()).bind(5, device_id);
  st.run();
  if (::sqlite3_changes(c.raw()) != 1) throw Error(Errc::not_found, "no device with id " + std::to_string(device_id));
  return {"devices", device_id};
}

void require_device_state(Connection& c, std::int64_t device_id, const std::string& state) {
  auto st = c.prepare("SELECT state FROM devices WHERE id = ?");
  st.bind(1, device_id);
  if (!st.step()) throw Error(Errc::not_found, "no device with id " + std::to_string(device_id));
  if (const auto now = st.text(0); now != state)
    throw Error(Errc::db_error, fmt::format("device {} is recorded as '{}', not '{}': the entry this one follows did not "
                                        "land in the journal",
                                        device_id, now, state));
}

RowRef set_device_batch(Connection& c, std::int64_t device_id, std::int64_t batch_id) {
  auto st = c.prepare("UPDATE devices SET batch_id = ?, state = 'reserved', reason = NULL, updated = ? WHERE id = ?");
  st.bind(1, batch_id).bind(2, now_rfc3339()).bind(3, device_id);
  st.run();
  if (::sqlite3_changes(c.raw()) != 1) throw Error(Errc::not_found, "no device with id " + std::to_string(device_id));
  return {"devices", device_id};
}

RowRef insert_label(Connection& c, std::int64_t device_id, const std::string& printer, const std::string& result) {
  auto st = c.prepare("INSERT INTO labels(device_id, printer, result, time) VALUES(?,?,?,?)");
  st.bind(1, device_id).bind(2, printer).bind(3, result).bind(4, now_rfc3339());
  st.run();
  return {"labels", c.last_insert_rowid()};
}

namespace {

DeviceRecord read_device(const Statement& st) {
  DeviceRecord d;
  d.id = st.int64(0);
  d.serial = st.text(1);
  d.chip_id = st.opt_text(2);
  d.mac = st.opt_text(3);
  if (!st.is_null(4)) d.batch_id = st.int64(4);
  d.fixture = st.opt_text(5);
  d.state = st.text(6);
  d.reason = st.opt_text(7);
  d.created = st.text(8);
  d.updated = st.text(9);
  return d;
}

constexpr const char* kDeviceSelect =
    "SELECT id, serial, chip_id, mac, batch_id, fixture, state, reason, created, updated FROM devices ";

}  // namespace

std::optional<DeviceRecord> device_by_chip(Connection& c, const std::string& chip_id) {
  auto st = c.prepare(std::string(kDeviceSelect) + "WHERE chip_id = ?");
  st.bind(1, chip_id);
  if (!st.step()) return std::nullopt;
  return read_device(st);
}

std::vector<DeviceRecord> devices_in_states(Connection& c, const std::vector<std::string>& states) {
  std::string sql = std::string(kDeviceSelect) + "WHERE state IN (";
  for (std::size_t k = 0; k < states.size(); ++k) sql += k == 0 ? "?" : ",?";
  sql += ") ORDER BY id";
  auto st = c.prepare(sql);
  for (std::size_t k = 0; k < states.size(); ++k) st.bind(static_cast<int>(k + 1), states[k]);
  std::vector<DeviceRecord> out;
  while (st.step()) out.push_back(read_device(st));
  return out;
}

std::optional<DeviceRecord> Records::device_by_serial(const std::string& serial) {
  auto st = conn_.prepare(std::string(kDeviceSelect) + "WHERE serial = ?");
  st.bind(1, serial);
  if (!st.step()) return std::nullopt;
  return read_device(st);
}

namespace {

constexpr const char* kIdentityColumns =
    "i.id, i.device_id, i.cert_serial, i.cert_sha256, i.cert_der, i.issuer_key_id, i.profile, i.public_key, "
    "i.pkhash, i.dpp_uri, i.key_mode, i.status, i.operator, i.created";

IdentityRecord read_identity(const Statement& st) {
  IdentityRecord i;
  i.id = st.int64(0);
  i.device_id = st.int64(1);
  i.cert_serial = st.text(2);
  i.cert_sha256 = st.text(3);
  i.cert_der = st.blob(4);
  i.issuer_key_id = st.text(5);
  i.profile = st.text(6);
  i.public_key = st.blob(7);
  i.pkhash = st.text(8);
  i.dpp_uri = st.opt_text(9);
  i.key_mode = st.text(10);
  i.status = st.text(11);
  i.op = st.text(12);
  i.created = st.text(13);
  return i;
}

}  // namespace

std::vector<IdentityRecord> identities_of(Connection& c, std::int64_t device_id) {
  auto st = c.prepare(std::string("SELECT ") + kIdentityColumns + " FROM identities i WHERE i.device_id = ? ORDER BY i.id");
  st.bind(1, device_id);
  std::vector<IdentityRecord> out;
  while (st.step()) out.push_back(read_identity(st));
  return out;
}

std::vector<IdentityRecord> Records::identities_of(std::int64_t device_id) { return db::identities_of(conn_, device_id); }

// ---------------------------------------------------------------------------------------
// Schema v2: users and the CA lifecycle.

namespace {

ProposalRecord read_proposal(const Statement& st) {
  ProposalRecord p;
  p.id = st.int64(0);
  p.ref = st.text(1);
  p.action = st.text(2);
  p.params = st.text(3);
  p.proposer = st.text(4);
  p.created = st.text(5);
  p.expires = st.text(6);
  p.status = st.text(7);
  p.approver = st.opt_text(8);
  p.decided = st.opt_text(9);
  return p;
}

constexpr const char* kProposalColumns = "id, ref, action, params, proposer, created, expires, status, approver, decided";

}  // namespace

std::optional<IdentityRecord> Records::identity_by_cert_serial(const std::string& serial_hex) {
  auto st = conn_.prepare(fmt::format("SELECT {} FROM identities i WHERE i.cert_serial = ?", kIdentityColumns));
  st.bind(1, serial_hex);
  if (!st.step()) return std::nullopt;
  return read_identity(st);
}

std::vector<IdentityRecord> Records::identities_of_batch(const std::string& batch_name) {
  auto st = conn_.prepare(fmt::format(
      "SELECT {} FROM identities i JOIN devices d ON d.id = i.device_id JOIN batches b ON b.id = d.batch_id "
      "WHERE b.name = ? ORDER BY i.id",
      kIdentityColumns));
  st.bind(1, batch_name);
  std::vector<IdentityRecord> out;
  while (st.step()) out.push_back(read_identity(st));
  return out;
}

std::vector<IdentityRecord> Records::identities_by_issuer(const std::string& issuer_key_id, const std::string& status) {
  auto st = conn_.prepare(fmt::format(
      "SELECT {} FROM identities i WHERE i.issuer_key_id = ? AND i.status = ? ORDER BY i.id", kIdentityColumns));
  st.bind(1, issuer_key_id).bind(2, status);
  std::vector<IdentityRecord> out;
  while (st.step()) out.push_back(read_identity(st));
  return out;
}

std::optional<UserRecord> Records::user_by_name(const std::string& name) {
  auto st = conn_.prepare("SELECT id, name, role, token_hash, disabled, created FROM users WHERE name = ?");
  st.bind(1, name);
  if (!st.step()) return std::nullopt;
  UserRecord u;
  u.id = st.int64(0);
  u.name = st.text(1);
  u.role = st.text(2);
  u.token_hash = st.opt_text(3).value_or("");
  u.disabled = st.int64(4) != 0;
  u.created = st.text(5);
  return u;
}

std::int64_t Records::count_users(const std::string& role) {
  auto st = conn_.prepare("SELECT count(*) FROM users WHERE role = ? AND disabled = 0");
  st.bind(1, role);
  st.step();
  return st.int64(0);
}

std::optional<ProposalRecord> Records::proposal(const std::string& ref) {
  auto st = conn_.prepare(fmt::format("SELECT {} FROM ca_proposals WHERE ref = ?", kProposalColumns));
  st.bind(1, ref);
  if (!st.step()) return std::nullopt;
  return read_proposal(st);
}

std::vector<ProposalRecord> Records::proposals() {
  auto st = conn_.prepare(fmt::format("SELECT {} FROM ca_proposals ORDER BY id", kProposalColumns));
  std::vector<ProposalRecord> out;
  while (st.step()) out.push_back(read_proposal(st));
  return out;
}

std::optional<CaKeyRecord> Records::ca_key(const std::string& key_id) {
  auto st = conn_.prepare(
      "SELECT id, key_id, token_label, pin, effective, trust_until, created FROM ca_keys WHERE key_id = ?");
  st.bind(1, key_id);
  if (!st.step()) return std::nullopt;
  CaKeyRecord k;
  k.id = st.int64(0);
  k.key_id = st.text(1);
  k.token_label = st.opt_text(2);
  k.pin = st.opt_text(3);
  k.effective = st.text(4);
  k.trust_until = st.opt_text(5);
  k.created = st.text(6);
  return k;
}

std::vector<RevocationRecord> Records::revocations(const std::string& issuer_key_id) {
  auto st = conn_.prepare(
      "SELECT id, cert_serial, issuer_key_id, reason, time FROM revocations WHERE issuer_key_id = ? ORDER BY id");
  st.bind(1, issuer_key_id);
  std::vector<RevocationRecord> out;
  while (st.step()) out.push_back({st.int64(0), st.text(1), st.text(2), st.text(3), st.text(4)});
  return out;
}

std::optional<CrlRecord> Records::latest_crl(const std::string& issuer_key_id) {
  auto st = conn_.prepare(
      "SELECT id, issuer_key_id, crl_number, this_update, next_update, entries, sha256, der, created FROM crls "
      "WHERE issuer_key_id = ? ORDER BY crl_number DESC LIMIT 1");
  st.bind(1, issuer_key_id);
  if (!st.step()) return std::nullopt;
  CrlRecord r;
  r.id = st.int64(0);
  r.issuer_key_id = st.text(1);
  r.crl_number = st.int64(2);
  r.this_update = st.text(3);
  r.next_update = st.text(4);
  r.entries = st.int64(5);
  r.sha256 = st.text(6);
  r.der = st.blob(7);
  r.created = st.text(8);
  return r;
}

RowRef insert_user(Connection& c, const UserRecord& u) {
  try {
    auto st = c.prepare("INSERT INTO users(name, role, token_hash, disabled, created) VALUES(?,?,?,?,?)");
    st.bind(1, u.name).bind(2, u.role).bind(3, u.token_hash).bind(4, std::int64_t{u.disabled ? 1 : 0});
    st.bind(5, u.created.empty() ? now_rfc3339() : u.created);
    st.run();
  } catch (const Error& e) {
    if (e.code() == Errc::constraint_violation)
      throw Error(Errc::already_exists, fmt::format("a user named '{}' already exists; choose another name", u.name),
                  e.native());
    throw;
  }
  return {"users", c.last_insert_rowid()};
}

RowRef insert_proposal(Connection& c, const ProposalRecord& p) {
  auto st = c.prepare(
      "INSERT INTO ca_proposals(ref, action, params, proposer, created, expires, status) VALUES(?,?,?,?,?,?,?)");
  st.bind(1, p.ref).bind(2, p.action).bind(3, p.params).bind(4, p.proposer);
  st.bind(5, p.created.empty() ? now_rfc3339() : p.created).bind(6, p.expires).bind(7, p.status);
  st.run();
  return {"ca_proposals", c.last_insert_rowid()};
}

RowRef decide_proposal(Connection& c, std::int64_t id, const std::string& status,
                       const std::optional<std::string>& approver) {
  auto st = c.prepare("UPDATE ca_proposals SET status = ?, approver = ?, decided = ? WHERE id = ? AND status = 'pending'");
  st.bind(1, status).bind(2, approver).bind(3, now_rfc3339()).bind(4, id);
  st.run();
  if (::sqlite3_changes(c.raw()) != 1)
    throw Error(Errc::busy, "the proposal was decided by someone else meanwhile; show it again");
  return {"ca_proposals", id};
}

RowRef insert_ca_key(Connection& c, const CaKeyRecord& k) {
  auto st = c.prepare(
      "INSERT INTO ca_keys(key_id, token_label, pin, effective, trust_until, created) VALUES(?,?,?,?,?,?)");
  st.bind(1, k.key_id).bind(2, k.token_label).bind(3, k.pin).bind(4, k.effective).bind(5, k.trust_until);
  st.bind(6, k.created.empty() ? now_rfc3339() : k.created);
  st.run();
  return {"ca_keys", c.last_insert_rowid()};
}

RowRef set_ca_key_trust_until(Connection& c, const std::string& key_id, const std::string& trust_until) {
  auto find = c.prepare("SELECT id FROM ca_keys WHERE key_id = ?");
  find.bind(1, key_id);
  if (find.step()) {
    const std::int64_t id = find.int64(0);
    auto st = c.prepare("UPDATE ca_keys SET trust_until = ? WHERE id = ?");
    st.bind(1, trust_until).bind(2, id);
    st.run();
    return {"ca_keys", id};
  }
  // A key from `station init`: on the station's token, effective since its certificate.
  auto created = c.prepare("SELECT min(created) FROM ca_certificates WHERE key_id = ?");
  created.bind(1, key_id);
  created.step();
  CaKeyRecord k;
  k.key_id = key_id;
  k.effective = created.opt_text(0).value_or(now_rfc3339());
  k.trust_until = trust_until;
  return insert_ca_key(c, k);
}

RowRef set_ca_status(Connection& c, std::int64_t ca_id, const std::string& status) {
  auto st = c.prepare("UPDATE ca_certificates SET status = ? WHERE id = ?");
  st.bind(1, status).bind(2, ca_id);
  st.run();
  return {"ca_certificates", ca_id};
}

RowRef insert_revocation(Connection& c, const RevocationRecord& r) {
  try {
    auto st = c.prepare("INSERT INTO revocations(cert_serial, issuer_key_id, reason, time) VALUES(?,?,?,?)");
    st.bind(1, r.cert_serial).bind(2, r.issuer_key_id).bind(3, r.reason).bind(4, r.time.empty() ? now_rfc3339() : r.time);
    st.run();
  } catch (const Error& e) {
    if (e.code() == Errc::constraint_violation)
      throw Error(Errc::already_exists, fmt::format("certificate {} is already revoked", r.cert_serial), e.native());
    throw;
  }
  return {"revocations", c.last_insert_rowid()};
}

RowRef set_identity_status(Connection& c, std::int64_t identity_id, const std::string& status) {
  auto st = c.prepare("UPDATE identities SET status = ? WHERE id = ?");
  st.bind(1, status).bind(2, identity_id);
  st.run();
  return {"identities", identity_id};
}

RowRef insert_crl(Connection& c, const CrlRecord& r) {
  auto st = c.prepare(
      "INSERT INTO crls(issuer_key_id, crl_number, this_update, next_update, entries, sha256, der, created) "
      "VALUES(?,?,?,?,?,?,?,?)");
  st.bind(1, r.issuer_key_id).bind(2, r.crl_number).bind(3, r.this_update).bind(4, r.next_update);
  st.bind(5, r.entries).bind(6, r.sha256).bind(7, ByteView(r.der)).bind(8, r.created.empty() ? now_rfc3339() : r.created);
  st.run();
  return {"crls", c.last_insert_rowid()};
}

std::optional<CaRecord> issuing_ca_at(Connection& c, const std::string& now) {
  auto st = c.prepare(fmt::format(
      "SELECT {} FROM ca_certificates c LEFT JOIN ca_keys k ON k.key_id = c.key_id "
      "WHERE c.role = 'issuing' AND COALESCE(k.effective, c.created) <= ?1 "
      "ORDER BY COALESCE(k.effective, c.created) DESC, c.id DESC LIMIT 1",
      "c.id, c.role, c.status, c.subject, c.issuer, c.serial, c.not_before, c.not_after, c.key_id, c.key_label, "
      "c.sha256, c.issuer_key_id, c.der, c.created"));
  st.bind(1, now);
  if (!st.step()) return std::nullopt;
  return read_ca(st);
}

std::vector<CaRecord> all_cas(Connection& c) {
  auto st = c.prepare(fmt::format("SELECT {} FROM ca_certificates ORDER BY id", kCaColumns));
  std::vector<CaRecord> out;
  while (st.step()) out.push_back(read_ca(st));
  return out;
}

}  // namespace station::db
