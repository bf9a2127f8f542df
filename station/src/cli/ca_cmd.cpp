#include "cli/cli.hpp"

namespace station::cli {

void register_ca(CLI::App& app, Context& /*ctx*/) {
  app.add_subcommand("ca", "(not yet implemented)");
}

}  // namespace station::cli
