// station ca show|rotate-issuing|rotate-root|approve|proposals|revoke|destroy-key|crl|bundle
// (issue 2: show; issue 10: the lifecycle, see docs/ca.md)
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli/cli.hpp"
#include "core/ca_lifecycle.hpp"
#include "core/station.hpp"
#include "core/users.hpp"
#include "pki/x509.hpp"

namespace station::cli {
namespace {

struct ShowOptions {
  std::filesystem::path data;
  std::optional<std::filesystem::path> config;
  bool pem = false;
  bool json = false;
};

// `ca show` lists the CA certificates (roots, cross-certificates, issuing CAs); the audit
// signer is not a CA and appears only in the human-readable listing.
bool is_ca_role(const std::string& role) { return role == "root" || role == "issuing" || role == "cross"; }

void show(const ShowOptions& o) {
  core::Station station(o.data, o.config);
  const auto cas = station.records().cas();
  // Stale-CRL alarms: on stderr, so --json and --pem stay exactly their documented shape.
  const auto health = core::crl_health(station);
  for (const auto& h : health)
    if (h.stale) std::cerr << "station: ALARM: " << h.alarm << "\n";
  if (o.json) {
    auto out = nlohmann::json::array();
    for (const auto& ca : cas) {
      if (!is_ca_role(ca.role)) continue;
      out.push_back({{"role", ca.role},
                     {"status", ca.status},
                     {"subject", ca.subject},
                     {"issuer", ca.issuer},
                     {"serial", ca.serial},
                     {"not_before", ca.not_before},
                     {"not_after", ca.not_after},
                     {"key_id", ca.key_id},
                     {"key_label", ca.key_label},
                     {"sha256", ca.sha256},
                     {"pem", pki::to_pem(ca.der)}});
    }
    std::cout << out.dump(2) << "\n";
    return;
  }
  if (o.pem) {
    for (const auto& ca : cas)
      if (is_ca_role(ca.role)) std::cout << pki::to_pem(ca.der);
    return;
  }
  for (const auto& ca : cas) {
    std::cout << ca.role << " (" << ca.status << ")\n"
              << "  subject    " << ca.subject << "\n"
              << "  issuer     " << ca.issuer << "\n"
              << "  serial     " << ca.serial << "\n"
              << "  valid      " << ca.not_before << " .. " << ca.not_after << "\n"
              << "  key_id     " << ca.key_id << "\n"
              << "  key_label  " << ca.key_label << "\n"
              << "  sha256     " << ca.sha256 << "\n";
    for (const auto& h : health) {
      if (h.key_id != ca.key_id || ca.role == "cross") continue;
      if (h.crl_number == 0) std::cout << "  crl        none published\n";
      else
        std::cout << "  crl        #" << h.crl_number << ", " << h.entries << " revoked, next update " << h.next_update
                  << (h.stale ? " (STALE)" : "") << "\n";
    }
  }
}

using Common = UserOptions;

core::Actor officer(core::Station& st, const Common& c, std::string_view action) {
  return core::authorize(st, core::TokenSource{c.token_file}, {"officer"}, action);
}

nlohmann::json rotation_json(const core::RotationResult& r) {
  nlohmann::json j = r.details;
  j["effective"] = r.effective.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.effective);
  return j;
}

void print_proposal(const db::ProposalRecord& p, bool json) {
  if (json) {
    std::cout << core::proposal_json(p).dump(2) << "\n";
    return;
  }
  std::cout << "proposal " << p.ref << ": " << p.action << " " << p.params << "\n"
            << "  proposed by " << p.proposer << ", expires " << p.expires << "\n"
            << "  a second officer approves it with: station ca approve --data DIR " << p.ref << "\n";
}

struct RotateIssuingOptions {
  Common c;
  std::optional<std::string> at;
};

void rotate_issuing(const RotateIssuingOptions& o) {
  core::Station st(o.c.data, o.c.config);
  const auto who = officer(st, o.c, "ca.rotate-issuing");
  std::optional<core::SysSeconds> at;
  if (o.at) at = core::parse_rfc3339(*o.at, "--at");
  const auto r = core::rotate_issuing(st, who, at);
  if (o.c.json) {
    std::cout << rotation_json(r).dump(2) << "\n";
    return;
  }
  std::cout << "new issuing CA " << r.created.front().key_id << " (" << r.created.front().subject
            << "), in effect from " << r.effective << "\n";
}

struct RotateRootOptions {
  Common c;
  std::optional<std::string> token_label, pin, subject, at;
  int overlap_days = 365;
  std::string expires_in = "24h";
};

void rotate_root(const RotateRootOptions& o) {
  core::Station st(o.c.data, o.c.config);
  const auto who = officer(st, o.c, "ca.rotate-root");
  core::RootRotationOptions ro;
  ro.token_label = o.token_label;
  ro.pin = o.pin;
  ro.subject = o.subject;
  ro.overlap_days = o.overlap_days;
  if (o.at) ro.at = core::parse_rfc3339(*o.at, "--at");
  const auto p = core::propose_root_rotation(st, who, ro, {core::parse_duration(o.expires_in, "--expires-in")});
  print_proposal(p, o.c.json);
}

struct ApproveOptions {
  Common c;
  std::string id;
};

void approve(const ApproveOptions& o) {
  core::Station st(o.c.data, o.c.config);
  const auto who = core::authorize(st, core::TokenSource{o.c.token_file}, {"officer"}, "ca.approve");
  const auto r = core::approve(st, who, o.id);
  if (o.c.json) {
    std::cout << rotation_json(r).dump(2) << "\n";
    return;
  }
  std::cout << "proposal " << o.id << " approved by " << who.name << " and carried out\n";
  for (const auto& ca : r.created) std::cout << "  new " << ca.role << " " << ca.key_id << " " << ca.subject << "\n";
}

void proposals(const Common& c) {
  core::Station st(c.data, c.config);
  auto out = nlohmann::json::array();
  for (const auto& p : st.records().proposals()) out.push_back(core::proposal_json(p));
  if (c.json) {
    std::cout << out.dump(2) << "\n";
    return;
  }
  for (const auto& p : out)
    std::cout << p["proposal"].get<std::string>() << "  " << p["status"].get<std::string>() << "  "
              << p["action"].get<std::string>() << "  by " << p["proposer"].get<std::string>() << ", expires "
              << p["expires"].get<std::string>() << "\n";
}

struct RevokeOptions {
  Common c;
  core::RevokeSelector sel;
  std::optional<std::string> ca;
  std::string reason;
  std::string expires_in = "24h";
};

void revoke(const RevokeOptions& o) {
  core::Station st(o.c.data, o.c.config);
  const auto who = officer(st, o.c, "ca.revoke");
  if (o.ca) {
    // Revoking a CA is a two-person ceremony: this is the proposal.
    const auto p = core::propose_ca_revocation(st, who, *o.ca, o.reason,
                                               {core::parse_duration(o.expires_in, "--expires-in")});
    print_proposal(p, o.c.json);
    return;
  }
  const auto done = core::revoke_devices(st, who, o.sel, o.reason);
  if (o.c.json) {
    auto j = nlohmann::json::array();
    for (const auto& d : done)
      j.push_back({{"serial", d.device_serial}, {"cert_serial", d.cert_serial}, {"issuer", d.issuer_key_id}});
    std::cout << nlohmann::json{{"revoked", j}, {"reason", o.reason}}.dump(2) << "\n";
    return;
  }
  for (const auto& d : done) std::cout << "revoked " << d.cert_serial << " (device " << d.device_serial << ")\n";
  std::cout << "publish the CRLs: station ca crl --data DIR --out FOLDER\n";
}

struct DestroyOptions {
  Common c;
  std::string ca;
  std::string expires_in = "24h";
};

void destroy_key(const DestroyOptions& o) {
  core::Station st(o.c.data, o.c.config);
  const auto who = officer(st, o.c, "ca.destroy-key");
  print_proposal(core::propose_key_destruction(st, who, o.ca, {core::parse_duration(o.expires_in, "--expires-in")}),
                 o.c.json);
}

struct CrlOptions {
  Common c;
  std::filesystem::path out;
  bool force = false;
};

void crl(const CrlOptions& o, Context& ctx) {
  core::Station st(o.c.data, o.c.config);
  const auto who = officer(st, o.c, "ca.crl");
  const auto states = core::refresh_crls(st, who.name, o.out, o.force);
  auto j = nlohmann::json::array();
  for (const auto& s : states) {
    if (s.stale) {
      std::cerr << "station: ALARM: " << s.alarm << "\n";
      ctx.exit_code = 1;
    }
    j.push_back({{"key_id", s.key_id},
                 {"role", s.role},
                 {"crl_number", s.crl_number},
                 {"this_update", s.this_update},
                 {"next_update", s.next_update},
                 {"entries", s.entries},
                 {"signed_now", s.signed_now},
                 {"stale", s.stale},
                 {"file", s.file ? nlohmann::json(s.file->string()) : nlohmann::json(nullptr)}});
  }
  if (o.c.json) {
    std::cout << j.dump(2) << "\n";
    return;
  }
  for (const auto& s : states)
    if (s.file) std::cout << s.file->string() << "\n";
}

struct BundleOptions {
  Common c;
  std::filesystem::path out;
};

void bundle(const BundleOptions& o) {
  core::Station st(o.c.data, o.c.config);
  const auto who = core::authorize(st, core::TokenSource{o.c.token_file}, {"officer", "auditor"}, "ca.bundle");
  const auto f = core::export_trust_bundle(st, who.name, o.out);
  if (o.c.json) {
    std::cout << nlohmann::json{{"bundle", f.pem.string()}, {"manifest", f.manifest.string()},
                                {"signature", f.signature.string()}, {"audit_certificate", f.audit_certificate.string()}}
                     .dump(2)
              << "\n";
    return;
  }
  std::cout << f.pem.string() << "\n" << f.manifest.string() << "\n" << f.signature.string() << "\n"
            << f.audit_certificate.string() << "\n";
}

}  // namespace

