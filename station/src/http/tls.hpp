// The HTTPS server's identity. The private key is a session key: made with OpenSSL in this
// process's memory when the server starts (and at each renewal), handed to the TLS context
// as a key object, never serialised, never written anywhere, gone when the process ends.
// Its certificate is issued by the station's own issuing CA in the HSM (serverAuth, short
// lived, renewed at half-life) and journaled, so clients trust the station with its root:
// `curl --cacert root.pem https://localhost:8443/api/health`.
//
// Why not a key in the HSM: the TLS handshake signs with the server key for every
// connection, and OpenSSL would need a PKCS#11 provider to reach it (not in Debian 12's
// OpenSSL); an HSM-held key would also be one more long-lived key to guard. A session key
// that never leaves memory, certified for days, exposes less: stealing it needs the
// running process, and it stops mattering at its certificate's short expiry.
#pragma once

#include <boost/asio/ssl/context.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/station.hpp"

namespace station::http {

struct TlsIdentity {
  std::shared_ptr<boost::asio::ssl::context> context;  // TLS 1.2+, the key and the chain
  std::string chain_pem;                               // leaf, then the issuing CA
  std::string serial, sha256, issuer, not_after;
  std::chrono::system_clock::time_point expires;
  std::vector<std::string> names;

  nlohmann::json to_json() const;
};

// A fresh key and a certificate for it with subject CN=names[0] and DNS names `names`
// (always including "localhost"), valid `validity_days`, signed in the HSM by the issuing
// CA now in effect, journaled as "http.tls_certificate". Takes Station::mutex().
TlsIdentity make_tls_identity(core::Station& station, std::vector<std::string> names, int validity_days);

}  // namespace station::http
