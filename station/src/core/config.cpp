#include "core/config.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <set>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "common/error.hpp"
#include "labels/template_config.hpp"

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
  void boolean(const std::string& key, bool& out) {
    seen_.insert(key);
    if (table_ == nullptr) return;
    const toml::node* node = table_->get(key);
    if (node == nullptr) return;
    if (!node->is_boolean()) fail(key, "must be true or false");
    out = node->value<bool>().value_or(false);
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

labels::Template StationConfig::label_template(const std::string& name) const {
  if (auto it = templates.find(name); it != templates.end()) return it->second;
  for (const auto& b : labels::builtin_template_names())
    if (b == name) return labels::builtin_template(name);
  std::string known;
  for (const auto& [k, v] : templates) known += k + ", ";
  for (const auto& b : labels::builtin_template_names()) known += b + ", ";
  throw Error(Errc::config_error, fmt::format("{}: label template '{}' is not defined (known: {})", config_file.string(),
                                              name, known.substr(0, known.size() - 2)));
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
  std::ifstream in(file, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) throw Error(Errc::io_error, fmt::format("cannot read {}", file.string()));
  return parse_config(text.str(), file);
}

bool conninfo_holds_password(const std::string& value) {
  if (value.rfind("file:", 0) == 0 || value.rfind("env:", 0) == 0) return false;  // a reference
  std::string lower = value;
  for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  const auto scheme = lower.find("://");
  const auto at = lower.find('@');
  const bool uri_password = scheme != std::string::npos && at != std::string::npos && at > scheme &&
                            lower.substr(scheme + 3, at - scheme - 3).find(':') != std::string::npos;
  return lower.find("password") != std::string::npos || uri_password;
}

StationConfig parse_config(std::string_view text, const std::filesystem::path& file) {
  toml::table root;
  try {
    root = toml::parse(text, file.string());
  } catch (const toml::parse_error& e) {
    throw Error(Errc::config_error, fmt::format("{}:{}:{}: {}", file.string(), e.source().begin.line,
                                                e.source().begin.column, e.description()));
  }
  StationConfig c;
  c.config_file = std::filesystem::absolute(file);
  c.data_dir = c.config_file.parent_path();

  static const std::set<std::string> kSections = {"station",  "hsm",  "ca",       "database",  "issue", "profiles",
                                                  "fixtures", "line", "http", "printers", "templates", "shared"};
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
      p.string("certified_key", prof.certified_key);
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

  const std::string where = file.string() + ": ";
  auto config_error = [&](const Error& e) { return Error(Errc::config_error, where + e.what()); };
  try {
    if (const toml::table* t = sub_table(root, "printers", file)) c.printers = labels::printers_from_toml(*t);
    if (const toml::table* t = sub_table(root, "templates", file)) c.templates = labels::templates_from_toml(*t);
  } catch (const Error& e) {
    throw config_error(e);
  }

  Section line(sub_table(root, "line", file), "line", file);
  line.string("printer", c.line.printer);
  line.string("batch", c.line.batch);
  line.integer("poll_ms", c.line.poll_ms, 10, 60000);
  line.boolean("scan_back", c.line.scan_back);
  if (auto v = line.get<std::string>("scan_dir")) c.line.scan_dir = *v;
  if (auto v = line.get<std::string>("crl_dir")) c.line.crl_dir = *v;
  line.integer("hsm_retry_ms", c.line.hsm_retry_ms, 10, 600000);
  line.finish();
  if (!c.line.printer.empty() && c.printers.count(c.line.printer) == 0)
    line.fail("printer", fmt::format("names printer '{}', which is not in [printers]", c.line.printer));

  Section http(sub_table(root, "http", file), "http", file);
  http.string("listen", c.http.listen);
  http.boolean("tls", c.http.tls);
  int body_limit = static_cast<int>(c.http.body_limit);
  http.integer("body_limit", body_limit, 1024, 16 * 1024 * 1024);
  c.http.body_limit = static_cast<std::size_t>(body_limit);
  http.integer("read_timeout_ms", c.http.read_timeout_ms, 100, 600000);
  http.integer("max_connections", c.http.max_connections, 1, 10000);
  http.finish();

  Section shared(sub_table(root, "shared", file), "shared", file);
  shared.string("url", c.shared.url);
  shared.integer("push_every_s", c.shared.push_every_s, 0, 86400);
  shared.finish();
  if (conninfo_holds_password(c.shared.url))
    shared.fail("url", "holds a password: give it by reference, file:PATH or env:VAR (or use ~/.pgpass or a "
                       "client certificate)");

  if (const toml::table* fixtures = sub_table(root, "fixtures", file)) {
    std::set<std::string> ports;
    for (const auto& [k, v] : *fixtures) {
      const std::string key(k.str());
      int number = 0;
      const auto r = std::from_chars(key.data(), key.data() + key.size(), number);
      if (key.empty() || r.ec != std::errc() || r.ptr != key.data() + key.size() || number < 1 || number > 999)
        throw Error(Errc::config_error, fmt::format("{}: [fixtures.{}]: fixtures are numbered 1 to 999, e.g. "
                                                    "[fixtures.3]", file.string(), key));
      if (!v.is_table()) throw Error(Errc::config_error, fmt::format("{}: fixtures.{} must be a table", file.string(), key));
      Section f(v.as_table(), "fixtures." + key, file);
      FixtureSection fx;
      fx.number = number;
      fx.link.name = "fixture " + std::to_string(number);
      f.string("transport", fx.link.transport);
      f.string("port", fx.link.port);
      int baud = static_cast<int>(fx.link.baud);
      f.integer("baud", baud, 300, 12000000);
      fx.link.baud = static_cast<unsigned>(baud);
      int hello_ms = static_cast<int>(fx.link.timeouts.hello.count());
      int command_ms = static_cast<int>(fx.link.timeouts.command.count());
      int slow_ms = static_cast<int>(fx.link.timeouts.slow.count());
      f.integer("hello_timeout_ms", hello_ms, 10, 60000);
      f.integer("command_timeout_ms", command_ms, 10, 60000);
      f.integer("slow_timeout_ms", slow_ms, 10, 600000);
      fx.link.timeouts.hello = std::chrono::milliseconds(hello_ms);
      fx.link.timeouts.command = std::chrono::milliseconds(command_ms);
      fx.link.timeouts.slow = std::chrono::milliseconds(slow_ms);
      f.integer("retries", fx.link.retries, 0, 20);
      f.string("printer", fx.printer);
      f.finish();
      if (fx.link.transport != "serial" && fx.link.transport != "usb")
        f.fail("transport", "must be \"serial\" or \"usb\"");
      if (fx.link.port.empty())
        f.fail("port", fx.link.transport == "usb" ? "is required (VID:PID[@BUS-PORT], e.g. 1209:0001@1-4)"
                                                  : "is required (a serial device, e.g. /dev/serial/by-path/...)");
      if (!ports.insert(fx.link.transport + ":" + fx.link.port).second)
        f.fail("port", fmt::format("{} is already used by another fixture", fx.link.port));
      if (!fx.printer.empty() && c.printers.count(fx.printer) == 0)
        f.fail("printer", fmt::format("names printer '{}', which is not in [printers]", fx.printer));
      c.fixtures.push_back(std::move(fx));
    }
    std::sort(c.fixtures.begin(), c.fixtures.end(), [](const auto& a, const auto& b) { return a.number < b.number; });
  }
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
    out += "certified_key = " + quote(p.certified_key) + "\n";
  }
  return out;
}

void prepare_hsm_environment(const StationConfig& c) {
  if (c.hsm.softhsm2_conf) ::setenv("SOFTHSM2_CONF", c.resolve(*c.hsm.softhsm2_conf).c_str(), 1);
}

}  // namespace station::core
