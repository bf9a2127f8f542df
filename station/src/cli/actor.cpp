#include <cstdlib>

#include <fmt/format.h>

#include "cli/cli.hpp"
#include "core/station.hpp"
#include "core/users.hpp"

namespace station::cli {

void add_user_options(CLI::App* cmd, UserOptions& o, bool json) {
  cmd->add_option("--data", o.data, "Station data folder");
  cmd->add_option("--config", o.config, "Config file (default: DIR/station.conf)");
  cmd->add_option("--token-file", o.token_file, "File holding your token (default: $STATION_TOKEN)");
  if (json) cmd->add_flag("--json", o.json, "Print JSON");
}

std::string acting_user(core::Station& station, const std::optional<std::filesystem::path>& token_file,
                        std::initializer_list<std::string_view> roles, std::string_view action) {
  if (token_file || std::getenv("STATION_TOKEN") != nullptr) {
    const core::TokenSource token{token_file};
    return core::authorize(station, token, roles, action).name;
  }
  const std::lock_guard lock(station.mutex());
  auto st = station.records().connection().prepare("SELECT count(*) FROM users");
  st.step();
  if (st.int64(0) > 0)
    throw Error(Errc::permission_denied,
                fmt::format("{}: this station has users; give your token with --token-file FILE or STATION_TOKEN", action));
  return core::os_user();
}

}  // namespace station::cli
