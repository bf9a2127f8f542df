#include "core/station.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <fstream>

#include <fmt/format.h>

#include "common/ossl.hpp"
#include "core/ca_lifecycle.hpp"
#include "core/pipeline.hpp"
#include "db/highwater.hpp"
#include "pki/dpp_key.hpp"

namespace station::core {
namespace {

namespace fs = std::filesystem;

// Writes a file that must not exist yet, with `mode`, and syncs it.
void write_new_file(const fs::path& path, std::string_view content, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) throw_errno("cannot create " + path.string());
  std::size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      throw_errno("cannot write " + path.string());
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) throw_errno("cannot sync " + path.string());
}

// A random PIN of `n` characters [A-Za-z0-9] (rejection sampling, no modulo bias).
SecretString random_pin(std::size_t n) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::string pin;
  pin.reserve(n);
  while (pin.size() < n) {
    unsigned char b = 0;
    if (::RAND_bytes(&b, 1) != 1) throw ossl::error("RAND_bytes");
    if (b < 248) pin.push_back(kAlphabet[b % 62]);
  }
  return SecretString(std::move(pin));
}

std::string stamp() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  return fmt::format("{:04}{:02}{:02}T{:02}{:02}{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec);
}

std::string new_station_id() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  unsigned char r[4];
  if (::RAND_bytes(r, sizeof r) != 1) throw ossl::error("RAND_bytes");
  std::string h = host[0] != '\0' ? host : "station";
  for (auto& c : h)
    if (std::isalnum(static_cast<unsigned char>(c)) == 0 && c != '-') c = '-';
  return h + "-" + hex_encode(ByteView(r, sizeof r));
}


// Undoes what init created if it does not finish. Each name is also appended (and synced)
// to the init marker before init makes it, so that an init killed part-way, which runs no
// destructor, leaves the list of what to remove beside what it made.
class Rollback {
 public:
  static constexpr std::string_view kMade = "made: ";

  void log_to(fs::path marker) { marker_ = std::move(marker); }
  // Call before making `p`. What is already there is someone else's: never listed, never
  // removed (making it will then fail, and the operator's file stays).
  void created(fs::path p) {
    if (std::error_code ec; fs::exists(fs::symlink_status(p, ec))) return;
    if (!marker_.empty() && p.parent_path() == marker_.parent_path()) {
      const int fd = ::open(marker_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
      if (fd < 0) throw_errno("cannot open " + marker_.string());
      const std::string line = fmt::format("{}{}\n", kMade, p.filename().string());
      const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) && ::fsync(fd) == 0;
      ::close(fd);
      if (!ok) throw_errno("cannot write " + marker_.string());
    }
    paths_.push_back(std::move(p));
  }
  void keep() { paths_.clear(); }
  ~Rollback() {
    for (auto it = paths_.rbegin(); it != paths_.rend(); ++it) {
      std::error_code ec;
      fs::remove_all(*it, ec);
    }
  }

  // What an interrupted init listed in `marker` (names in its folder only), newest first.
  static std::vector<fs::path> listed(const fs::path& marker, std::string& started) {
    std::ifstream in(marker);
    std::getline(in, started);
    std::vector<fs::path> made;
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(kMade, 0) != 0) continue;
      const fs::path name = line.substr(kMade.size());
      if (name.empty() || name.has_parent_path() || name == "." || name == ".." || name == marker.filename())
        continue;  // only plain names beside the marker: a damaged marker cannot point elsewhere
      made.insert(made.begin(), marker.parent_path() / name);
    }
    return made;
  }

 private:
  fs::path marker_;
  std::vector<fs::path> paths_;
};

}  // namespace

db::CaRecord ca_record(const Bytes& der, const std::string& role, const std::string& key_label,
                       const std::string& issuer_key_id) {
  const auto info = pki::describe_certificate(der);
  db::CaRecord r;
  r.role = role;
  r.status = "active";
  r.subject = info.subject;
  r.issuer = info.issuer;
  r.serial = info.serial;
  r.not_before = info.not_before;
  r.not_after = info.not_after;
  r.key_id = info.key_id;
  r.key_label = key_label;
  r.sha256 = info.sha256;
  r.issuer_key_id = issuer_key_id;
  r.der = der;
  return r;
}

