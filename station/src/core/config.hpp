// station.conf: typed, validated configuration (TOML). Each section validates itself;
// unknown keys are refused with their name; secrets appear only as references
// (file:PATH, env:VAR). Relative paths are relative to the data folder. docs/config.md
// documents every key.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "fixtures/fixture_config.hpp"
#include "labels/printer_config.hpp"
#include "labels/template.hpp"
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

// [fixtures.N]: one fixture of the line (N = 1, 2, ...: the number on its label and tile).
struct FixtureSection {
  int number = 0;
  fixtures::FixtureConfig link;   // link.name is "fixture N"
  std::string printer;            // a [printers] name; empty: the line's printer
};

// [line]: how `station serve` drives the fixtures.
struct LineSection {
  std::string printer;            // default [printers] name; empty: ZPL files in DIR/labels
  std::string batch;              // the batch fixtures work on; empty: the only open batch
  int poll_ms = 250;              // how often an empty fixture is asked HELLO
  bool scan_back = false;         // require a decoded label image to match before `labelled`
  std::filesystem::path scan_dir = "scans";  // where the scanner drops <serial>.png images
  std::filesystem::path crl_dir = "crl";     // CRLs published here, re-signed before nextUpdate
  int hsm_retry_ms = 1000;        // while the HSM is unavailable, how often to retry
};

// [http]: the API and the operator's page.
struct HttpSection {
  std::string listen = "127.0.0.1:8080";
  bool tls = false;               // serve HTTPS with a certificate from the station's own CA
  std::size_t body_limit = 64 * 1024;
  int read_timeout_ms = 10000;
  int max_connections = 64;
};

// Shared records for many stations (db/shared.hpp, docs/records.md): a PostgreSQL
// connection string (libpq: "host=... dbname=... user=..." or postgresql://...). It may
// hold a password, so it is given by reference (file:PATH, env:VAR) unless it holds none.
struct SharedSection {
  std::string url;        // empty: this station keeps its records to itself
  int push_every_s = 60;  // `station serve` pushes this often (0: only `station shared push`)
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
  std::vector<FixtureSection> fixtures;            // sorted by number
  LineSection line;
  HttpSection http;
  SharedSection shared;
  std::map<std::string, labels::PrinterConfig> printers;
  std::map<std::string, labels::Template> templates;  // besides the built-in ones

  // A template by name: configured ones first, then built-ins. Errc::config_error if unknown.
  labels::Template label_template(const std::string& name) const;

  std::filesystem::path resolve(const std::filesystem::path& p) const {
    return p.is_absolute() ? p : data_dir / p;
  }
  const pki::CertProfile& profile(const std::string& name) const;  // Errc::config_error if unknown
  pki::HsmConfig hsm_config() const;
};

// Whether a connection string given as itself (not file:/env:) holds a password
// (`password=...` or postgresql://user:PASSWORD@host): such a string belongs in a reference.
bool conninfo_holds_password(const std::string& value);

// Loads and validates a config file. Errors name the file, the key and the reason.
StationConfig load_config(const std::filesystem::path& file);
// The same from text (`file` names it in errors and anchors relative paths). Every
// malformed input is an Error (config_error), never a crash: fuzz/config.cpp.
StationConfig parse_config(std::string_view text, const std::filesystem::path& file);

// The config for `--data DIR` / `--config FILE`: FILE when given, else DIR/station.conf.
StationConfig load_station_config(const std::filesystem::path& data_dir, const std::optional<std::filesystem::path>& config);

// The TOML text `station init` writes.
std::string render_config(const StationConfig& config);

// Points SoftHSM2 at the data folder's own configuration (before the module loads).
void prepare_hsm_environment(const StationConfig& config);

}  // namespace station::core
