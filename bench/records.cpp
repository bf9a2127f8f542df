// Part 5, records at scale: N provisioned devices written straight into a fresh station's
// database through the db library's writers and the journal (valid chain, record rows
// hashed into their entries, checkpoints signed by the HSM audit key; many entries per
// transaction through Journal::commit_all), then lookups by serial and by DPP key hash
// (in-process, through db::query_identities as `station audit query` uses it). scripts/bench
// times the CLI queries and `station audit verify` on the same folder.
//
// Each device gets what the line leaves: a devices row (done), an active identity with a
// certificate-sized DER, a labels row; its journal entries are either the line's nine
// (detected .. done, --journal line) or one entry holding all its rows (--journal compact).
#include <fmt/format.h>

#include "bench.hpp"
#include "core/batches.hpp"
#include "core/ca_lifecycle.hpp"
#include "db/audit.hpp"
#include "db/records.hpp"

namespace station::bench {
namespace {

// A P-256 compressed SubjectPublicKeyInfo header (RFC 5480), then the 33-byte point.
const Bytes kSpkiHeader = {0x30, 0x39, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
                           0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x22, 0x00};

Bytes derive(const char* what, std::int64_t i, std::size_t n) {
  Bytes out;
  for (std::uint32_t block = 0; out.size() < n; ++block) {
    const std::string seed = fmt::format("{}:{}:{}", what, i, block);
    const Bytes h = sha256(as_bytes(seed));
    out.insert(out.end(), h.begin(), h.end());
  }
  out.resize(n);
  return out;
}

struct Fake {
  db::DeviceRecord device;
  db::IdentityRecord identity;
};

Fake fake_device(std::int64_t i, std::int64_t batch_id, const std::string& issuer, const std::string& actor) {
  Fake f;
  f.device.serial = fmt::format("REC-{:07}", i);
  f.device.chip_id = hex_encode(derive("chip", i, 8));
  f.device.mac = hex_encode(derive("mac", i, 6));
  f.device.batch_id = batch_id;
  f.device.fixture = std::to_string(1 + i % 8);
  f.device.state = "reserved";
  Bytes spki = kSpkiHeader;
  const Bytes point = derive("point", i, 33);
  spki.insert(spki.end(), point.begin(), point.end());
  spki[kSpkiHeader.size()] = 0x02;
  auto& id = f.identity;
  id.public_key = spki;
  id.pkhash = sha256_hex(spki);
  id.cert_serial = hex_encode(derive("cert", i, 16));
  id.cert_der = derive("der", i, 480);  // the size of a device certificate
  id.cert_sha256 = sha256_hex(id.cert_der);
  id.issuer_key_id = issuer;
  id.profile = "device";
  id.key_mode = "injected";
  id.status = "active";
  id.op = actor;
  id.dpp_uri = "DPP:C:81/1,81/6,81/11;M:" + *f.device.mac + ";K:" + base64_encode(spki) + ";;";
  return f;
}

}  // namespace

// The records of `devices` provisioned devices of batch `batch`, queued through the
// journal (Journal::commit_all) in chunks; returns the journal entries written.
std::int64_t generate_records(core::Station& station, std::int64_t batch, std::int64_t devices, bool line_journal) {
  const std::string actor = core::os_user();
  const std::string issuer = station.records().active_ca("issuing")->key_id;
  auto& journal = station.journal();
  const std::int64_t chunk = 2048;
  std::int64_t entries = 0;
  for (std::int64_t first = 1; first <= devices; first += chunk) {
    const std::int64_t last = std::min(devices, first + chunk - 1);
    std::vector<std::pair<db::EntryRequest, db::Mutation>> requests;
    for (std::int64_t i = first; i <= last; ++i) {
      auto f = std::make_shared<Fake>(fake_device(i, batch, issuer, actor));
      const std::string subject = "device:" + f->device.serial;
      const std::string fixture = *f->device.fixture;
      auto add = [&](const std::string& action, nlohmann::json details, db::Mutation m) {
        details["serial"] = f->device.serial;
        requests.emplace_back(db::EntryRequest{actor, action, subject, std::move(details)}, std::move(m));
      };
      auto state = [f, fixture](const std::string& s) {
        return db::Mutation([f, fixture, s](db::Connection& c) {
          return std::vector<db::RowRef>{db::set_device_state(c, f->device.id, s, std::nullopt, fixture)};
        });
      };
      auto insert_device = [f](db::Connection& c) {
        auto r = db::insert_device(c, f->device);
        f->device.id = r.id;
        return std::vector<db::RowRef>{r};
      };
      auto insert_identity = [f, fixture](db::Connection& c) {
        f->identity.device_id = f->device.id;
        std::vector<db::RowRef> rows{db::insert_identity(c, f->identity)};
        rows.push_back(db::set_device_state(c, f->device.id, "issued", std::nullopt, fixture));
        return rows;
      };
      auto insert_label = [f](db::Connection& c) {
        std::vector<db::RowRef> rows{db::insert_label(c, f->device.id, "files", "printed")};
        rows.push_back(db::set_device_state(c, f->device.id, "labelled"));
        return rows;
      };
      if (line_journal) {
        add("device.detected", {{"chip_id", *f->device.chip_id}}, {});
        add("device.reserved", {{"chip_id", *f->device.chip_id}}, insert_device);
        add("device.keyed", {{"pkhash", f->identity.pkhash}, {"key_mode", "injected"}}, state("keyed"));
        add("device.issued",
            {{"cert_serial", f->identity.cert_serial}, {"cert_sha256", f->identity.cert_sha256},
             {"issuer", issuer}, {"pkhash", f->identity.pkhash}, {"dpp_uri", *f->identity.dpp_uri}},
            insert_identity);
        add("device.written", {{"digest", hex_encode(derive("digest", i, 32))}}, state("written"));
        add("device.verified", {{"challenge", "ok"}}, state("verified"));
        add("device.locked", nlohmann::json::object(), state("locked"));
        add("label.printed", {{"printer", "files"}, {"result", "printed"}}, insert_label);
        add("device.done", nlohmann::json::object(), state("done"));
      } else {
        add("device.done",
            {{"chip_id", *f->device.chip_id}, {"cert_serial", f->identity.cert_serial}, {"pkhash", f->identity.pkhash},
             {"after", "bench records"}},
            [f](db::Connection& c) {
              f->device.state = "done";
              std::vector<db::RowRef> rows{db::insert_device(c, f->device)};
              f->device.id = rows.back().id;
              f->identity.device_id = f->device.id;
              rows.push_back(db::insert_identity(c, f->identity));
              rows.push_back(db::insert_label(c, f->device.id, "files", "printed"));
              return rows;
            });
      }
    }
    entries += static_cast<std::int64_t>(requests.size());
    journal.commit_all(std::move(requests));
  }
  return entries;
}

nlohmann::json run_records(const fs::path& work, const RecordsOptions& o) {
  const fs::path dir = work / "records";
  make_station(dir, false);
  core::Station station(dir, std::nullopt);
  const std::string actor = core::os_user();
  core::BatchSettings settings;
  settings.product = "Bench Widget";
  settings.quantity = o.devices;
  settings.serial_pattern = "REC-{seq:07}";
  const auto batch = core::open_batch(station, "RECORDS", settings, actor);
  const std::string issuer = station.records().active_ca("issuing")->key_id;

  const auto t0 = Clock::now();
  const std::int64_t entries = generate_records(station, batch.id, o.devices, o.line_journal);
  const double generate_s = seconds_since(t0);

  // Lookups on a fresh read-only connection, as an auditor's query would run.
  db::Connection conn(station.config().resolve(station.config().database), true);
  auto timed = [&](const db::QueryFilter& f) {
    const auto t = Clock::now();
    const auto rows = db::query_identities(conn, f);
    const double ms = seconds_since(t) * 1000.0;
    if (rows.size() != 1) throw Error(Errc::internal, "bench: a lookup did not find exactly one device");
    return ms;
  };
  std::vector<double> by_serial, by_pkhash;
  for (std::int64_t k = 0; k < 21; ++k) {
    const std::int64_t i = 1 + (k * 7919 * 104729) % o.devices;
    const auto f = fake_device(i, batch.id, issuer, actor);
    db::QueryFilter qs;
    qs.serial = f.device.serial;
    by_serial.push_back(timed(qs));
    db::QueryFilter qp;
    qp.pkhash = f.identity.pkhash;
    by_pkhash.push_back(timed(qp));
  }
  const auto sample = fake_device(o.devices / 2 + 1, batch.id, issuer, actor);
  std::error_code ec;
  const auto db_bytes = fs::file_size(station.config().resolve(station.config().database), ec);
  return {{"devices", o.devices},
          {"journal", o.line_journal ? "line" : "compact"},
          {"entries", entries},
          {"generate_s", generate_s},
          {"db_mb", static_cast<double>(db_bytes) / 1048576.0},
          {"query_serial_ms_p50", percentile(by_serial, 50)},
          {"query_pkhash_ms_p50", percentile(by_pkhash, 50)},
          {"sample_serial", sample.device.serial},
          {"sample_pkhash", sample.identity.pkhash},
          {"data", dir.string()}};
}

}  // namespace station::bench
