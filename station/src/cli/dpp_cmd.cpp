// station dpp parse|gen: DPP bootstrapping URIs from the command line (docs/dpp.md).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/cli.hpp"
#include "common/error.hpp"
#include "pki/dpp.hpp"

namespace station::cli {
namespace {

namespace dpp = station::pki::dpp;
using Json = nlohmann::ordered_json;

Json channels_json(const dpp::BootstrapUri& u) {
  Json arr = Json::array();
  for (std::size_t i = 0; i < u.fields.channels.size(); ++i) {
    const auto& ch = u.fields.channels[i];
    Json o{{"opclass", ch.opclass}, {"channel", ch.channel}, {"freq", nullptr}};
    if (u.freqs[i]) o["freq"] = *u.freqs[i];
    arr.push_back(std::move(o));
  }
  return arr;
}

template <class T>
Json or_null(const std::optional<T>& v) {
  return v ? Json(*v) : Json(nullptr);
}

void print_parsed(const dpp::BootstrapUri& u, bool json) {
  const auto& f = u.fields;
  if (json) {
    Json curves = nullptr;
    if (f.supported_curves) {
      curves = Json::array();
      for (const auto c : *f.supported_curves) curves.push_back(std::string(dpp::curve_name(c)));
    }
    const Json out{
        {"curve", std::string(dpp::curve_name(u.curve))},
        {"mac", f.mac ? Json(dpp::format_mac(*f.mac)) : Json(nullptr)},
        {"channels", channels_json(u)},
        {"version", or_null(f.version)},
        {"info", or_null(f.info)},
        {"host", or_null(f.host)},
        {"supported_curves", curves},
        {"pkhash", hex_encode(u.pkhash)},
        {"chirp_hash", hex_encode(u.chirp_hash)},
    };
    std::cout << out.dump() << "\n";
    return;
  }
  std::cout << "curve: " << dpp::curve_name(u.curve) << "\n";
  if (f.mac) std::cout << "mac: " << dpp::format_mac(*f.mac) << "\n";
  if (!f.channels.empty()) {
    std::cout << "channels:";
    for (std::size_t i = 0; i < f.channels.size(); ++i) {
      std::cout << " " << f.channels[i].opclass << "/" << f.channels[i].channel;
      std::cout << (u.freqs[i] ? " (" + std::to_string(*u.freqs[i]) + " MHz)" : std::string(" (unknown)"));
    }
    std::cout << "\n";
  }
  if (f.version) std::cout << "version: " << *f.version << "\n";
  if (f.info) std::cout << "info: " << *f.info << "\n";
  if (f.host) std::cout << "host: " << *f.host << "\n";
  if (f.supported_curves) {
    std::cout << "supported_curves:";
    for (const auto c : *f.supported_curves) std::cout << " " << dpp::curve_name(c);
    std::cout << "\n";
  }
  for (const auto& [token, value] : u.unknown_fields) std::cout << "ignored field: " << token << ":" << value << "\n";
  if (!u.terminated) std::cout << "note: the URI ends in a single ';' (accepted)\n";
  std::cout << "pkhash: " << hex_encode(u.pkhash) << "\n";
  std::cout << "chirp_hash: " << hex_encode(u.chirp_hash) << "\n";
}

// Writes the private key PEM to a new file with mode 0600; never overwrites.
void write_key_file(const std::string& path, const SecretString& pem) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST)
      throw Error(Errc::already_exists, path + " already exists; refusing to overwrite a private key file "
                                               "(remove it or choose another --key-out)");
    throw_errno("creating the key file " + path);
  }
  bool ok = ::fchmod(fd, 0600) == 0;
  std::size_t done = 0;
  while (ok && done < pem.size()) {
    const ssize_t n = ::write(fd, pem.str().data() + done, pem.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<std::size_t>(n);
  }
  ok = ok && ::fsync(fd) == 0;
  const int saved = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    errno = saved;
    throw_errno("writing the key file " + path);
  }
}

dpp::PublicKey read_public_key_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(Errc::not_found, "cannot read the public key file " + path);
  const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  try {
    return dpp::PublicKey::from_spki_pem_or_der(as_bytes(data));
  } catch (const Error& e) {
    throw Error(e.code(), path + ": " + e.what());
  }
}

