// station label render|print: one device label from the command line (docs/labels.md).
//   station label render --uri URI --serial SN [--template NAME] [--dpi N] --format zpl|png|pdf --out FILE
//   station label print  --uri URI --serial SN --printer tcp://HOST:PORT|dir:PATH|cups:QUEUE
#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "cli/cli.hpp"
#include "common/error.hpp"
#include "labels/printer.hpp"
#include "labels/printer_config.hpp"
#include "labels/render.hpp"
#include "labels/report.hpp"
#include "labels/template.hpp"
#include "labels/template_config.hpp"

namespace station::cli {
namespace {

namespace lbl = station::labels;

struct LabelArgs {
  std::string uri, serial, mac, model, date, batch, fixture;
  std::string ssid, wifi_password, wifi_security = "WPA";
  std::string template_name = "default";
  std::string config;
  int dpi = 0;
};

void add_label_options(CLI::App* cmd, LabelArgs& a) {
  cmd->add_option("--uri", a.uri, "the device's DPP URI (goes into the QR code byte for byte)")->required();
  cmd->add_option("--serial", a.serial, "the device's serial number")->required();
  cmd->add_option("--template", a.template_name,
                  "template: a built-in name (default, softap), a name from --config's [templates], or a template file");
  cmd->add_option("--dpi", a.dpi, "printer resolution (203, 300 or 600); default: the template's");
  cmd->add_option("--config", a.config, "station config file whose [templates] section names templates");
  cmd->add_option("--mac", a.mac, "MAC shown on the label (default: the URI's M: field)");
  cmd->add_option("--model", a.model, "model shown on the label");
  cmd->add_option("--date", a.date, "date shown on the label (default: today, UTC, YYYY-MM-DD)");
  cmd->add_option("--batch", a.batch, "batch shown on the label");
  cmd->add_option("--fixture", a.fixture, "fixture number shown on the label");
  cmd->add_option("--ssid", a.ssid, "SoftAP SSID, for templates with a WIFI: code");
  cmd->add_option("--wifi-password", a.wifi_password, "SoftAP password, for templates with a WIFI: code");
  cmd->add_option("--wifi-security", a.wifi_security, "SoftAP security: WPA, WEP or nopass")
      ->check(CLI::IsMember({"WPA", "WEP", "nopass"}));
}

// The URI's M: field (Easy Connect §5.2.1), if any; the label shows it unless --mac is given.
std::string mac_from_uri(const std::string& uri) {
  if (uri.rfind("DPP:", 0) != 0) return {};
  std::size_t pos = 4;
  while (pos < uri.size()) {
    const std::size_t end = uri.find(';', pos);
    const std::string field = uri.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    if (field.rfind("M:", 0) == 0) return field.substr(2);
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  return {};
}

std::string today_utc() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

toml::table parse_config(const std::string& path) {
  try {
    return toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    throw Error(Errc::config_error, path + ":" + std::to_string(e.source().begin.line) + ": " +
                                        std::string(e.description()));
  }
}

lbl::Template load_template(const LabelArgs& a) {
  std::optional<lbl::Template> tpl;
  if (!a.config.empty()) {
    const toml::table doc = parse_config(a.config);
    if (const toml::table* t = doc["templates"].as_table()) {
      auto all = lbl::templates_from_toml(*t, "templates");
      if (auto it = all.find(a.template_name); it != all.end()) tpl = it->second;
    }
  }
  if (!tpl && a.template_name.find('/') == std::string::npos && !a.template_name.ends_with(".toml")) {
    const auto names = lbl::builtin_template_names();
    if (std::find(names.begin(), names.end(), a.template_name) != names.end()) {
      tpl = lbl::builtin_template(a.template_name);
    }
  }
  if (!tpl) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(a.template_name, ec)) {
      throw Error(Errc::not_found, "label template '" + a.template_name +
                                       "' is neither built in (default, softap), in --config's [templates], nor a file");
    }
    auto all = lbl::load_template_file(a.template_name);
    if (all.size() != 1) {
      throw Error(Errc::config_error, a.template_name + " holds " + std::to_string(all.size()) +
                                          " templates; pass it as --config and name one with --template");
    }
    tpl = all.begin()->second;
  }
  if (a.dpi != 0 && a.dpi != tpl->dpi()) return tpl->with_dpi(a.dpi);
  return *tpl;
}

// --printer: a spec, or the name of a [printers.NAME] entry of --config.
std::unique_ptr<lbl::Printer> open_named_or_spec(const std::string& spec, const std::string& config,
                                                 const lbl::PrinterOptions& defaults) {
  if (!config.empty() && spec.find(':') == std::string::npos) {
    const toml::table doc = parse_config(config);
    if (const toml::table* t = doc["printers"].as_table()) {
      auto all = lbl::printers_from_toml(*t, "printers");
      if (auto it = all.find(spec); it != all.end()) return it->second.open();
    }
    throw Error(Errc::not_found, "no printer '" + spec + "' in " + config +
                                     " [printers]; give tcp://HOST:PORT, dir:PATH or cups:QUEUE, or add it there");
  }
  return lbl::open_printer(spec, defaults);
}

lbl::LabelData label_data(const LabelArgs& a) {
  lbl::LabelData d;
  d.uri = a.uri;
  d.serial = a.serial;
  d.mac = a.mac.empty() ? mac_from_uri(a.uri) : a.mac;
  d.model = a.model;
  d.date = a.date.empty() ? today_utc() : a.date;
  d.batch = a.batch;
  d.fixture = a.fixture;
  if (!a.ssid.empty()) d.softap = lbl::WifiCredentials{a.ssid, a.wifi_password, a.wifi_security, false};
  return d;
}

void write_output(const std::string& path, const std::string& bytes) {
  if (path == "-") {
    std::cout.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    std::cout.flush();
    return;
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) throw Error(Errc::io_error, "cannot write " + path + "; check the folder exists and is writable");
}

// Keeps the report for the command's own output (the station's journal implements the same
// interface in the pipeline).
class LastReport final : public lbl::PrintReporter {
 public:
  void report(const lbl::PrintReport& r) override { last = r; }
  lbl::PrintReport last;
};

}  // namespace

