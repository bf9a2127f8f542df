// The station's HTTP face: the JSON API (routes in http/request.hpp, docs/api.md), the
// live event stream (Server-Sent Events from core::EventBus) and the operator's page.
//
// Built as Boost.Beast's advanced server: a listener, a coroutine per connection on its own
// strand, a timeout on every read and write, a body limit on the parser, a bounded number
// of connections and a bounded event queue per stream, and an orderly stop(). Handlers
// that block (Argon2id token checks, SQLite, the HSM, printers) run on a small worker pool,
// so a slow one never stalls the sockets. Every thread holds Station::mutex() while it
// uses the station's records or core functions.
#pragma once

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "core/events.hpp"
#include "core/station.hpp"

namespace station::http {

namespace asio = boost::asio;

struct ServerOptions {
  std::string listen = "127.0.0.1:8080";  // ADDR:PORT (IPv6 as [ADDR]:PORT); port 0 picks one
  // HTTPS with a certificate from the station's issuing CA for a key that exists only in
  // this process's memory (see docs/api.md, "TLS").
  bool tls = false;
  std::size_t body_limit = 64 * 1024;
  std::chrono::milliseconds read_timeout{10000};  // a whole request (headers and body), or idle
  int max_connections = 64;
  // Beyond [http]:
  std::chrono::milliseconds write_timeout{30000};
  std::chrono::milliseconds heartbeat{15000};     // SSE comment line when nothing else is sent
  std::size_t event_queue = 256;                  // per stream; beyond it the client gets "lagged"
  int workers = 2;                                // threads for the handlers that block
  std::vector<std::string> tls_names;             // DNS names in the certificate besides localhost
  int tls_validity_days = 7;                      // renewed in the running server at half-life
};

// [http] of station.conf as server options (the rest keep their defaults).
ServerOptions options_from_config(const core::HttpSection& http);

struct Context {
  core::Station& station;
  core::EventBus& bus;
  const core::LineView* line = nullptr;  // null: no line running
};

class Server {
 public:
  Server(asio::io_context& io, ServerOptions options, Context context);
  // Stops (if running) and waits for the worker pool. Let io.run() return before this.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts accepting; with TLS, first issues the server certificate (HSM).
  // Throws station::Error naming the address (or the TLS step) on failure.
  void start();
  // "127.0.0.1:8080" as actually bound (port 0 gives the chosen port).
  std::string address() const;
  // Orderly and thread-safe: stops accepting, ends event streams and idle connections,
  // lets in-flight requests finish (their responses say Connection: close). io.run()
  // returns once the last connection is gone.
  void stop();

  // Open connections (for tests and the load check).
  std::size_t connections() const;
  // The server certificate chain (leaf first, PEM) while TLS is on; empty otherwise.
  std::string tls_chain_pem() const;

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace station::http