struct GenOptions {
  bool json = false;
  std::string curve = "P-256";
  std::string mac;
  std::string chan;
  std::optional<std::string> info;
  int version = 2;
  std::string key_out;
  std::string pubkey;
};

void run_gen(const GenOptions& o, bool curve_given) {
  dpp::UriFields fields;
  if (!o.chan.empty()) fields.channels = dpp::parse_channel_list(o.chan);
  if (!o.mac.empty()) {
    fields.mac = dpp::parse_mac(o.mac);
    if (!fields.mac)
      throw Error(Errc::invalid_argument, "--mac " + o.mac + " is not a MAC address; give 12 hex digits "
                                                              "(2ccf67158817) or 2c:cf:67:15:88:17");
  }
  fields.info = o.info;
  fields.version = o.version;

  std::string uri;
  if (!o.pubkey.empty()) {
    if (curve_given || !o.key_out.empty())
      throw Error(Errc::invalid_argument, "--pubkey uses the device's own key: --curve and --key-out do not apply");
    uri = dpp::generate_uri(read_public_key_file(o.pubkey), fields);
  } else {
    const auto curve = dpp::curve_from_name(o.curve);
    if (!curve)
      throw Error(Errc::invalid_argument,
                  "--curve " + o.curve + " is not a DPP curve; use P-256, P-384, P-521, BP-256, BP-384 or BP-512");
    const auto key = dpp::KeyPair::generate(*curve);
    uri = dpp::generate_uri(key.public_key(), fields);  // validates the fields before a key file exists
    if (!o.key_out.empty()) write_key_file(o.key_out, key.ec_private_key_pem());
  }
  const auto parsed = dpp::parse_uri(uri);
  if (o.json) {
    std::cout << Json{{"uri", uri}, {"pkhash", hex_encode(parsed.pkhash)}}.dump() << "\n";
  } else {
    std::cout << uri << "\n";
  }
}

}  // namespace

void register_dpp(CLI::App& app, Context& /*ctx*/) {
  auto* dpp_cmd = app.add_subcommand("dpp", "DPP (Wi-Fi Easy Connect) bootstrapping keys and URIs");
  dpp_cmd->require_subcommand(1);

  auto* parse = dpp_cmd->add_subcommand("parse", "Check a DPP URI and show what it says (exit 1 if malformed)");
  auto parse_json = std::make_shared<bool>(false);
  auto parse_uri = std::make_shared<std::string>();
  parse->add_flag("--json", *parse_json, "One JSON object on stdout");
  parse->add_option("URI", *parse_uri, "The URI, e.g. 'DPP:C:81/1;M:2ccf67158817;V:2;K:...;;'")->required();
  parse->callback([parse_json, parse_uri] { print_parsed(dpp::parse_uri(*parse_uri), *parse_json); });

  auto* gen = dpp_cmd->add_subcommand("gen", "Generate a bootstrapping key pair and print its DPP URI");
  auto opts = std::make_shared<GenOptions>();
  gen->add_flag("--json", opts->json, "Print {\"uri\": ..., \"pkhash\": ...}");
  auto* curve_opt = gen->add_option("--curve", opts->curve, "P-256 (default), P-384, P-521, BP-256, BP-384, BP-512");
  gen->add_option("--mac", opts->mac, "Device MAC address, 12 hex digits");
  gen->add_option("--chan", opts->chan, "Channel list in URI syntax, e.g. 81/1,6,11,115/36");
  gen->add_option("--info", opts->info, "Information (e.g. the serial number): printable ASCII except ';'");
  gen->add_option("--version", opts->version, "DPP version in V: (2 or 3)")->check(CLI::IsMember({2, 3}));
  gen->add_option("--key-out", opts->key_out, "Write the private key (PEM \"EC PRIVATE KEY\", RFC 5915), mode 0600");
  gen->add_option("--pubkey", opts->pubkey,
                  "Use a device-generated public key (PEM or DER SubjectPublicKeyInfo) instead of a new key");
  gen->callback([opts, curve_opt] { run_gen(*opts, curve_opt->count() > 0); });
}

}  // namespace station::cli
