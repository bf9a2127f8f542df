// The table and the JSON from the parts' result files (scripts/bench writes them):
// hsm.json, line-N[-R].json (R: repeats), serial.json, baseline.json, records.json,
// records-cli.json and floor.json.
#include <fstream>
#include <map>
#include <ostream>

#include <fmt/format.h>

#include "bench.hpp"
#include "common/error.hpp"

namespace station::bench {
namespace {

std::optional<nlohmann::json> load(const fs::path& p) {
  std::ifstream in(p);
  if (!in) return std::nullopt;
  return nlohmann::json::parse(in);
}

double num(const nlohmann::json& j, const nlohmann::json::json_pointer& p) {
  return j.contains(p) && j.at(p).is_number() ? j.at(p).get<double>() : 0.0;
}

std::string ratio(double a, double b) { return b > 0 ? (a / b < 0.1 ? fmt::format("{:.3f}", a / b) : fmt::format("{:.2f}", a / b)) : "-"; }

}  // namespace

nlohmann::json report(const fs::path& dir, std::ostream& t) {
  using P = nlohmann::json::json_pointer;
  nlohmann::json out = nlohmann::json::object();
  const auto hsm = load(dir / "hsm.json");
  const auto serial = load(dir / "serial.json");
  const auto baseline = load(dir / "baseline.json");
  const auto records = load(dir / "records.json");
  const auto records_cli = load(dir / "records-cli.json");
  const auto floor = load(dir / "floor.json");

  // Runs of the line by size; the median run (by devices/s) stands for its size.
  std::map<std::int64_t, std::vector<nlohmann::json>> runs;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("line-", 0) != 0 || e.path().extension() != ".json") continue;
    auto j = load(e.path());
    if (j && j->contains("devices")) runs[(*j)["devices"].get<std::int64_t>()].push_back(*j);
  }
  std::map<std::int64_t, nlohmann::json> line;
  for (auto& [n, v] : runs) {
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) {
      return a["devices_per_s"].template get<double>() < b["devices_per_s"].template get<double>();
    });
    line[n] = v[v.size() / 2];
    line[n]["runs"] = v.size();
  }

  const double sign1 = hsm ? num(*hsm, P("/sign_per_s/layer/1")) : 0;
  const double sign2 = hsm ? num(*hsm, P("/sign_per_s/layer/2")) : 0;
  const double raw1 = hsm ? num(*hsm, P("/sign_per_s/raw/1")) : 0;
  const double raw2 = hsm ? num(*hsm, P("/sign_per_s/raw/2")) : 0;
  const double keygen = hsm ? num(*hsm, P("/keygen_per_s/layer")) : 0;
  const double keygen_raw = hsm ? num(*hsm, P("/keygen_per_s/raw")) : 0;
  const double hsm_limit = std::max(sign1, sign2);
  // The station's figure: the 10,000-device run (in both --quick and full), else the largest.
  const nlohmann::json* main_run = nullptr;
  if (line.count(10000) != 0) main_run = &line[10000];
  else if (!line.empty()) main_run = &line.rbegin()->second;
  const double station = main_run != nullptr ? (*main_run)["devices_per_s"].get<double>() : 0;
  const double base = baseline ? num(*baseline, P("/devices_per_s")) : 0;

  out["station_devices_per_s"] = station;
  out["baseline_devices_per_s"] = base;
  out["hsm_sign_per_s"] = hsm_limit;
  out["hsm_keygen_per_s"] = keygen;
  out["serial_s_per_device"] = serial ? num(*serial, P("/s_per_device_mean")) : 0;
  out["serial_wire_s_per_device"] = serial ? num(*serial, P("/wire_s_per_device")) : 0;
  out["rss_mb_by_devices"] = nlohmann::json::object();
  out["s_per_device_by_devices"] = nlohmann::json::object();
  for (const auto& [n, j] : line) {
    out["rss_mb_by_devices"][std::to_string(n)] = j["peak_rss_mb"];
    out["s_per_device_by_devices"][std::to_string(n)] = j["seconds"].get<double>() / j["done"].get<double>();
  }
  double query_ms = 0;
  if (records) query_ms = std::max(num(*records, P("/query_serial_ms_p50")), num(*records, P("/query_pkhash_ms_p50")));
  out["query_ms_1m"] = query_ms;
  out["verify_s_1m"] = records_cli ? num(*records_cli, P("/verify_s")) : 0;
  out["per_device"] = main_run != nullptr ? nlohmann::json{{"hsm_signatures", (*main_run)["per_device"]["hsm_signatures"]},
                                                            {"challenges_verified",
                                                             (*main_run)["per_device"]["challenges_verified"]},
                                                            {"journal_entries", (*main_run)["per_device"]["journal_entries"]}}
                                          : nlohmann::json::object();
  // Beyond the keys: the bound the floor sets, and everything each part measured.
  const double floor_rate = floor ? num(*floor, P("/floor_devices_per_s")) : 0;
  out["floor_devices_per_s"] = floor_rate;
  out["floor_cpu_us_per_device"] = floor ? num(*floor, P("/floor_cpu_us_per_device")) : 0;
  out["detail"] = {{"hsm", hsm.value_or(nullptr)},         {"line", line},
                   {"serial", serial.value_or(nullptr)},     {"baseline", baseline.value_or(nullptr)},
                   {"records", records.value_or(nullptr)},   {"records_cli", records_cli.value_or(nullptr)},
                   {"floor", floor.value_or(nullptr)}};

  const auto row = [&](const std::string& what, const std::string& figure, const std::string& note) {
    t << fmt::format("| {:<46} | {:>26} | {:<44} |\n", what, figure, note);
  };
  t << fmt::format("| {:<46} | {:>26} | {:<44} |\n", "measure", "figure", "ratio (target)");
  t << "|" << std::string(48, '-') << "|" << std::string(28, '-') << "|" << std::string(46, '-') << "|\n";
  if (hsm) {
    row("HSM: ECDSA P-256 sign/s, layer, 1 / 2 threads", fmt::format("{:.0f} / {:.0f}", sign1, sign2),
        fmt::format("layer/raw {} / {} (>= 0.8)", ratio(sign1, raw1), ratio(sign2, raw2)));
    row("HSM: ECDSA P-256 sign/s, raw, 1 / 2 threads", fmt::format("{:.0f} / {:.0f}", raw1, raw2), "");
    row("HSM: session key pairs/s, layer / raw", fmt::format("{:.0f} / {:.0f}", keygen, keygen_raw),
        fmt::format("layer/raw {}", ratio(keygen, keygen_raw)));
  }
  for (const auto& [n, j] : line) {
    row(fmt::format("line, {} fixtures, {} devices: devices/s", j["fixtures"].get<int>(), n),
        fmt::format("{:.0f}{}", j["devices_per_s"].get<double>(),
                    j["runs"].get<int>() > 1 ? fmt::format(" (median of {})", j["runs"].get<int>()) : ""),
        fmt::format("HSM limit {}, baseline x{}", ratio(j["devices_per_s"].get<double>(), hsm_limit),
                    base > 0 ? fmt::format("{:.0f}", j["devices_per_s"].get<double>() / base) : "-"));
    row(fmt::format("  {} devices: ms in fixture p50 / p99", n),
        fmt::format("{:.2f} / {:.2f}", j["s_per_device_p50"].get<double>() * 1000, j["s_per_device_p99"].get<double>() * 1000),
        fmt::format("line s/device {:.1f} us", j["seconds"].get<double>() / j["done"].get<double>() * 1e6));
    row(fmt::format("  {} devices: peak RSS MB", n), fmt::format("{:.1f}", j["peak_rss_mb"].get<double>()),
        fmt::format("done {} failed {} journal {}", j["devices_done_in_db"].get<std::int64_t>(),
                    j["failed"].get<std::int64_t>(), j["journal_verified"].get<bool>() ? "verified" : "NOT VERIFIED"));
  }
  if (line.count(10000) != 0 && line.count(100000) != 0) {
    const auto& a = line[10000];
    const auto& b = line[100000];
    row("flatness 100k vs 10k: s/device, peak RSS",
        fmt::format("{} / {}", ratio(b["seconds"].get<double>() / b["done"].get<double>(),
                                     a["seconds"].get<double>() / a["done"].get<double>()),
                    ratio(b["peak_rss_mb"].get<double>(), a["peak_rss_mb"].get<double>())),
        "(each within 1.15)");
  }
  if (main_run != nullptr) {
    const auto& pd = (*main_run)["per_device"];
    row("per device: HSM signs / challenges / entries",
        fmt::format("{:.3f} / {:.2f} / {:.2f}", pd["hsm_signatures"].get<double>(), pd["challenges_verified"].get<double>(),
                    pd["journal_entries"].get<double>()),
        fmt::format("link bytes {:.0f} out, {:.0f} in", pd["bytes_sent"].get<double>(), pd["bytes_received"].get<double>()));
    row("per device: journal units / fsyncs / WAL pages",
        fmt::format("{:.2f} / {:.2f} / {:.1f}", pd["journal_units"].get<double>(),
                    pd["journal_transactions"].get<double>(), pd["wal_pages"].get<double>()),
        fmt::format("{:.1f} units per transaction",
                    pd["journal_units"].get<double>() / std::max(pd["journal_transactions"].get<double>(), 1e-9)));
    row(fmt::format("station devices/s ({} fixtures)", (*main_run)["fixtures"].get<int>()), fmt::format("{:.0f}", station),
        fmt::format("x{} baseline (>= 60); {} of HSM", base > 0 ? fmt::format("{:.0f}", station / base) : "-",
                    ratio(station, hsm_limit)));
  }
  if (serial) {
    const double s = num(*serial, P("/s_per_device_mean"));
    const double w = num(*serial, P("/wire_s_per_device"));
    row(fmt::format("serial {} baud, {} fixtures: s per device", num(*serial, P("/baud")), num(*serial, P("/fixtures"))),
        fmt::format("{:.3f} (wire {:.3f})", s, w), fmt::format("time/wire {} (<= 1.2)", ratio(s, w)));
    row("serial: devices/s", fmt::format("{:.1f}", num(*serial, P("/devices_per_s"))),
        fmt::format("{} devices, {:.0f} bytes each way+back", num(*serial, P("/devices")),
                    num(*serial, P("/per_device/bytes_sent")) + num(*serial, P("/per_device/bytes_received"))));
  }
  if (baseline)
    row(fmt::format("baseline shell script, {} workers: devices/s", num(*baseline, P("/workers"))),
        fmt::format("{:.1f}", base), "openssl + qrencode + sqlite3 per device");
  if (records) {
    row(fmt::format("records: {} devices generated (s)", num(*records, P("/devices"))),
        fmt::format("{:.1f}", num(*records, P("/generate_s"))),
        fmt::format("{} entries ({} journal), db {:.0f} MB", num(*records, P("/entries")),
                    (*records)["journal"].get<std::string>(), num(*records, P("/db_mb"))));
    row("records: query by serial / key hash, ms (p50)",
        fmt::format("{:.3f} / {:.3f}", num(*records, P("/query_serial_ms_p50")), num(*records, P("/query_pkhash_ms_p50"))),
        "in-process, db::query_identities");
  }
  if (records_cli) {
    row("records: `audit query` serial / pkhash, ms",
        fmt::format("{:.0f} / {:.0f}", num(*records_cli, P("/query_serial_ms")), num(*records_cli, P("/query_pkhash_ms"))),
        "whole command, process start included");
    row("records: `station audit verify`, s", fmt::format("{:.1f}", num(*records_cli, P("/verify_s"))),
        (*records_cli).value("verify_ok", false) ? "ok" : "FAILED");
  }
  if (floor) {
    const double us = num(*floor, P("/floor_cpu_us_per_device"));
    const double cores = num(*floor, P("/cores"));
    row("floor: CPU per device no pipeline can skip, us", fmt::format("{:.0f}", us),
        fmt::format("<= {:.0f} devices/s on {:.0f} cores", floor_rate, cores));
    std::string parts;
    for (const auto& [name, op] : (*floor)["ops"].items())
      parts += fmt::format("{}{} {:.0f}", parts.empty() ? "" : ", ", name, op["cpu_us"].get<double>());
    t << "|   " << parts << "\n";
    row("floor: 4,000 devices/s needs per device, us", fmt::format("{:.0f}", cores * 1e6 / 4000),
        station > 0 ? fmt::format("the line runs at {} of the floor's bound", ratio(station, floor_rate)) : "");
    row("floor: one durable flush (8 KiB), us", fmt::format("{:.0f}", num(*floor, P("/flush_us"))),
        fmt::format("3 per device: <= {:.0f} devices/s with {:.0f} fixtures",
                    num(*floor, P("/flush_bound_devices_per_s")), num(*floor, P("/fixtures"))));
  }
  return out;
}

}  // namespace station::bench
