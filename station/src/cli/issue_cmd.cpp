// station issue --data DIR --pubkey FILE.pem --serial SN [--profile NAME]
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "cli/cli.hpp"
#include "core/station.hpp"
#include "pki/x509.hpp"

namespace station::cli {
namespace {

struct IssueOptions {
  std::filesystem::path data;
  std::optional<std::filesystem::path> config;
  std::filesystem::path pubkey;
  std::string serial;
  std::string profile;
};

void issue(const IssueOptions& o) {
  std::ifstream in(o.pubkey, std::ios::binary);
  if (!in) throw Error(Errc::not_found, "cannot read public key file " + o.pubkey.string());
  std::ostringstream text;
  text << in.rdbuf();
  core::IssueRequest req;
  req.subject_spki = pki::public_key_from_pem_or_der(text.str());
  req.device_serial = o.serial;
  req.profile = o.profile;
  core::Station station(o.data, o.config);
  const auto result = core::issue_device_certificate(station, req);
  std::cout << pki::to_pem(result.certificate.der);
  for (const auto& c : result.chain) std::cout << pki::to_pem(c);
}

}  // namespace

void register_issue(CLI::App& app, Context& /*ctx*/) {
  auto o = std::make_shared<IssueOptions>();
  auto* cmd = app.add_subcommand("issue",
                                 "Issue a device certificate for a public key under the active issuing CA; prints the "
                                 "certificate in PEM followed by its chain up to, not including, the root");
  cmd->add_option("--data", o->data, "Station data folder");
  cmd->add_option("--config", o->config, "Config file (default: DIR/station.conf)");
  cmd->add_option("--pubkey", o->pubkey, "Device public key: PEM (PUBLIC KEY) or DER SubjectPublicKeyInfo")->required();
  cmd->add_option("--serial", o->serial, "Device serial number")->required();
  cmd->add_option("--profile", o->profile, "Certificate profile (default: issue.default_profile)");
  cmd->callback([o] { issue(*o); });
}

}  // namespace station::cli
