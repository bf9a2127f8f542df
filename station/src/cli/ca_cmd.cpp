// station ca show --data DIR [--pem | --json]
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli/cli.hpp"
#include "core/station.hpp"
#include "pki/x509.hpp"

namespace station::cli {
namespace {

struct ShowOptions {
  std::filesystem::path data;
  std::optional<std::filesystem::path> config;
  bool pem = false;
  bool json = false;
};

// `ca show` lists the CA certificates (roots, cross-certificates, issuing CAs); the audit
// signer is not a CA and appears only in the human-readable listing.
bool is_ca_role(const std::string& role) { return role == "root" || role == "issuing" || role == "cross"; }

void show(const ShowOptions& o) {
  core::Station station(o.data, o.config);
  const auto cas = station.records().cas();
  if (o.json) {
    auto out = nlohmann::json::array();
    for (const auto& ca : cas) {
      if (!is_ca_role(ca.role)) continue;
      out.push_back({{"role", ca.role},
                     {"status", ca.status},
                     {"subject", ca.subject},
                     {"issuer", ca.issuer},
                     {"serial", ca.serial},
                     {"not_before", ca.not_before},
                     {"not_after", ca.not_after},
                     {"key_id", ca.key_id},
                     {"key_label", ca.key_label},
                     {"sha256", ca.sha256},
                     {"pem", pki::to_pem(ca.der)}});
    }
    std::cout << out.dump(2) << "\n";
    return;
  }
  if (o.pem) {
    for (const auto& ca : cas)
      if (is_ca_role(ca.role)) std::cout << pki::to_pem(ca.der);
    return;
  }
  for (const auto& ca : cas) {
    std::cout << ca.role << " (" << ca.status << ")\n"
              << "  subject    " << ca.subject << "\n"
              << "  issuer     " << ca.issuer << "\n"
              << "  serial     " << ca.serial << "\n"
              << "  valid      " << ca.not_before << " .. " << ca.not_after << "\n"
              << "  key_id     " << ca.key_id << "\n"
              << "  key_label  " << ca.key_label << "\n"
              << "  sha256     " << ca.sha256 << "\n";
  }
}

}  // namespace

void register_ca(CLI::App& app, Context& /*ctx*/) {
  auto* ca = app.add_subcommand("ca", "Certificate authorities: show (rotation and revocation come later)");
  ca->require_subcommand(1);
  auto o = std::make_shared<ShowOptions>();
  auto* s = ca->add_subcommand("show", "List the CA certificates, roots first");
  s->add_option("--data", o->data, "Station data folder");
  s->add_option("--config", o->config, "Config file (default: DIR/station.conf)");
  auto* pem = s->add_flag("--pem", o->pem, "Print the CA certificates as PEM, root first");
  s->add_flag("--json", o->json, "Print a JSON array of the CA certificates")->excludes(pem);
  s->callback([o] { show(*o); });
}

}  // namespace station::cli