std::string os_user() {
  const passwd* pw = ::getpwuid(::geteuid());
  return pw != nullptr && pw->pw_name != nullptr ? pw->pw_name : "uid:" + std::to_string(::geteuid());
}

InitResult init_station(const InitOptions& o) {
  const bool real_hsm = o.pkcs11_module.has_value() || o.token_label.has_value() || o.pin.has_value();
  if (real_hsm && !(o.pkcs11_module && o.token_label && o.pin))
    throw Error(Errc::invalid_argument, "a real HSM needs all of --pkcs11-module, --token-label and --pin");
  if (o.data_dir.empty()) throw Error(Errc::invalid_argument, "give the data folder with --data DIR");
  const auto curve = pki::ca_curve_from_string(o.curve);

  Rollback rollback;
  const fs::path dir = fs::absolute(o.data_dir);
  // Init writes this first and removes it after station.conf, its last step: found without a
  // station.conf, it means an init was killed part-way (power cut, SIGKILL) and left files
  // nothing can use. Those are removed and init starts again; no other file is touched.
  const fs::path marker = dir / "init.incomplete";
  if (fs::exists(marker) && !fs::exists(dir / "station.conf")) {
    std::string started;
    auto made = Rollback::listed(marker, started);
    std::erase_if(made, [](const fs::path& p) { return !fs::exists(fs::symlink_status(p)); });  // listed, never made
    spdlog::warn("{}: an earlier init was interrupted ({}); removing the {} files and folders it made and starting again",
                 dir.string(), started, made.size());
    for (const auto& p : made) {
      std::error_code ec;
      fs::remove_all(p, ec);
      if (ec)
        throw Error(Errc::io_error,
                    fmt::format("cannot remove {} left by an interrupted init: {}", p.string(), ec.message()));
    }
    fs::remove(marker);
  }
  if (fs::exists(dir / "station.conf") || fs::exists(dir / "station.db")) {
    throw Error(Errc::already_exists,
                fmt::format("{} already holds a station (station.conf or station.db); init never touches an existing "
                            "hierarchy: use another folder, or rotate the CAs with `station ca`",
                            dir.string()));
  }
  if (!fs::exists(dir)) {
    rollback.created(dir);
    fs::create_directories(dir);
  }
  ::chmod(dir.c_str(), 0700);
  const std::string when = stamp();
  rollback.created(marker);
  write_new_file(marker,
                 fmt::format("station init started {} (keys labelled station-*-{}; an external token keeps them if "
                             "this init does not finish)\n",
                             when, when),
                 0600);
  rollback.log_to(marker);

  StationConfig c;
  c.data_dir = dir;
  c.config_file = dir / "station.conf";
  c.station_id = new_station_id();
  c.ca.curve = o.curve;
  c.profiles.emplace("device", pki::CertProfile{});

  if (real_hsm) {
    c.hsm.module = *o.pkcs11_module;
    c.hsm.token_label = *o.token_label;
    c.hsm.pin = *o.pin;
    pki::PinRef::parse(c.hsm.pin);
  } else {
    // The embedded default: a SoftHSM2 token inside the data folder, with its own config,
    // initialised through C_InitToken/C_InitPIN (no PIN on any command line).
    if (fs::exists(dir / "tokens") || fs::exists(dir / "pins"))
      throw Error(Errc::already_exists, fmt::format("{} already holds tokens/ or pins/; refusing to overwrite", dir.string()));
    c.hsm.module = STATION_DEFAULT_PKCS11_MODULE;
    c.hsm.softhsm2_conf = "softhsm2.conf";
    rollback.created(dir / "tokens");
    fs::create_directory(dir / "tokens");
    ::chmod((dir / "tokens").c_str(), 0700);
    rollback.created(dir / "pins");
    fs::create_directory(dir / "pins");
    ::chmod((dir / "pins").c_str(), 0700);
    rollback.created(dir / "softhsm2.conf");
    write_new_file(dir / "softhsm2.conf",
                   fmt::format("# SoftHSM2 configuration of this station's embedded token (written by station init)\n"
                               "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n"
                               "slots.removable = false\n",
                               (dir / "tokens").string()),
                   0600);
    const SecretString so_pin = random_pin(24);
    const SecretString user_pin = random_pin(24);
    write_new_file(dir / "pins/so.pin", so_pin.str() + "\n", 0600);
    write_new_file(dir / "pins/user.pin", user_pin.str() + "\n", 0600);
    prepare_hsm_environment(c);
    const auto module = pki::p11::Module::load(c.hsm.module);
    const auto slot = module->find_free_slot();
    if (!slot) throw Error(Errc::hsm_unavailable, "SoftHSM2 offers no free slot for a new token");
    module->init_token(*slot, c.hsm.token_label, so_pin, user_pin);
  }

  const fs::path db_path = c.resolve(c.database);
  rollback.created(db_path);
  rollback.created(fs::path(db_path.string() + "-wal"));
  rollback.created(fs::path(db_path.string() + "-shm"));
  rollback.created(db::highwater_path(db_path));
  db::Records records(db_path);
  auto hsm = pki::Hsm::open(c.hsm_config());
  std::vector<std::string> made_keys;
  InitResult result;
  try {
    const auto root_key = hsm->generate_ca_key(curve, "station-root-ca-" + when);
    made_keys.push_back(root_key.key_id);
    const auto issuing_key = hsm->generate_ca_key(curve, "station-issuing-ca-" + when);
    made_keys.push_back(issuing_key.key_id);
    const auto audit_key = hsm->generate_ca_key(pki::CaCurve::p256, "station-audit-" + when);
    made_keys.push_back(audit_key.key_id);
    c.hsm.secrets_key_id = hsm->generate_secrets_key("station-secrets-" + when);
    made_keys.push_back(c.hsm.secrets_key_id);
    crash_point("init.keys");

    pki::CaCertRequest root_req{pki::CaKind::root, c.ca.root_subject, c.ca.root_validity_days, &root_key, nullptr};
    const Bytes root_der = pki::make_ca_certificate(*hsm, root_req);
    const pki::CaSigner root_signer{root_der, root_key.key_id};
    pki::CaCertRequest issuing_req{pki::CaKind::issuing, c.ca.issuing_subject, c.ca.issuing_validity_days,
                                   &issuing_key, &root_signer};
    const Bytes issuing_der = pki::make_ca_certificate(*hsm, issuing_req);
    pki::CaCertRequest audit_req{pki::CaKind::audit, c.ca.audit_subject, c.ca.issuing_validity_days, &audit_key,
                                 &root_signer};
    const Bytes audit_der = pki::make_ca_certificate(*hsm, audit_req);

    const auto audit_cert = pki::describe_certificate(audit_der);
    HsmCheckpointSigner signer(*hsm, audit_key.key_id, audit_cert.sha256);
    {
      db::Journal journal(db_path, c.station_id, &signer);
      const std::string actor = os_user();
      journal.commit({actor, "station.init", "station:" + c.station_id,
                      {{"station_id", c.station_id}, {"hsm_module", c.hsm.module}, {"token_label", c.hsm.token_label},
                       {"embedded_hsm", !real_hsm}}},
                     [&](db::Connection& conn) { return std::vector<db::RowRef>{db::insert_station(conn, c.station_id)}; });
      for (auto r : {ca_record(root_der, "root", root_key.label, root_key.key_id),
                     ca_record(issuing_der, "issuing", issuing_key.label, root_key.key_id),
                     ca_record(audit_der, "audit", audit_key.label, root_key.key_id)}) {
        journal.commit({actor, "ca.created", "ca:" + r.key_id,
                        {{"role", r.role}, {"subject", r.subject}, {"key_id", r.key_id}, {"key_label", r.key_label},
                         {"sha256", r.sha256}, {"serial", r.serial}, {"issuer_key_id", r.issuer_key_id},
                         {"not_after", r.not_after}}},
                       [&](db::Connection& conn) {
                         r.id = db::insert_ca(conn, r).id;
                         return std::vector<db::RowRef>{{"ca_certificates", r.id}};
                       });
        result.cas.push_back(std::move(r));
      }
    }  // the journal closes here and signs its first checkpoint with the audit key
    crash_point("init.journal");
    write_new_file(c.config_file, render_config(c), 0600);
    std::error_code ec;
    fs::remove(marker, ec);  // the station is complete with station.conf; a marker left behind is inert
  } catch (...) {
    // A real token keeps nothing from a failed ceremony either.
    for (const auto& k : made_keys) {
      try {
        hsm->destroy_key(k);
      } catch (const Error& e) {
        spdlog::error("could not remove key {} from the token after a failed init: {}", k, e.what());
      }
    }
    throw;
  }
  rollback.keep();
  result.config = std::move(c);
  return result;
}

