// station user add --data DIR --role operator|officer|auditor --name NAME [--token-file FILE]
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli/cli.hpp"
#include "core/station.hpp"
#include "core/users.hpp"

namespace station::cli {
namespace {

struct AddOptions {
  std::filesystem::path data;
  std::optional<std::filesystem::path> config;
  std::optional<std::filesystem::path> token_file;
  std::string role, name;
  bool json = false;
};

void add(const AddOptions& o) {
  core::Station station(o.data, o.config);
  const core::TokenSource by{o.token_file};
  const auto added = core::add_user(station, o.name, o.role, &by);
  // The token is shown this once; the station keeps only its hash.
  if (o.json) {
    std::cout << nlohmann::json{{"name", added.user.name}, {"role", added.user.role}, {"token", added.token.str()}}.dump()
              << "\n";
    return;
  }
  std::cout << added.token.str() << "\n";
  std::cerr << "user '" << added.user.name << "' (" << added.user.role
            << ") added; the token above is shown only now: give it to them through a safe channel\n";
}

}  // namespace

void register_user(CLI::App& app, Context& /*ctx*/) {
  auto* user = app.add_subcommand("user", "Users and roles: operator, officer, auditor (docs/security.md)");
  user->require_subcommand(1);
  auto o = std::make_shared<AddOptions>();
  auto* a = user->add_subcommand("add", "Add a user and print their token once");
  a->add_option("--data", o->data, "Station data folder");
  a->add_option("--config", o->config, "Config file (default: DIR/station.conf)");
  a->add_option("--role", o->role, "operator, officer or auditor")->required()->check(
      CLI::IsMember({"operator", "officer", "auditor"}));
  a->add_option("--name", o->name, "The user's name")->required();
  a->add_option("--token-file", o->token_file,
                "An officer's token (default: $STATION_TOKEN); not needed for the first officer");
  a->add_flag("--json", o->json, "Print {\"name\", \"role\", \"token\"}");
  a->callback([o] { add(*o); });
}

}  // namespace station::cli
