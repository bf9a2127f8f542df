// station init --data DIR [--pkcs11-module PATH --token-label L --pin file:PATH|env:VAR] [--curve C]
#include <iostream>
#include <memory>

#include "cli/cli.hpp"
#include "core/station.hpp"

namespace station::cli {

void register_init(CLI::App& app, Context& /*ctx*/) {
  auto opts = std::make_shared<core::InitOptions>();
  auto* cmd = app.add_subcommand(
      "init",
      "Create a station: HSM token (embedded SoftHSM2 by default), root, issuing and audit keys inside it, their "
      "certificates, the database and DIR/station.conf. Refuses an existing hierarchy.");
  cmd->add_option("--data", opts->data_dir, "Data folder to create")->required();
  cmd->add_option("--pkcs11-module", opts->pkcs11_module, "Real HSM: PKCS#11 module path or p11-kit name");
  cmd->add_option("--token-label", opts->token_label, "Real HSM: label of the (initialised) token");
  cmd->add_option("--pin", opts->pin, "Real HSM: user PIN reference, file:PATH or env:VAR (never the PIN itself)");
  cmd->add_option("--curve", opts->curve, "CA key curve: P-256 (default) or P-384")->check(CLI::IsMember({"P-256", "P-384"}));
  cmd->callback([opts] {
    const auto result = core::init_station(*opts);
    std::cout << "station " << result.config.station_id << " initialised in " << result.config.data_dir.string() << "\n";
    for (const auto& ca : result.cas)
      std::cout << "  " << ca.role << ": " << ca.subject << "  key_id " << ca.key_id << "\n";
    std::cout << "config: " << result.config.config_file.string() << "\n";
  });
}

}  // namespace station::cli
