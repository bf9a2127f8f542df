// station batch open|pause|resume|close|show
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/cli.hpp"
#include "core/batches.hpp"
#include "core/users.hpp"
#include "pki/x509.hpp"

namespace station::cli {
namespace {

namespace fs = std::filesystem;

using Common = UserOptions;

std::string acting_user(core::Station& station, const Common& c, std::string_view action) {
  return cli::acting_user(station, c.token_file, {"operator", "officer"}, action);
}

void print(const core::Batch& b, bool json) {
  if (json) {
    std::cout << core::to_json(b).dump(2) << "\n";
    return;
  }
  std::cout << "batch " << b.name << " (" << b.state << "): " << b.settings.product << ", " << b.counts.done << " of "
            << b.settings.quantity << " done, " << b.counts.failed << " failed, " << b.counts.voided << " voided, "
            << b.counts.in_flight << " in flight; serials " << b.settings.serial_pattern << "\n";
}

struct OpenOptions {
  Common common;
  std::string name;
  core::BatchSettings settings;
  std::optional<fs::path> configurator_keys;
};

// Reads trusted configurator public keys: PEM "PUBLIC KEY" blocks, one or more.
std::vector<std::string> read_configurator_keys(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw Error(Errc::not_found, "cannot read configurator keys " + file.string());
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> keys;
  for (std::size_t pos = 0; (pos = text.find("-----BEGIN PUBLIC KEY-----", pos)) != std::string::npos;) {
    const auto end = text.find("-----END PUBLIC KEY-----", pos);
    if (end == std::string::npos) throw Error(Errc::parse_error, file.string() + ": unterminated PEM block");
    const std::string block = text.substr(pos, end + 24 - pos) + "\n";
    keys.push_back(base64_encode(pki::public_key_from_pem_or_der(block)));
    pos = end;
  }
  if (keys.empty()) throw Error(Errc::parse_error, file.string() + " holds no PEM public key");
  return keys;
}

}  // namespace

void register_batch(CLI::App& app, Context& /*ctx*/) {
  auto* batch = app.add_subcommand("batch", "Batches (work orders): open, pause, resume, close, show");
  batch->require_subcommand(1);

  auto o = std::make_shared<OpenOptions>();
  auto* open = batch->add_subcommand("open", "Open a batch");
  add_user_options(open, o->common);
  open->add_option("NAME", o->name, "Batch (work order) name")->required();
  open->add_option("--product", o->settings.product, "Product")->required();
  open->add_option("--quantity", o->settings.quantity, "Devices to make")->required();
  open->add_option("--serial-pattern", o->settings.serial_pattern,
                   "e.g. ACME-{yyyy}-{seq:06}; {seq} counts per rendered prefix across batches")
      ->capture_default_str();
  open->add_option("--mac-source", o->settings.mac_source, "device | pool:OUI:FIRST-LAST")->capture_default_str();
  open->add_option("--profile", o->settings.profile, "Certificate profile (default: the config's)");
  open->add_option("--template", o->settings.label_template, "Label template")->capture_default_str();
  open->add_option("--key-mode", o->settings.key_mode, "station (generated and injected) | on-device")
      ->capture_default_str();
  open->add_option("--curve", o->settings.curve, "DPP curve")->capture_default_str();
  open->add_flag("--lock", o->settings.lock, "Lock each device's provisioning area after verification");
  open->add_option("--configurator-keys", o->configurator_keys,
                   "PEM file of trusted configurator public keys to load into every device");
  open->callback([o] {
    if (o->configurator_keys) o->settings.configurator_keys = read_configurator_keys(*o->configurator_keys);
    core::Station station(o->common.data, o->common.config);
    const auto actor = acting_user(station, o->common, "batch.open");
    print(core::open_batch(station, o->name, o->settings, actor), o->common.json);
  });

  for (const auto& [verb, to] : std::vector<std::pair<std::string, std::string>>{{"pause", "paused"}, {"resume", "open"}}) {
    auto c = std::make_shared<Common>();
    auto name = std::make_shared<std::string>();
    auto* cmd = batch->add_subcommand(verb, verb == "pause" ? "Pause a batch (fixtures stop taking new devices)"
                                                            : "Resume a paused batch");
    add_user_options(cmd, *c);
    cmd->add_option("NAME", *name, "Batch name")->required();
    cmd->callback([c, name, verb = verb, to = to] {
      core::Station station(c->data, c->config);
      const auto actor = acting_user(station, *c, "batch." + verb);
      print(core::set_batch_state(station, *name, to, actor), c->json);
    });
  }

  auto cc = std::make_shared<Common>();
  auto cname = std::make_shared<std::string>();
  auto manifest = std::make_shared<std::optional<fs::path>>();
  auto* close = batch->add_subcommand(
      "close", "Close a batch: reconcile it against its quantity and write the signed customer manifest");
  add_user_options(close, *cc);
  close->add_option("NAME", *cname, "Batch name")->required();
  close->add_option("--manifest", *manifest, "Manifest file (default: DIR/manifests/NAME.jsonl)");
  close->callback([cc, cname, manifest] {
    core::Station station(cc->data, cc->config);
    const auto actor = acting_user(station, *cc, "batch.close");
    fs::path out = manifest->value_or(station.config().data_dir / "manifests" / (*cname + ".jsonl"));
    fs::create_directories(out.parent_path());
    const auto r = core::close_batch(station, *cname, out, actor);
    if (cc->json) {
      auto j = core::to_json(r.batch);
      j["missing"] = r.missing;
      j["manifest"] = r.manifest.string();
      std::cout << j.dump(2) << "\n";
    } else {
      print(r.batch, false);
      std::cout << (r.missing > 0 ? std::to_string(r.missing) + " devices short of the quantity; " : std::string())
                << "manifest: " << r.manifest.string() << " (check with: station audit verify --bundle "
                << r.manifest.string() << " --trust ROOT.pem)\n";
    }
  });

  auto sc = std::make_shared<Common>();
  auto sname = std::make_shared<std::optional<std::string>>();
  auto* show = batch->add_subcommand("show", "Show one batch, or all");
  add_user_options(show, *sc);
  show->add_option("NAME", *sname, "Batch name (default: all)");
  show->callback([sc, sname] {
    core::Station station(sc->data, sc->config);
    if (*sname) {
      const auto b = core::find_batch(station, **sname);
      if (!b) throw Error(Errc::not_found, "no batch " + **sname);
      print(*b, sc->json);
      return;
    }
    const auto all = core::list_batches(station);
    if (sc->json) {
      auto arr = nlohmann::json::array();
      for (const auto& b : all) arr.push_back(core::to_json(b));
      std::cout << arr.dump(2) << "\n";
      return;
    }
    for (const auto& b : all) print(b, false);
  });
}

}  // namespace station::cli