void register_ca(CLI::App& app, Context& ctx) {
  auto* ca = app.add_subcommand("ca", "Certificate authorities: show, rotate, revoke, CRLs, trust bundles (docs/ca.md)");
  ca->require_subcommand(1);
  auto o = std::make_shared<ShowOptions>();
  auto* s = ca->add_subcommand("show", "List the CA certificates, roots first; stale CRLs raise an alarm on stderr");
  s->add_option("--data", o->data, "Station data folder");
  s->add_option("--config", o->config, "Config file (default: DIR/station.conf)");
  auto* pem = s->add_flag("--pem", o->pem, "Print the CA certificates as PEM, root first");
  s->add_flag("--json", o->json, "Print a JSON array of the CA certificates")->excludes(pem);
  s->callback([o] { show(*o); });

  auto ri = std::make_shared<RotateIssuingOptions>();
  auto* ric = ca->add_subcommand("rotate-issuing", "New issuing-CA key and certificate under the active root (officer)");
  add_user_options(ric, ri->c);
  ric->add_option("--at", ri->at, "Announced moment the new CA takes over, RFC 3339 UTC (default: now)");
  ric->callback([ri] { rotate_issuing(*ri); });

  auto rr = std::make_shared<RotateRootOptions>();
  auto* rrc = ca->add_subcommand("rotate-root", "Propose a root rotation; a second officer approves it (two-person rule)");
  add_user_options(rrc, rr->c);
  rrc->add_option("--root-token-label", rr->token_label, "Token for the new root key (default: the station's token)");
  rrc->add_option("--root-pin", rr->pin, "That token's PIN reference: file:PATH or env:VAR");
  rrc->add_option("--subject", rr->subject, "New root subject, e.g. 'O=Acme, CN=Acme Root CA G2'");
  rrc->add_option("--overlap-days", rr->overlap_days, "Days the old root stays a trust anchor (default 365)");
  rrc->add_option("--at", rr->at, "Moment the new issuing CA takes over (default: at approval)");
  rrc->add_option("--expires-in", rr->expires_in, "Proposal lifetime: 90s, 30m, 24h, 7d (default 24h)");
  rrc->callback([rr] { rotate_root(*rr); });

  auto ap = std::make_shared<ApproveOptions>();
  auto* apc = ca->add_subcommand("approve", "Approve another officer's proposal and carry it out");
  add_user_options(apc, ap->c);
  apc->add_option("ID", ap->id, "Proposal id")->required();
  apc->callback([ap] { approve(*ap); });

  auto pl = std::make_shared<Common>();
  auto* plc = ca->add_subcommand("proposals", "List two-person proposals");
  add_user_options(plc, *pl);
  plc->callback([pl] { proposals(*pl); });

  auto rv = std::make_shared<RevokeOptions>();
  auto* rvc = ca->add_subcommand("revoke", "Revoke device certificates (officer) or propose revoking a CA (two-person)");
  add_user_options(rvc, rv->c);
  auto* o1 = rvc->add_option("--cert-serial", rv->sel.cert_serial, "Certificate serial (hex)");
  auto* o2 = rvc->add_option("--serial", rv->sel.device_serial, "Device serial: all its certificates");
  auto* o3 = rvc->add_option("--batch", rv->sel.batch, "Batch name: all its devices' certificates");
  auto* o4 = rvc->add_option("--ca", rv->ca, "An issuing CA's key_id: proposes revoking it (and so all its devices)");
  o1->excludes(o2, o3, o4);
  o2->excludes(o3, o4);
  o3->excludes(o4);
  rvc->add_option("--reason", rv->reason, "RFC 5280 reason: keyCompromise, cACompromise, superseded, ...")->required();
  rvc->add_option("--expires-in", rv->expires_in, "Proposal lifetime for --ca (default 24h)");
  rvc->callback([rv] {
    if (!rv->sel.cert_serial && !rv->sel.device_serial && !rv->sel.batch && !rv->ca)
      throw Error(Errc::invalid_argument, "name what to revoke: --cert-serial HEX, --serial SN, --batch B or --ca KEY_ID");
    revoke(*rv);
  });

  auto dk = std::make_shared<DestroyOptions>();
  auto* dkc = ca->add_subcommand("destroy-key", "Propose destroying a retired or revoked CA's key (two-person)");
  add_user_options(dkc, dk->c);
  dkc->add_option("--ca", dk->ca, "The CA's key_id")->required();
  dkc->add_option("--expires-in", dk->expires_in, "Proposal lifetime (default 24h)");
  dkc->callback([dk] { destroy_key(*dk); });

  auto cr = std::make_shared<CrlOptions>();
  auto* crc = ca->add_subcommand("crl", "Sign due CRLs in the HSM and write one PEM CRL per CA into a folder");
  add_user_options(crc, cr->c);
  crc->add_option("--out", cr->out, "Folder to publish the CRLs to")->required();
  crc->add_flag("--force", cr->force, "Re-sign every CRL now, even when not due");
  crc->callback([cr, &ctx] { crl(*cr, ctx); });

  auto bu = std::make_shared<BundleOptions>();
  auto* buc = ca->add_subcommand("bundle", "Export the trust bundle (roots) with a manifest signed by the audit key");
  add_user_options(buc, bu->c);
  buc->add_option("--out", bu->out, "Bundle file (PEM); FILE.manifest.json, .manifest.sig, .audit.pem beside it")
      ->required();
  buc->callback([bu] { bundle(*bu); });
}

}  // namespace station::cli
