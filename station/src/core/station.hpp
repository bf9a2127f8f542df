// The station's data folder: creating it (`station init`), and opening it for commands
// (config + records + HSM), plus device certificate issuance on top of them.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "db/journal.hpp"
#include "db/records.hpp"
#include "pki/hsm.hpp"
#include "pki/x509.hpp"

namespace station::core {

struct InitOptions {
  std::filesystem::path data_dir;
  // Real HSM: all three given. Embedded default (none given): a SoftHSM2 token in DIR.
  std::optional<std::string> pkcs11_module;
  std::optional<std::string> token_label;
  std::optional<std::string> pin;
  std::string curve = "P-256";
};

struct InitResult {
  StationConfig config;
  std::vector<db::CaRecord> cas;  // root, issuing, audit
};

// Creates the hierarchy: (embedded) token and PIN files, root/issuing/audit keys in the
// token, their certificates, the database and station.conf. Refuses an existing
// hierarchy; on failure removes what it created (a half-made token is never left).
InitResult init_station(const InitOptions& options);

// A CA certificate's record (status active), its fields read from the certificate.
db::CaRecord ca_record(const Bytes& der, const std::string& role, const std::string& key_label,
                       const std::string& issuer_key_id);

// The acting user recorded in the journal: until users exist, the operating-system user.
std::string os_user();

// Signs journal checkpoints with the HSM-held audit key.
class HsmCheckpointSigner final : public db::CheckpointSigner {
 public:
  HsmCheckpointSigner(pki::Hsm& hsm, std::string key_id, std::string cert_sha256)
      : hsm_(hsm), key_id_(std::move(key_id)), cert_sha256_(std::move(cert_sha256)) {}
  Bytes sign(ByteView message) override { return hsm_.sign_digest(key_id_, sha256(message)); }
  std::string signer_sha256() override { return cert_sha256_; }

 private:
  pki::Hsm& hsm_;
  std::string key_id_, cert_sha256_;
};

// Certificate serials already recorded (device or CA): the issuer's uniqueness ledger.
class RecordsLedger final : public pki::SerialLedger {
 public:
  explicit RecordsLedger(db::Records& r) : records_(r) {}
  bool contains(const std::string& serial_hex) override { return records_.certificate_serial_used(serial_hex); }

 private:
  db::Records& records_;
};

// Read-only connections to the records for threads that only read (the HTTP API's
// queries): each lease has a connection of its own, so a reader never takes the Station's
// lock and, with SQLite's WAL, never waits for the line's writers nor they for it. Each
// read sees the last committed state. Connections are opened on demand and kept for reuse
// (with their compiled statements); at most `max_idle` are kept.
class RecordsReaders {
 public:
  class Lease {
   public:
    Lease(RecordsReaders& pool, std::unique_ptr<db::Records> r) : pool_(&pool), records_(std::move(r)) {}
    Lease(Lease&&) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    db::Records& operator*() noexcept { return *records_; }
    db::Records* operator->() noexcept { return records_.get(); }

   private:
    RecordsReaders* pool_;
    std::unique_ptr<db::Records> records_;
  };

  explicit RecordsReaders(std::filesystem::path db_path, std::size_t max_idle = 8)
      : path_(std::move(db_path)), max_idle_(max_idle) {}
  Lease acquire();

 private:
  void give_back(std::unique_ptr<db::Records> r);
  std::filesystem::path path_;
  std::size_t max_idle_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<db::Records>> idle_;
};

// An opened data folder. The HSM is opened (and logged in) on first use only, so
// read-only commands never need the PIN; so is the journal's writer.
class Station {
 public:
  Station(const std::filesystem::path& data_dir, const std::optional<std::filesystem::path>& config_file);
  ~Station();

  const StationConfig& config() const noexcept { return config_; }
  db::Records& records() noexcept { return *records_; }
  pki::Hsm& hsm();
  // The journal, with the HSM audit key as checkpoint signer.
  db::Journal& journal();
  db::CheckpointSigner& audit_signer();
  // Serializes threads that share this Station's records() connection and its lazy
  // opening of the HSM and journal (the pipeline and the HTTP API run on several threads;
  // journal() and hsm() themselves are thread-safe once open).
  std::recursive_mutex& mutex() noexcept { return mutex_; }
  // Read-only records on connections of their own, without mutex() (see RecordsReaders).
  RecordsReaders::Lease reader() { return readers_->acquire(); }

 private:
  StationConfig config_;
  std::recursive_mutex mutex_;
  std::unique_ptr<db::Records> records_;
  std::unique_ptr<RecordsReaders> readers_;
  std::unique_ptr<pki::Hsm> hsm_;
  std::unique_ptr<HsmCheckpointSigner> signer_;
  std::unique_ptr<db::Journal> journal_;  // declared last: closes (and signs) first
};

struct IssueRequest {
  Bytes subject_spki;             // the device public key the certificate certifies, DER SPKI as given
  // A profile with certified_key = 'separate': the device's DPP key, which the certificate
  // binds by its hash (subject_spki is then the device's certificate key). Empty otherwise.
  Bytes dpp_spki;
  std::string device_serial;
  std::string profile;            // empty: the config's default profile
  std::string key_mode = "external";
  std::optional<std::string> dpp_uri;
  // How the requester showed it holds the private key: "csr" (a PKCS#10 request whose
  // signature verified), or empty when the caller vouches for the key. Journaled.
  std::string proof;
};

struct IssueResult {
  pki::IssuedCertificate certificate;
  std::vector<Bytes> chain;       // issuing CA up to, not including, the root
  std::int64_t device_id = 0;
};

// Issues and records a device certificate under the active issuing CA. The record is
// written before the certificate is returned: a failed record write fails the issuance.
IssueResult issue_device_certificate(Station& station, const IssueRequest& request);

}  // namespace station::core
