// The floor: the work no pipeline can skip for one device, each operation timed alone on one
// thread with the station's own code, and what their sum allows on this machine's cores.
//
// Per device the line must (station side) make the DPP key, write its URI, have the HSM sign
// the certificate (the issuer verifies the signature before it returns), verify the device's
// proof of possession, render the ZPL label and send it to the printer, and journal nine
// entries with their records; the device (here the simulator, on the same cores) must import
// its key and sign the nonce. Each is measured as process CPU per operation; the journal as
// the line's nine entries per device written at the journal's most favourable batching
// (Journal::commit_all, up to 512 entries per transaction, as the records part writes them), so
// the sum is a lower bound on the CPU the line spends per device. Cores x 1e6 / floor(us) is
// then an upper bound on devices per second on this machine, however well the line
// overlaps its work. The flush is timed too: each device waits for three write-ahead flushes
// in sequence, so fixtures / (3 x flush) bounds the line from the other side.
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <thread>

#include <fmt/format.h>

#include "bench.hpp"
#include "common/error.hpp"
#include "core/batches.hpp"
#include "fixtures/keys.hpp"
#include "labels/printer.hpp"
#include "labels/render.hpp"
#include "pki/dpp.hpp"
#include "pki/dpp_key.hpp"
#include "pki/x509.hpp"
#include "printer_sink.hpp"

