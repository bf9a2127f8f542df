#include "cli/cli.hpp"

namespace station::cli {

void register_issue(CLI::App& app, Context& /*ctx*/) {
  app.add_subcommand("issue", "(not yet implemented)");
}

}  // namespace station::cli
