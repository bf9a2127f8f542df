#include "cli/cli.hpp"

namespace station::cli {

void register_init(CLI::App& app, Context& /*ctx*/) {
  app.add_subcommand("init", "(not yet implemented)");
}

}  // namespace station::cli
