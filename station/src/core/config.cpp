#include "core/config.hpp"

#include <toml++/toml.h>

#include <cstdlib>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "common/error.hpp"

namespace station::core {
namespace {

// Reads one section strictly: every key must be consumed; leftovers are refused.
class Section {
 public:
  Section(const toml::table* table, std::string name, const std::filesystem::path& file)
      : table_(table), name_(std::move(name)), file_(file) {}

  [[noreturn]] void fail(const std::string& key, const std::string& why) const {
    throw Error(Errc::config_error, fmt::format("{}: {}{}{}: {}", file_.string(), name_, name_.empty() ? "" : ".", key, why));
  }

  template <class T>
  std::optional<T> get(const std::string& key) {
    seen_.insert(key);
    if (table_ == nullptr) return std::nullopt;
    const toml::node* node = table_->get(key);
    if (node == nullptr) return std::nullopt;
    if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      const auto* arr = node->as_array();
      if (arr == nullptr) fail(key, "must be an array of strings");
      std::vector<std::string> out;
      for (const auto& item : *arr) {
        const auto s = item.value<std::string>();
        if (!s) fail(key, "must be an array of strings");
        out.push_back(*s);
      }
      return out;
    } else if constexpr (std::is_same_v<T, std::int64_t>) {
      const auto v = node->value<std::int64_t>();
      if (!v || !node->is_integer()) fail(key, "must be an integer");
      return v;
    } else {
      const auto v = node->value<T>();
      if (!v || !node->is_string()) fail(key, "must be a string");
      return v;
    }
  }

  void string(const std::string& key, std::string& out) {
    if (auto v = get<std::string>(key)) out = *v;
  }
  void integer(const std::string& key, int& out, int lo, int hi) {
    if (auto v = get<std::int64_t>(key)) {
      if (*v < lo || *v > hi) fail(key, fmt::format("must be between {} and {}", lo, hi));
      out = static_cast<int>(*v);
    }
  }

  // Refuses any key that was not read.
  void finish() const {
    if (table_ == nullptr) return;
    for (const auto& [k, v] : *table_) {
      const std::string key(k.str());
      if (seen_.count(key) == 0) fail(key, "unknown key (see docs/config.md)");
    }
  }

 private:
  const toml::table* table_;
  std::string name_;
  std::filesystem::path file_;
  std::set<std::string> seen_;
};

const toml::table* sub_table(const toml::table& root, const std::string& name, const std::filesystem::path& file) {
  const toml::node* n = root.get(name);
  if (n == nullptr) return nullptr;
  if (!n->is_table()) throw Error(Errc::config_error, fmt::format("{}: {} must be a table ([{}])", file.string(), name, name));
  return n->as_table();
}

std::string quote(const std::string& s) {
  std::ostringstream out;
  out << toml::value<std::string>(s);
  return out.str();
}

std::string quote_list(const std::vector<std::string>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) out += (i != 0 ? ", " : "") + quote(v[i]);
  return out + "]";
}

}  // namespace

const pki::CertProfile& StationConfig::profile(const std::string& name) const {
  const auto it = profiles.find(name);
  if (it == profiles.end()) {
    std::string known;
    for (const auto& [k, v] : profiles) known += (known.empty() ? "" : ", ") + k;
    throw Error(Errc::config_error, fmt::format("no certificate profile '{}' in {} (profiles: {})", name,
                                                config_file.string(), known.empty() ? "none" : known));
  }
  return it->second;
}

pki::HsmConfig StationConfig::hsm_config() const {
  pki::HsmConfig c;
  c.module = hsm.module;
  c.token_label = hsm.token_label;
  c.pin = hsm.pin;
  c.base_dir = data_dir;
  c.max_sessions = hsm.max_sessions;
  return c;
}

