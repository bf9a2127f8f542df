// The `station` command line. Each command group lives in its own file and adds its
// subcommands to the app; main.cpp calls every register_* function once.
//
// Contract for every subcommand callback:
// - do the work; print results on stdout (JSON with --json, per DESIGN.md conventions);
// - on failure throw station::Error whose message names the problem and the fix; main
//   prints "station: <message>" as one line on stderr and exits 1;
// - a command with its own exit statuses (e.g. `audit verify`: 0/1/2) sets ctx.exit_code.
#pragma once

#include <CLI/CLI.hpp>

#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

namespace station::core {
class Station;
}

namespace station::cli {

struct Context {
  int exit_code = 0;
};

void register_init(CLI::App& app, Context& ctx);    // station init
void register_ca(CLI::App& app, Context& ctx);      // station ca ...
void register_issue(CLI::App& app, Context& ctx);   // station issue
void register_audit(CLI::App& app, Context& ctx);   // station audit ...
void register_db(CLI::App& app, Context& ctx);      // station db backup
void register_batch(CLI::App& app, Context& ctx);   // station batch ...
void register_dpp(CLI::App& app, Context& ctx);     // station dpp parse|gen
void register_fixture(CLI::App& app, Context& ctx); // station fixture probe
void register_label(CLI::App& app, Context& ctx);   // station label render|print
void register_user(CLI::App& app, Context& ctx);    // station user add
void register_device(CLI::App& app, Context& ctx);  // station device reprovision
void register_line(CLI::App& app, Context& ctx);    // station demo, station serve
void register_shared(CLI::App& app, Context& ctx);  // station shared push|verify|query

// The options every command that acts as a user takes: the station's folder (or config), the
// user's token, and JSON output.
struct UserOptions {
  std::filesystem::path data;
  std::optional<std::filesystem::path> config;
  std::optional<std::filesystem::path> token_file;
  bool json = false;
};
void add_user_options(CLI::App* cmd, UserOptions& o, bool json = true);

// Who acts: the token's user (--token-file FILE or STATION_TOKEN) when one is given, who
// must hold one of `roles`; until the station has users, the operating-system user
// (DESIGN.md); once it has users, a token is required.
std::string acting_user(core::Station& station, const std::optional<std::filesystem::path>& token_file,
                        std::initializer_list<std::string_view> roles, std::string_view action);

}  // namespace station::cli
