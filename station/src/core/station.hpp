// The station's data folder: creating it (`station init`), and opening it for commands
// (config + records + HSM), plus device certificate issuance on top of them.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/config.hpp"
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

// An opened data folder. The HSM is opened (and logged in) on first use only, so
// read-only commands never need the PIN.
class Station {
 public:
  Station(const std::filesystem::path& data_dir, const std::optional<std::filesystem::path>& config_file);

  const StationConfig& config() const noexcept { return config_; }
  db::Records& records() noexcept { return *records_; }
  pki::Hsm& hsm();

 private:
  StationConfig config_;
  std::unique_ptr<db::Records> records_;
  std::unique_ptr<pki::Hsm> hsm_;
};

struct IssueRequest {
  Bytes subject_spki;             // the device public key, DER SPKI as given
  std::string device_serial;
  std::string profile;            // empty: the config's default profile
  std::string key_mode = "external";
  std::optional<std::string> dpp_uri;
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
