// station issue --data DIR (--pubkey FILE.pem | --csr FILE.csr) --serial SN [--profile NAME] [--dpp-pubkey FILE.pem]
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
  std::filesystem::path csr;
  std::string serial;
  std::string profile;
  std::optional<std::filesystem::path> dpp_pubkey;
};

std::string read_file(const std::filesystem::path& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(Errc::not_found, std::string("cannot read ") + what + " file " + path.string());
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

Bytes read_public_key(const std::filesystem::path& path) {
  return pki::public_key_from_pem_or_der(read_file(path, "public key"));
}

void issue(const IssueOptions& o) {
  core::IssueRequest req;
  if (!o.csr.empty()) {
    const std::string csr = read_file(o.csr, "certificate request");
    try {
      req.subject_spki = pki::public_key_from_csr(csr);
    } catch (const Error& e) {
      throw Error(e.code(), o.csr.string() + ": " + e.what());
    }
    req.proof = "csr";
  } else {
    req.subject_spki = read_public_key(o.pubkey);
  }
  if (o.dpp_pubkey) req.dpp_spki = read_public_key(*o.dpp_pubkey);
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
  auto* pubkey =
      cmd->add_option("--pubkey", o->pubkey, "Device public key: PEM (PUBLIC KEY) or DER SubjectPublicKeyInfo");
  auto* csr = cmd->add_option("--csr", o->csr,
                              "Instead of --pubkey: the device's PKCS#10 certificate request (PEM or DER); its "
                              "signature must verify, proving the device holds the key (journaled as proof: csr); "
                              "only its key is used, the profile names the subject");
  pubkey->excludes(csr);
  csr->excludes(pubkey);
  cmd->add_option("--serial", o->serial, "Device serial number")->required();
  cmd->add_option("--profile", o->profile, "Certificate profile (default: issue.default_profile)");
  cmd->add_option("--dpp-pubkey", o->dpp_pubkey,
                  "With a profile of certified_key = 'separate': the device's DPP public key, which the certificate "
                  "binds by its hash (--pubkey is then the device's certificate key)");
  cmd->callback([o] {
    if (o->pubkey.empty() && o->csr.empty())
      throw Error(Errc::invalid_argument, "station issue needs the device's key: --pubkey FILE or --csr FILE");
    issue(*o);
  });
}

}  // namespace station::cli