StationConfig load_config(const std::filesystem::path& file) {
  if (!std::filesystem::exists(file)) {
    throw Error(Errc::not_found, fmt::format("no station config at {}; run `station init --data DIR` first, or give "
                                             "--config FILE",
                                             file.string()));
  }
  toml::table root;
  try {
    root = toml::parse_file(file.string());
  } catch (const toml::parse_error& e) {
    throw Error(Errc::config_error, fmt::format("{}:{}:{}: {}", file.string(), e.source().begin.line,
                                                e.source().begin.column, e.description()));
  }
  StationConfig c;
  c.config_file = std::filesystem::absolute(file);
  c.data_dir = c.config_file.parent_path();

  static const std::set<std::string> kSections = {"station", "hsm", "ca", "database", "issue", "profiles"};
  for (const auto& [k, v] : root) {
    const std::string key(k.str());
    if (kSections.count(key) == 0)
      throw Error(Errc::config_error, fmt::format("{}: unknown section [{}] (see docs/config.md)", file.string(), key));
  }

  Section station(sub_table(root, "station", file), "station", file);
  station.string("id", c.station_id);
  station.finish();
  if (c.station_id.empty()) station.fail("id", "is required");

  Section hsm(sub_table(root, "hsm", file), "hsm", file);
  hsm.string("module", c.hsm.module);
  hsm.string("token_label", c.hsm.token_label);
  hsm.string("pin", c.hsm.pin);
  if (auto v = hsm.get<std::string>("softhsm2_conf")) c.hsm.softhsm2_conf = *v;
  hsm.string("secrets_key_id", c.hsm.secrets_key_id);
  int max_sessions = static_cast<int>(c.hsm.max_sessions);
  hsm.integer("max_sessions", max_sessions, 1, 1024);
  c.hsm.max_sessions = static_cast<std::size_t>(max_sessions);
  hsm.finish();
  if (c.hsm.module.empty()) hsm.fail("module", "is required (a path or a p11-kit module name)");
  if (c.hsm.token_label.empty() || c.hsm.token_label.size() > 32) hsm.fail("token_label", "must be 1 to 32 characters");
  if (c.hsm.pin.rfind("file:", 0) != 0 && c.hsm.pin.rfind("env:", 0) != 0)
    hsm.fail("pin", "must be a reference, file:PATH or env:VAR (never the PIN itself)");

  Section ca(sub_table(root, "ca", file), "ca", file);
  ca.string("curve", c.ca.curve);
  ca.string("root_subject", c.ca.root_subject);
  ca.string("issuing_subject", c.ca.issuing_subject);
  ca.string("audit_subject", c.ca.audit_subject);
  ca.integer("root_validity_days", c.ca.root_validity_days, 1, 36500);
  ca.integer("issuing_validity_days", c.ca.issuing_validity_days, 1, 36500);
  ca.finish();
  try {
    pki::ca_curve_from_string(c.ca.curve);
  } catch (const Error& e) {
    ca.fail("curve", e.what());
  }

  Section database(sub_table(root, "database", file), "database", file);
  if (auto v = database.get<std::string>("path")) c.database = *v;
  database.finish();

  Section issue(sub_table(root, "issue", file), "issue", file);
  issue.string("default_profile", c.default_profile);
  issue.finish();

  if (const toml::table* profiles = sub_table(root, "profiles", file)) {
    for (const auto& [k, v] : *profiles) {
      const std::string name(k.str());
      if (!v.is_table()) throw Error(Errc::config_error, fmt::format("{}: profiles.{} must be a table", file.string(), name));
      Section p(v.as_table(), "profiles." + name, file);
      pki::CertProfile prof;
      prof.name = name;
      p.integer("validity_days", prof.validity_days, 0, 36500);
      p.integer("backdate_seconds", prof.backdate_seconds, 0, 86400);
      p.string("subject", prof.subject);
      if (auto s = p.get<std::vector<std::string>>("subject_alt_names")) prof.subject_alt_names = *s;
      if (auto s = p.get<std::vector<std::string>>("key_usage")) prof.key_usage = *s;
      if (auto s = p.get<std::vector<std::string>>("extended_key_usage")) prof.extended_key_usage = *s;
      if (auto s = p.get<std::string>("crl_distribution_point")) prof.crl_distribution_point = *s;
      p.finish();
      try {
        prof.validate();
      } catch (const Error& e) {
        throw Error(Errc::config_error, fmt::format("{}: {}", file.string(), e.what()));
      }
      c.profiles.emplace(name, std::move(prof));
    }
  }
  if (c.profiles.empty()) c.profiles.emplace("device", pki::CertProfile{});
  if (c.profiles.count(c.default_profile) == 0)
    issue.fail("default_profile", fmt::format("names profile '{}', which is not defined", c.default_profile));
  return c;
}

StationConfig load_station_config(const std::filesystem::path& data_dir,
                                  const std::optional<std::filesystem::path>& config) {
  if (config) return load_config(*config);
  if (data_dir.empty()) throw Error(Errc::invalid_argument, "give --data DIR (the station's data folder) or --config FILE");
  return load_config(data_dir / "station.conf");
}

std::string render_config(const StationConfig& c) {
  std::string out;
  out += "# Provisioning station configuration (written by `station init`; see docs/config.md).\n";
  out += "# Relative paths are relative to this file's folder. Secrets only by reference.\n\n";
  out += "[station]\n";
  out += "id = " + quote(c.station_id) + "\n\n";
  out += "[hsm]\n";
  out += "module = " + quote(c.hsm.module) + "\n";
  out += "token_label = " + quote(c.hsm.token_label) + "\n";
  out += "pin = " + quote(c.hsm.pin) + "\n";
  if (c.hsm.softhsm2_conf) out += "softhsm2_conf = " + quote(c.hsm.softhsm2_conf->string()) + "\n";
  out += fmt::format("max_sessions = {}\n", c.hsm.max_sessions);
  if (!c.hsm.secrets_key_id.empty()) out += "secrets_key_id = " + quote(c.hsm.secrets_key_id) + "\n";
  out += "\n";
  out += "[ca]\n";
  out += "curve = " + quote(c.ca.curve) + "\n";
  out += "root_subject = " + quote(c.ca.root_subject) + "\n";
  out += "issuing_subject = " + quote(c.ca.issuing_subject) + "\n";
  out += "audit_subject = " + quote(c.ca.audit_subject) + "\n";
  out += fmt::format("root_validity_days = {}\nissuing_validity_days = {}\n\n", c.ca.root_validity_days,
                     c.ca.issuing_validity_days);
  out += "[database]\n";
  out += "path = " + quote(c.database.string()) + "\n\n";
  out += "[issue]\n";
  out += "default_profile = " + quote(c.default_profile) + "\n";
  for (const auto& [name, p] : c.profiles) {
    out += "\n[profiles." + name + "]\n";
    out += fmt::format("validity_days = {}\n", p.validity_days);
    out += fmt::format("backdate_seconds = {}\n", p.backdate_seconds);
    out += "subject = " + quote(p.subject) + "\n";
    out += "subject_alt_names = " + quote_list(p.subject_alt_names) + "\n";
    out += "key_usage = " + quote_list(p.key_usage) + "\n";
    out += "extended_key_usage = " + quote_list(p.extended_key_usage) + "\n";
    if (p.crl_distribution_point) out += "crl_distribution_point = " + quote(*p.crl_distribution_point) + "\n";
  }
  return out;
}

void prepare_hsm_environment(const StationConfig& c) {
  if (c.hsm.softhsm2_conf) ::setenv("SOFTHSM2_CONF", c.resolve(*c.hsm.softhsm2_conf).c_str(), 1);
}

}  // namespace station::core