void register_label(CLI::App& app, Context& /*ctx*/) {
  auto* label = app.add_subcommand("label", "QR labels: render previews and printer jobs, print them");
  label->require_subcommand(1);

  auto render_args = std::make_shared<LabelArgs>();
  auto format = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto* render = label->add_subcommand("render", "render one label as ZPL, PNG or PDF");
  add_label_options(render, *render_args);
  render->add_option("--format", *format, "zpl, png or pdf")->required()->check(CLI::IsMember({"zpl", "png", "pdf"}));
  render->add_option("--out", *out, "output file ('-' for stdout)")->required();
  render->callback([render_args, format, out] {
    const lbl::Template tpl = load_template(*render_args);
    const lbl::LabelData data = label_data(*render_args);
    std::string bytes;
    if (*format == "zpl") {
      bytes = lbl::render_zpl(tpl, data);
    } else {
      const Bytes b = *format == "png" ? lbl::render_png(tpl, data) : lbl::render_pdf(tpl, std::span(&data, 1));
      bytes.assign(b.begin(), b.end());
    }
    write_output(*out, bytes);
  });

  auto print_args = std::make_shared<LabelArgs>();
  auto printer_spec = std::make_shared<std::string>();
  auto connect_timeout = std::make_shared<double>(3.0);
  auto status = std::make_shared<std::string>("auto");
  auto json = std::make_shared<bool>(false);
  auto* print = label->add_subcommand("print", "print one label; exit 0 only when the printer took the whole job");
  add_label_options(print, *print_args);
  print->add_option("--printer", *printer_spec,
                    "tcp://HOST:PORT, dir:PATH or cups:QUEUE (or a [printers] name from --config)")
      ->required();
  print->add_option("--connect-timeout", *connect_timeout, "seconds to wait for a tcp:// printer (default 3)")
      ->check(CLI::Range(0.1, 120.0));
  print->add_option("--status", *status, "~HS status check for tcp:// printers: auto, require or off")
      ->check(CLI::IsMember({"auto", "require", "off"}));
  print->add_flag("--json", *json, "print the print report as JSON");
  print->callback([print_args, printer_spec, connect_timeout, status, json] {
    const lbl::Template tpl = load_template(*print_args);
    const lbl::LabelData data = label_data(*print_args);
    lbl::PrinterOptions opt;
    opt.connect_timeout = std::chrono::milliseconds(std::lround(*connect_timeout * 1000));
    opt.status = *status == "off" ? lbl::StatusCheck::off
                 : *status == "require" ? lbl::StatusCheck::require
                                        : lbl::StatusCheck::auto_;
    const auto printer = open_named_or_spec(*printer_spec, print_args->config, opt);
    const lbl::PrintJob job{data.serial, lbl::render_zpl(tpl, data), "zpl"};
    LastReport reporter;
    try {
      lbl::print_and_report(*printer, job, reporter);
    } catch (const Error&) {
      if (*json) lbl::JsonLinesReporter(std::cout).report(reporter.last);  // the failure, machine-readable
      throw;
    }
    if (*json) {
      lbl::JsonLinesReporter(std::cout).report(reporter.last);
    } else {
      std::cout << "printed label " << job.label << " on " << printer->name() << " (" << job.data.size()
                << " bytes)\n";
    }
  });
}

}  // namespace station::cli