namespace station::bench {
namespace {

double process_cpu_s() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

struct Timing {
  double cpu_us = 0;
  double wall_us = 0;
  std::uint64_t runs = 0;
};

// Runs `op` (once to warm, then) for `seconds`; process CPU and wall time per run.
template <class Op>
Timing time_op(double seconds, Op op) {
  op(0);
  Timing t;
  const double cpu0 = process_cpu_s();
  const auto t0 = Clock::now();
  do op(++t.runs);
  while (seconds_since(t0) < seconds);
  t.wall_us = seconds_since(t0) * 1e6 / static_cast<double>(t.runs);
  t.cpu_us = (process_cpu_s() - cpu0) * 1e6 / static_cast<double>(t.runs);
  return t;
}

// A plain 8 KiB pwrite + fdatasync in `dir`: what one durable flush costs on this disk.
Timing time_flush(const fs::path& dir, double seconds) {
  const fs::path file = dir / "flush-probe";
  const int fd = ::open(file.c_str(), O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw Error(Errc::io_error, "bench: cannot create " + file.string());
  const std::string block(8192, 'x');
  const Timing t = time_op(seconds, [&](std::uint64_t i) {
    const auto off = static_cast<off_t>((i % 64) * block.size());
    if (::pwrite(fd, block.data(), block.size(), off) != static_cast<ssize_t>(block.size()) || ::fdatasync(fd) != 0)
      throw Error(Errc::io_error, "bench: write or fdatasync of " + file.string() + " failed");
  });
  ::close(fd);
  fs::remove(file);
  return t;
}

nlohmann::json to_json(const Timing& t, const char* side) {
  return {{"cpu_us", t.cpu_us}, {"wall_us", t.wall_us}, {"runs", t.runs}, {"side", side}};
}

}  // namespace

nlohmann::json run_floor(const fs::path& work, const FloorOptions& o) {
  const fs::path dir = work / "floor-station";
  make_station(dir, false);
  PrinterSink sink;
  core::Station station(dir, std::nullopt);
  const auto& config = station.config();
  const auto issuing = station.records().active_ca("issuing");
  if (!issuing) throw Error(Errc::not_found, "bench: no issuing CA");
  pki::CertificateIssuer issuer(station.hsm(), pki::CaSigner{issuing->der, issuing->key_id},
                                config.profile(config.default_profile), nullptr);

  // One device's inputs, made once; each operation below repeats one step of its pipeline.
  const auto pair = pki::dpp::KeyPair::generate(pki::dpp::Curve::p256);
  const Bytes spki = pair.public_key().spki_der();
  const auto private_der = pair.ec_private_key_der();
  const Bytes chip = fixtures::random_bytes(8);
  const auto device_key = fixtures::parse_private_key(private_der.bytes());
  pki::dpp::UriFields fields;
  fields.channels = {{81, 1}, {81, 6}, {81, 11}};
  fields.mac = pki::dpp::Mac{0x02, 0x00, 0x5e, 0x10, 0x00, 0x01};
  labels::LabelData label;
  label.uri = pki::dpp::generate_uri(pair.public_key(), fields);
  label.serial = "FLOOR-0000001";
  label.mac = "02005e100001";
  label.model = "Bench Widget";
  label.date = "2026-12-02";
  label.batch = "FLOOR";
  label.fixture = "1";
  const labels::ZplRenderer renderer(config.label_template("default"));
  labels::PrinterOptions popts;
  popts.status = labels::StatusCheck::require;
  const auto printer = labels::open_printer(sink.uri(), popts);
  const std::string zpl = renderer.render(label);

  nlohmann::json ops;
  std::size_t kept = 0;  // keeps results observable so nothing is optimised away
  ops["dpp_key"] = to_json(time_op(o.seconds,
                                   [&](std::uint64_t) {
                                     auto k = pki::dpp::KeyPair::generate(pki::dpp::Curve::p256);
                                     kept += k.public_key().spki_der().size() + k.ec_private_key_der().size();
                                   }),
                           "station");
  ops["dpp_uri"] = to_json(time_op(o.seconds,
                                   [&](std::uint64_t) {
                                     kept += pki::dpp::generate_uri(pki::dpp::PublicKey::from_spki_der(spki), fields)
                                                  .size();
                                   }),
                           "station");
  ops["certificate"] = to_json(time_op(o.seconds,
                                       [&](std::uint64_t i) {
                                         kept += issuer.issue(spki, fmt::format("FLOOR-{:07}", i)).der.size();
                                       }),
                               "station+hsm");
  ops["device_key_import"] = to_json(time_op(o.seconds,
                                             [&](std::uint64_t) {
                                               auto k = fixtures::parse_private_key(private_der.bytes());
                                               kept += fixtures::compressed_spki(k.get()).size();
                                             }),
                                     "device");
  const Bytes nonce = fixtures::random_bytes(32);
  ops["pop_sign"] = to_json(
      time_op(o.seconds, [&](std::uint64_t) { kept += fixtures::sign_pop(device_key.get(), chip, nonce).size(); }),
      "device");
  const Bytes signature = fixtures::sign_pop(device_key.get(), chip, nonce);
  ops["pop_verify"] = to_json(time_op(o.seconds,
                                      [&](std::uint64_t) {
                                        if (!fixtures::verify_pop(spki, chip, nonce, signature))
                                          throw Error(Errc::internal, "bench: a good proof did not verify");
                                      }),
                              "station");
  std::string out;
  ops["label_zpl"] = to_json(time_op(o.seconds,
                                     [&](std::uint64_t) {
                                       renderer.render(label, out);
                                       kept += out.size();
                                     }),
                             "station");
  ops["label_print_tcp"] = to_json(
      time_op(o.seconds, [&](std::uint64_t) { printer->print(labels::PrintJob{label.serial, zpl, "zpl"}); }),
      "station+printer");

  // The journal: the line's nine entries per device with their records, best batching.
  core::BatchSettings settings;
  settings.product = "Bench Widget";
  settings.quantity = o.journal_devices;
  settings.serial_pattern = "REC-{seq:07}";
  const auto batch = core::open_batch(station, "FLOOR", settings, core::os_user());
  const double cpu0 = process_cpu_s();
  const auto t0 = Clock::now();
  const std::int64_t entries = generate_records(station, batch.id, o.journal_devices, true);
  Timing journal;
  journal.runs = static_cast<std::uint64_t>(o.journal_devices);
  journal.wall_us = seconds_since(t0) * 1e6 / static_cast<double>(o.journal_devices);
  journal.cpu_us = (process_cpu_s() - cpu0) * 1e6 / static_cast<double>(o.journal_devices);
  ops["journal_9_entries"] = to_json(journal, "station");

  double floor_us = 0;
  for (const auto& [name, op] : ops.items()) floor_us += op["cpu_us"].get<double>();
  const unsigned cores = o.cores != 0 ? o.cores : std::max(1U, std::thread::hardware_concurrency());
  const Timing flush = time_flush(dir, o.seconds);
  return {{"ops", ops},
          {"floor_cpu_us_per_device", floor_us},
          {"cores", cores},
          {"floor_devices_per_s", cores * 1e6 / floor_us},
          {"journal_entries_per_device", static_cast<double>(entries) / static_cast<double>(o.journal_devices)},
          {"flush_us", flush.wall_us},
          {"flush_cpu_us", flush.cpu_us},
          {"fixtures", o.fixtures},
          {"flush_bound_devices_per_s", o.fixtures * 1e6 / (3 * flush.wall_us)},
          {"labels_printed", sink.jobs()},
          {"check", kept > 0}};
}

}  // namespace station::bench
