// station: the factory provisioning station's command line.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <iostream>

#include "cli/cli.hpp"
#include "common/error.hpp"
#include "common/heap.hpp"

namespace {

// Logs go to stderr so stdout stays machine-readable. STATION_LOG sets the level
// (trace, debug, info, warn, error); the default shows warnings and errors only.
void setup_logging() {
  auto logger = spdlog::stderr_color_mt("station");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v", spdlog::pattern_time_type::utc);
  const char* level = std::getenv("STATION_LOG");
  spdlog::set_level(level != nullptr ? spdlog::level::from_str(level) : spdlog::level::warn);
}

}  // namespace

int main(int argc, char** argv) {
  setup_logging();
  station::keep_freed_heap();
  CLI::App app{"Factory provisioning station: DPP keys, X.509 identities under an HSM-held CA, "
               "device programming, QR labels and a tamper-evident journal.",
               "station"};
  app.require_subcommand(1);
  app.set_version_flag("--version", STATION_VERSION);
  station::cli::Context ctx;
  station::cli::register_init(app, ctx);
  station::cli::register_ca(app, ctx);
  station::cli::register_issue(app, ctx);
  station::cli::register_audit(app, ctx);
  station::cli::register_db(app, ctx);
  station::cli::register_batch(app, ctx);
  station::cli::register_dpp(app, ctx);
  station::cli::register_label(app, ctx);
  station::cli::register_fixture(app, ctx);
  station::cli::register_user(app, ctx);
  station::cli::register_device(app, ctx);
  station::cli::register_line(app, ctx);
  station::cli::register_shared(app, ctx);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const station::Error& e) {
    std::cerr << "station: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "station: internal error: " << e.what() << "\n";
    return 1;
  }
  return ctx.exit_code;
}
