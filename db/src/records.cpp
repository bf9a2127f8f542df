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

std::vector<RowRef> insert_device_with_identity(Connection& c, const DeviceRecord& d, const IdentityRecord& i) {
  const std::string now = now_rfc3339();
  std::vector<RowRef> rows;
  try {
    auto st = c.prepare(
        "INSERT INTO devices(serial, chip_id, mac, batch_id, fixture, state, reason, created, updated) "
        "VALUES(?,?,?,?,?,?,?,?,?)");
    st.bind(1, d.serial).bind(2, d.chip_id).bind(3, d.mac);
    if (d.batch_id) st.bind(4, *d.batch_id); else st.bind_null(4);
    st.bind(5, d.fixture).bind(6, d.state).bind(7, d.reason).bind(8, now).bind(9, now);
    st.run();
    const std::int64_t device_id = c.last_insert_rowid();
    rows.push_back({"devices", device_id});
    auto si = c.prepare(
        "INSERT INTO identities(device_id, cert_serial, cert_sha256, cert_der, issuer_key_id, profile, public_key, "
        "pkhash, dpp_uri, key_mode, status, operator, created) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)");
    si.bind(1, device_id).bind(2, i.cert_serial).bind(3, i.cert_sha256).bind(4, ByteView(i.cert_der));
    si.bind(5, i.issuer_key_id).bind(6, i.profile).bind(7, ByteView(i.public_key)).bind(8, i.pkhash);
    si.bind(9, i.dpp_uri).bind(10, i.key_mode).bind(11, i.status).bind(12, i.op).bind(13, now);
    si.run();
    rows.push_back({"identities", c.last_insert_rowid()});
  } catch (const Error& e) {
    if (e.code() == Errc::constraint_violation) explain_constraint(e, d, i);
    throw;
  }
  return rows;
}

std::optional<DeviceRecord> Records::device_by_serial(const std::string& serial) {
  auto st = conn_.prepare(
      "SELECT id, serial, chip_id, mac, batch_id, fixture, state, reason, created, updated FROM devices WHERE serial = ?");
  st.bind(1, serial);
  if (!st.step()) return std::nullopt;
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

std::vector<IdentityRecord> Records::identities_of(std::int64_t device_id) {
  auto st = conn_.prepare(
      "SELECT id, device_id, cert_serial, cert_sha256, cert_der, issuer_key_id, profile, public_key, pkhash, dpp_uri, "
      "key_mode, status, operator, created FROM identities WHERE device_id = ? ORDER BY id");
  st.bind(1, device_id);
  std::vector<IdentityRecord> out;
  while (st.step()) {
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
    out.push_back(std::move(i));
  }
  return out;
}

}  // namespace station::db