// ---------------------------------------------------------------------------------------

Station::Station(const fs::path& data_dir, const std::optional<fs::path>& config_file)
    : config_(load_station_config(data_dir, config_file)) {
  const fs::path db_path = config_.resolve(config_.database);
  if (!fs::exists(db_path))
    throw Error(Errc::not_found, fmt::format("no station database at {}; was `station init` run for this folder?",
                                             db_path.string()));
  records_ = std::make_unique<db::Records>(db_path);
  readers_ = std::make_unique<RecordsReaders>(db_path);
}

Station::~Station() = default;

RecordsReaders::Lease RecordsReaders::acquire() {
  {
    const std::lock_guard lock(mutex_);
    if (!idle_.empty()) {
      auto r = std::move(idle_.back());
      idle_.pop_back();
      return Lease(*this, std::move(r));
    }
  }
  return Lease(*this, std::make_unique<db::Records>(path_, true));
}

void RecordsReaders::give_back(std::unique_ptr<db::Records> r) {
  const std::lock_guard lock(mutex_);
  if (idle_.size() < max_idle_) idle_.push_back(std::move(r));
}

RecordsReaders::Lease::~Lease() {
  if (records_) pool_->give_back(std::move(records_));
}

pki::Hsm& Station::hsm() {
  if (!hsm_) {
    prepare_hsm_environment(config_);
    hsm_ = pki::Hsm::open(config_.hsm_config());
  }
  return *hsm_;
}

