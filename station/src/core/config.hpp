// station.conf: typed, validated configuration (TOML). Each section validates itself;
// unknown keys are refused with their name; secrets appear only as references
// (file:PATH, env:VAR). Relative paths are relative to the data folder. docs/config.md
// documents every key.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "pki/x509.hpp"

namespace station::core {

struct HsmSection {
  std::string module;                              // path, or p11-kit module name
  std::string token_label = "station";
  std::string pin = "file:pins/user.pin";          // file:PATH | env:VAR
  std::optional<std::filesystem::path> softhsm2_conf;  // embedded SoftHSM2 only
  std::size_t max_sessions = 8;
  std::string secrets_key_id;  // the AES key that seals setup secrets at rest (made by init)
};

struct CaSection {
  std::string curve = "P-256";                     // CA keys: P-256 or P-384
  std::string root_subject = "O=Provisioning Station, CN=Station Root CA";
  std::string issuing_subject = "O=Provisioning Station, CN=Station Issuing CA 1";
  std::string audit_subject = "O=Provisioning Station, CN=Station Audit Signer";
  int root_validity_days = 9125;                   // 25 years
  int issuing_validity_days = 3650;
};

struct StationConfig {
  std::filesystem::path data_dir;                  // folder of the config file
  std::filesystem::path config_file;
  std::string station_id;
  HsmSection hsm;
  CaSection ca;
  std::filesystem::path database = "station.db";
  std::string default_profile = "device";
  std::map<std::string, pki::CertProfile> profiles;

  std::filesystem::path resolve(const std::filesystem::path& p) const {
    return p.is_absolute() ? p : data_dir / p;
  }
  const pki::CertProfile& profile(const std::string& name) const;  // Errc::config_error if unknown
  pki::HsmConfig hsm_config() const;
};

// Loads and validates a config file. Errors name the file, the key and the reason.
StationConfig load_config(const std::filesystem::path& file);

// The config for `--data DIR` / `--config FILE`: FILE when given, else DIR/station.conf.
StationConfig load_station_config(const std::filesystem::path& data_dir, const std::optional<std::filesystem::path>& config);

// The TOML text `station init` writes.
std::string render_config(const StationConfig& config);

// Points SoftHSM2 at the data folder's own configuration (before the module loads).
void prepare_hsm_environment(const StationConfig& config);

}  // namespace station::core
