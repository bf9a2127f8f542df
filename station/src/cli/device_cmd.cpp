// station device reprovision: an officer sends a done device back to the line for a new
// identity (docs/pipeline.md, "Re-provisioning").
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli/cli.hpp"
#include "core/reprovision.hpp"
#include "core/station.hpp"
#include "core/users.hpp"

namespace station::cli {
namespace {

struct ReprovisionOptions {
  UserOptions user;
  core::ReprovisionRequest request;
};

void reprovision(const ReprovisionOptions& o) {
  core::Station st(o.user.data, o.user.config);
  const auto who = core::authorize(st, core::TokenSource{o.user.token_file}, {"officer"}, "device.reprovision");
  const auto r = core::reprovision_device(st, who, o.request);
  if (o.user.json) {
    std::cout << core::to_json(r).dump(2) << "\n";
    return;
  }
  if (!r.batch) {
    std::cout << "device " << r.serial << " may be issued a new certificate\n";
  } else {
    std::cout << "device " << r.serial << " (chip " << r.chip_id.value_or("-") << ") goes back to the line in batch "
              << *r.batch << "; it keeps its serial" << (r.mac ? " and MAC " + *r.mac : std::string()) << "\n";
  }
  for (const auto& d : r.revoked) std::cout << "  revoked certificate " << d.cert_serial << "\n";
  for (const auto& s : r.already_revoked) std::cout << "  certificate " << s << " was revoked before\n";
  if (r.batch)
    std::cout << "put the device in a fixture of batch " << *r.batch
              << "'s line: it gets a new key, certificate and label\n";
  else
    std::cout << "issue it with: station issue --data DIR --pubkey NEW_KEY.pem --serial " << r.serial << "\n";
  if (!r.revoked.empty()) std::cout << "publish the CRLs: station ca crl --data DIR --out FOLDER\n";
}

}  // namespace

void register_device(CLI::App& app, Context&) {
  auto* dev = app.add_subcommand("device", "Devices: re-provision a done device (officer)");
  dev->require_subcommand(1);
  auto o = std::make_shared<ReprovisionOptions>();
  auto* rp = dev->add_subcommand(
      "reprovision",
      "Send a done device back to the line for a new key and certificate (officer): revokes its certificates, "
      "keeps its serial and MAC");
  add_user_options(rp, o->user);
  rp->add_option("--serial", o->request.serial, "The device's serial number")->required();
  rp->add_option("--reason", o->request.why, "Why, in words (kept in the journal), e.g. 'RMA 4411: key exposed in "
                                             "field debug log'")
      ->required();
  rp->add_option("--batch", o->request.batch, "Open batch to provision it in (default: its own batch)");
  rp->add_option("--revoke-reason", o->request.revoke_reason,
                 "RFC 5280 reason for its certificates (default superseded; keyCompromise if its key leaked)");
  rp->add_flag("--erased", o->request.erased,
               "The device was locked and its provisioning area has since been erased at the rework bench");
  rp->callback([o] { reprovision(*o); });
}

}  // namespace station::cli