db::CheckpointSigner& Station::audit_signer() {
  if (!signer_) {
    const auto audit = records_->active_ca("audit");
    if (!audit) throw Error(Errc::not_found, "no active audit certificate in the records; the station is incomplete");
    signer_ = std::make_unique<HsmCheckpointSigner>(hsm(), audit->key_id, audit->sha256);
  }
  return *signer_;
}

db::Journal& Station::journal() {
  if (!journal_)
    journal_ = std::make_unique<db::Journal>(config_.resolve(config_.database), config_.station_id, &audit_signer());
  return *journal_;
}

IssueResult issue_device_certificate(Station& station, const IssueRequest& req) {
  auto& records = station.records();
  const auto& profile = station.config().profile(req.profile.empty() ? station.config().default_profile : req.profile);
  if (profile.separate_key() && req.dpp_spki.empty())
    throw Error(Errc::invalid_argument,
                fmt::format("profile '{}' certifies a separate key: give the device's DPP public key too (--dpp-pubkey "
                            "FILE); --pubkey is then its certificate key",
                            profile.name));
  if (!profile.separate_key() && !req.dpp_spki.empty())
    throw Error(Errc::invalid_argument,
                fmt::format("profile '{}' certifies the DPP key itself (--pubkey); a DPP key apart from it needs a "
                            "profile with certified_key = 'separate'",
                            profile.name));
  // A separate profile: the DPP key as its URI carries it (compressed point: the hash a DPP
  // peer computes), and the certified key's hash as the journal names it.
  Bytes dpp_spki = req.subject_spki;
  nlohmann::json cert_pkhash;  // null when the certificate certifies the DPP key
  if (profile.separate_key()) {
    const auto dpp = pki::dpp::PublicKey::from_spki_der(req.dpp_spki);
    const auto certified = pki::dpp::PublicKey::from_spki_der(req.subject_spki);
    if (dpp == certified)
      throw Error(Errc::invalid_argument, "the certificate key and the DPP key are the same key; a separate profile "
                                          "needs two key pairs");
    dpp_spki = dpp.spki_der();
    cert_pkhash = sha256_hex(certified.spki_der());
  }
  // A serial is issued once, unless an officer re-provisioned it (`station device reprovision`
  // leaves a device of `station issue` reserved, without a batch, its certificates revoked).
  std::optional<std::int64_t> reissue;
  if (const auto existing = records.device_by_serial(req.device_serial)) {
    if (existing->batch_id || existing->state != "reserved")
      throw Error(Errc::constraint_violation,
                  fmt::format("device serial {} already has an identity; a serial is never issued twice unless a "
                              "security officer re-provisions it: station device reprovision --serial {} --reason TEXT",
                              req.device_serial, req.device_serial));
    reissue = existing->id;
  }
  // The issuer in effect now (issue 10: rotations take over at an announced moment); the
  // record's transaction re-checks it, so no certificate from an issuer that was replaced
  // meanwhile is ever recorded or released: such a one is discarded and issued again.
  for (int attempt = 0;; ++attempt) {
    const db::CaRecord issuing = current_issuer(station);
    bool switched = false;

    RecordsLedger ledger(records);
    pki::CertificateIssuer issuer(station.hsm(), pki::CaSigner{issuing.der, issuing.key_id}, profile, &ledger);
    IssueResult result;
    result.certificate = issuer.issue(req.subject_spki, req.device_serial,
                                      profile.separate_key() ? sha256_hex(dpp_spki) : std::string());

    db::DeviceRecord device;
    device.serial = req.device_serial;
    device.state = "issued";
    db::IdentityRecord identity;
    identity.cert_serial = result.certificate.serial;
    identity.cert_sha256 = result.certificate.sha256;
    identity.cert_der = result.certificate.der;
    identity.issuer_key_id = result.certificate.issuer_key_id;
    identity.profile = profile.name;
    identity.public_key = dpp_spki;
    identity.pkhash = sha256_hex(dpp_spki);
    identity.dpp_uri = req.dpp_uri;
    identity.key_mode = req.key_mode;
    identity.status = "active";
    identity.op = os_user();
    // The record and its journal entry commit together, before the certificate is released.
    try {
      station.journal().commit(
          {identity.op, "device.issued", "device:" + req.device_serial,
           {{"serial", req.device_serial}, {"cert_serial", identity.cert_serial}, {"cert_sha256", identity.cert_sha256},
            {"issuer", identity.issuer_key_id}, {"profile", identity.profile}, {"pkhash", identity.pkhash},
            {"key_mode", identity.key_mode},
            {"cert_pkhash", cert_pkhash},
            {"reprovisioned", reissue.has_value()},
            {"proof", req.proof.empty() ? nlohmann::json(nullptr) : nlohmann::json(req.proof)}}},
          [&](db::Connection& conn) {
            const auto now_issuer = db::issuing_ca_at(conn, db::now_rfc3339());
            if (!now_issuer || now_issuer->key_id != issuing.key_id) {
              switched = true;
              throw Error(Errc::busy, "the issuing CA was rotated during this issuance");
            }
            if (reissue) {
              // Still as the officer left it: nobody issued it meanwhile.
              auto st = conn.prepare("SELECT state FROM devices WHERE id = ?");
              st.bind(1, *reissue);
              if (!st.step() || st.text(0) != "reserved")
                throw Error(Errc::constraint_violation,
                            fmt::format("device serial {} was issued meanwhile; a serial is never issued twice",
                                        req.device_serial));
              identity.device_id = *reissue;
              result.device_id = *reissue;
              return std::vector<db::RowRef>{db::insert_identity(conn, identity),
                                             db::set_device_state(conn, *reissue, "issued")};
            }
            auto rows = db::insert_device_with_identity(conn, device, identity);
            result.device_id = rows.front().id;
            return rows;
          });
    } catch (const Error&) {
      if (switched && attempt < 3) continue;
      throw;
    }
    result.chain.push_back(issuing.der);
    return result;
  }
}

}  // namespace station::core
