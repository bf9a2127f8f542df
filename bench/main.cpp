// station_bench: the benchmark's parts (issue 11, docs/performance.md); scripts/bench runs
// them in one sitting and prints the table. Each part prints one JSON object on stdout.
#include <CLI/CLI.hpp>

#include <fstream>
#include <iostream>

#include <spdlog/spdlog.h>

#include "bench.hpp"
#include "common/error.hpp"
#include "common/heap.hpp"

int main(int argc, char** argv) {
  using namespace station::bench;
  station::keep_freed_heap();
  CLI::App app{"station_bench: the station's benchmark parts (scripts/bench runs them all)", "station_bench"};
  app.require_subcommand(1);
  fs::path work = fs::temp_directory_path();
  app.add_option("--work", work, "Folder for the parts' stations (each in a new subfolder)");

  HsmOptions ho;
  auto* hsm = app.add_subcommand("hsm", "HSM limit: sign/s through the layer and raw (1, 2 threads), key pairs/s");
  hsm->add_option("--seconds", ho.seconds, "Seconds per measurement (default 3)");

  LineBenchOptions lo;
  auto* line = app.add_subcommand("line", "The line end to end over in-process simulator links");
  line->add_option("--devices", lo.devices, "Devices in the batch (default 1000)");
  line->add_option("--fixtures", lo.fixtures, "Fixtures (default 8)");
  line->add_option("--printer", lo.printer, "Labels to: tcp (a loopback raw-TCP label printer) or dir (spool folder)");
  LineBenchOptions so;
  so.devices = 32;
  so.baud = 115200;
  auto* serial = app.add_subcommand("serial", "The line over pseudo-terminals to simdevice processes at a baud rate");
  serial->add_option("--devices", so.devices, "Devices in the batch (default 32)");
  serial->add_option("--fixtures", so.fixtures, "Fixtures (default 8)");
  serial->add_option("--baud", so.baud, "Emulated line rate (default 115200)");
  serial->add_option("--printer", so.printer, "Labels to: tcp (a loopback raw-TCP label printer) or dir (spool folder)");
  serial->add_option("--simdevice", so.simdevice, "The simdevice program")->required();

  RecordsOptions ro;
  auto* records = app.add_subcommand("records", "N provisioned devices written into a database; lookups timed");
  records->add_option("--devices", ro.devices, "Devices (default 1000000)");
  records->add_flag("--line-journal", ro.line_journal, "Nine journal entries per device, as the line writes");

  FloorOptions fo;
  auto* floor = app.add_subcommand("floor", "The work no pipeline can skip per device, timed alone; the bound it sets");
  floor->add_option("--seconds", fo.seconds, "Seconds per operation (default 1)");
  floor->add_option("--journal-devices", fo.journal_devices, "Devices journaled for the journal's figure (default 4000)");
  floor->add_option("--fixtures", fo.fixtures, "Fixtures, for the flush bound (default 8)");
  floor->add_option("--cores", fo.cores, "Cores, for the CPU bound (default: this machine's)");

  fs::path results;
  fs::path json_out;
  auto* rep = app.add_subcommand("report", "The table (stdout) and the issue's JSON from the parts' results");
  rep->add_option("--dir", results, "Folder with the parts' JSON files")->required();
  rep->add_option("--json", json_out, "Write the JSON here");

  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);
  try {
    nlohmann::json out;
    if (*hsm) out = run_hsm(work, ho);
    else if (*line) out = run_line(work, lo);
    else if (*serial) out = run_line(work, so);
    else if (*records) out = run_records(work, ro);
    else if (*floor) out = run_floor(work, fo);
    else if (*rep) {
      out = report(results, std::cout);
      if (!json_out.empty()) std::ofstream(json_out) << out.dump(2) << "\n";
      return 0;
    }
    std::cout << out.dump() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "station_bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
