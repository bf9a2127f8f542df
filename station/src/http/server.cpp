#include "http/server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <charconv>
#include <exception>
#include <mutex>
#include <set>
#include <type_traits>

#include <fmt/format.h>

#include "http/api.hpp"
#include "http/request.hpp"
#include "http/tls.hpp"
#include "http/web_assets.hpp"

#ifndef STATION_VERSION
#define STATION_VERSION "unknown"
#endif

namespace station::http {
namespace {

namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using Response = bhttp::response<bhttp::string_body>;

// The page may only talk to this station; nothing inline, nothing from elsewhere.
constexpr const char* kPagePolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

// One accepted connection, as stop() sees it. Touched only on the connection's strand.
struct Conn {
  enum class Phase { starting, idle, busy, streaming, closing };
  asio::any_io_executor strand;
  beast::tcp_stream* tcp = nullptr;  // set while the session runs
  Phase phase = Phase::starting;
};

tcp::endpoint parse_listen(const std::string& listen) {
  const auto bad = [&](const std::string& why) {
    return Error(Errc::invalid_argument, fmt::format("listen address '{}': {} (e.g. 127.0.0.1:8080 or [::1]:8080)",
                                                     listen, why));
  };
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) throw bad("no port");
  std::string host = listen.substr(0, colon);
  const std::string port_text = listen.substr(colon + 1);
  unsigned port = 0;
  const auto r = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || r.ec != std::errc() || r.ptr != port_text.data() + port_text.size() || port > 65535)
    throw bad("the port must be 0 to 65535");
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost") host = "127.0.0.1";
  boost::system::error_code ec;
  const auto addr = asio::ip::make_address(host, ec);
  if (ec) throw bad("the host must be an IP address or localhost");
  return {addr, static_cast<unsigned short>(port)};
}

std::string endpoint_text(const tcp::endpoint& ep) {
  const auto a = ep.address();
  return a.is_v6() ? fmt::format("[{}]:{}", a.to_string(), ep.port()) : fmt::format("{}:{}", a.to_string(), ep.port());
}

// Runs fn() on the worker pool and resumes the calling coroutine on its own executor with
// the result (or the exception). The calling executor counts as busy meanwhile, so io.run()
// does not return under an in-flight request.
template <class F>
asio::awaitable<std::invoke_result_t<F>> on_pool(asio::thread_pool& pool, F fn) {
  using R = std::invoke_result_t<F>;
  // The executor comes from the handler, not from `co_await this_coro::executor`: g++ 12
  // bit-copies some co_await results, which breaks a strand's reference count.
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(std::exception_ptr, R)>(
      [&pool](auto handler, F f) {
        auto work = asio::prefer(asio::get_associated_executor(handler), asio::execution::outstanding_work.tracked);
        asio::post(pool, [handler = std::move(handler), f = std::move(f), work]() mutable {
          std::exception_ptr error;
          R result{};
          try {
            result = f();
          } catch (...) {
            error = std::current_exception();
          }
          asio::post(work, [handler = std::move(handler), error, result = std::move(result)]() mutable {
            std::move(handler)(error, std::move(result));
          });
        });
      },
      asio::use_awaitable, std::move(fn));
}

std::string sse_event(const core::Event& e) {
  // JSON dumps have no raw newlines, so one data: line carries the payload.
  return fmt::format("id: {}\nevent: {}\ndata: {}\n\n", e.id, e.type, dump_json(e.data));
}

}  // namespace

struct Server::State {
  State(asio::io_context& i, ServerOptions o, Context c)
      : io(i),
        options(std::move(o)),
        context(c),
        control(asio::make_strand(i)),
        acceptor(control),
        pool(static_cast<std::size_t>(std::max(1, options.workers))),
        renew_timer(control),
        api(c, [this] { return tls_info(); }) {}

  nlohmann::json tls_info() {
    std::lock_guard lock(mutex);
    return tls ? tls->to_json() : nlohmann::json(nullptr);
  }
  std::shared_ptr<ssl::context> ssl_context() {
    std::lock_guard lock(mutex);
    return tls ? tls->context : nullptr;
  }

  asio::io_context& io;
  ServerOptions options;
  Context context;
  asio::any_io_executor control;  // a strand for the acceptor, the renewal timer and stop()
  tcp::acceptor acceptor;
  asio::thread_pool pool;
  asio::steady_timer renew_timer;
  Api api;
  tcp::endpoint bound;
  std::atomic<bool> started{false};
  std::atomic<bool> stopping{false};
  std::atomic<std::uint64_t> next_request{1};

  mutable std::mutex mutex;                 // guards tls and conns
  std::optional<TlsIdentity> tls;
  std::set<std::shared_ptr<Conn>> conns;
};

namespace {

using State = Server::State;

Response make_response(const Reply& reply, unsigned version, std::uint64_t id) {
  Response res{static_cast<bhttp::status>(reply.status), version};
  res.set(bhttp::field::server, "station/" STATION_VERSION);
  res.set(bhttp::field::content_type, reply.content_type);
  res.set("X-Request-Id", std::to_string(id));
  res.set("X-Content-Type-Options", "nosniff");
  res.set(bhttp::field::cache_control, "no-store");
  for (const auto& [k, v] : reply.headers) res.set(k, v);
  res.body() = reply.body;
  return res;
}

Reply error_reply(const ApiError& e, std::uint64_t id) {
  Reply r = json_reply(e.status, to_json(e, id));
  if (e.status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"station\"");
  if (e.status == 503) r.headers.emplace_back("Retry-After", "5");
  return r;
}

// Ends a connection after its last response: TLS close_notify, or a half-close that lets
// the client read what was sent before the socket goes (closing with unread input would
// reset the connection and could destroy the response in flight, e.g. a 413).
template <class Stream>
asio::awaitable<void> close_gracefully(Stream& stream) {
  auto& lowest = beast::get_lowest_layer(stream);
  beast::error_code ec;
  if constexpr (std::is_same_v<Stream, beast::ssl_stream<beast::tcp_stream>>) {
    lowest.expires_after(std::chrono::seconds(2));
    co_await stream.async_shutdown(asio::redirect_error(asio::use_awaitable, ec));
  } else {
    lowest.socket().shutdown(tcp::socket::shutdown_send, ec);
    std::array<char, 4096> sink{};
    std::size_t drained = 0;
    lowest.expires_after(std::chrono::seconds(2));
    while (!ec && drained < 1024 * 1024) {
      drained += co_await lowest.async_read_some(asio::buffer(sink), asio::redirect_error(asio::use_awaitable, ec));
    }
  }
  lowest.close();
}

// Reads (and discards) what an event-stream client sends, to notice at once when it goes.
template <class Stream>
asio::awaitable<void> watch_peer(std::shared_ptr<Stream> stream, std::shared_ptr<bool> gone) {
  std::array<char, 512> sink{};
  beast::error_code ec;
  while (!ec) co_await stream->async_read_some(asio::buffer(sink), asio::redirect_error(asio::use_awaitable, ec));
  *gone = true;
}

template <class Stream>
asio::awaitable<void> stream_events(std::shared_ptr<State> st, std::shared_ptr<Stream> stream, Conn& conn,
                                    std::int64_t since_id, unsigned version, std::uint64_t id) {
  auto& lowest = beast::get_lowest_layer(*stream);
  conn.phase = Conn::Phase::streaming;
  auto& bus = st->context.bus;
  const auto sub = bus.subscribe(since_id, st->options.event_queue);
  struct Unsubscribe {
    core::EventBus& bus;
    const std::shared_ptr<core::EventBus::Subscription>& sub;
    ~Unsubscribe() { bus.unsubscribe(sub); }
  } unsubscribe{bus, sub};

  bhttp::response<bhttp::empty_body> res{bhttp::status::ok, version};
  res.set(bhttp::field::server, "station/" STATION_VERSION);
  res.set(bhttp::field::content_type, "text/event-stream");
  res.set(bhttp::field::cache_control, "no-store");
  res.set("X-Request-Id", std::to_string(id));
  res.set("X-Accel-Buffering", "no");
  res.keep_alive(false);  // the stream ends with the connection
  bhttp::response_serializer<bhttp::empty_body> sr{res};
  beast::error_code ec;
  lowest.expires_after(st->options.write_timeout);
  co_await bhttp::async_write_header(*stream, sr, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return;
  std::string text = ": station event stream\nretry: 3000\n\n";

  lowest.expires_never();  // the watcher's read waits as long as the stream lasts
  auto gone = std::make_shared<bool>(false);
  const asio::any_io_executor ex = conn.strand;
  asio::co_spawn(ex, watch_peer(stream, gone), asio::detached);

  asio::steady_timer tick(ex);
  auto last_write = Clock::now();
  std::vector<core::Event> events;
  for (;;) {
    events.clear();
    sub->take(events);
    for (const auto& e : events) text += sse_event(e);
    if (text.empty() && Clock::now() - last_write >= st->options.heartbeat) text = ": heartbeat\n\n";
    if (!text.empty()) {
      lowest.expires_after(st->options.write_timeout);  // a client that stops reading is dropped
      co_await asio::async_write(*stream, asio::buffer(text), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      text.clear();
      last_write = Clock::now();
    }
    if (st->stopping || *gone) break;
    // Polling the queue every 100 ms keeps publish() free of any I/O; 100 ms is far below
    // what an operator notices.
    tick.expires_after(std::chrono::milliseconds(100));
    co_await tick.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  conn.phase = Conn::Phase::closing;
  lowest.cancel();
}

asio::awaitable<Reply> respond(std::shared_ptr<State> st, const bhttp::request<bhttp::string_body>& req,
                               std::uint64_t id) {
  try {
    ApiRequest ar;
    ar.id = id;
    ar.method = parse_method(std::string_view(req.method_string().data(), req.method_string().size()));
    ar.target = parse_target(std::string_view(req.target().data(), req.target().size()));
    const Match match = match_route(ar.method, ar.target.path);
    if (match.route->id == RouteId::page) {
      const WebAsset* asset = find_web_asset(ar.target.path);
      if (asset == nullptr) throw ApiError(404, "not_found", "no such page");
      Reply r;
      r.content_type = std::string(asset->content_type);
      r.body = std::string(asset->bytes);
      r.headers = {{"Content-Security-Policy", kPagePolicy}, {"Cache-Control", "no-cache"},
                   {"Referrer-Policy", "no-referrer"}};
      co_return r;
    }
    const auto auth = req.find(bhttp::field::authorization);
    if (auth != req.end()) ar.authorization = std::string(auth->value());
    const auto last = req.find("Last-Event-ID");
    if (last != req.end()) ar.last_event_id = std::string(last->value());
    ar.body = req.body();
    // Named, not a temporary inside the co_await: g++ 12 mis-copies such temporaries into
    // the coroutine frame (a moved std::string kept pointing at the old frame).
    auto handle = [st, match, request = std::move(ar)] { return st->api.handle(match, request); };
    co_return co_await on_pool(st->pool, std::move(handle));
  } catch (const ApiError& e) {
    co_return error_reply(e, id);
  } catch (const Error& e) {
    const ApiError ae = to_api_error(e, id);
    if (ae.status >= 500) spdlog::error("http request {}: {} ({})", id, e.what(), errc_name(e.code()));
    co_return error_reply(ae, id);
  } catch (const std::exception& e) {
    spdlog::error("http request {}: internal error: {}", id, e.what());
    co_return error_reply(ApiError(500, "internal", fmt::format("internal error (request {}); the detail is in the "
                                                                "station's log",
                                                                id)),
                          id);
  }
}

template <class Stream>
asio::awaitable<void> serve(std::shared_ptr<State> st, std::shared_ptr<Stream> stream, std::shared_ptr<Conn> conn) {
  auto& lowest = beast::get_lowest_layer(*stream);
  beast::flat_buffer buffer;
  for (;;) {
    if (st->stopping) break;
    conn->phase = Conn::Phase::idle;
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(16 * 1024);
    parser.body_limit(st->options.body_limit);
    beast::error_code ec;
    lowest.expires_after(st->options.read_timeout);
    co_await bhttp::async_read(*stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == bhttp::error::end_of_stream || ec == asio::error::operation_aborted || ec == asio::error::eof ||
        ec == asio::error::connection_reset)
      co_return;
    if (ec == beast::error::timeout) {
      spdlog::debug("http: closing a connection idle or slow for {} ms", st->options.read_timeout.count());
      co_return;
    }
    const std::uint64_t id = st->next_request++;
    const auto start = Clock::now();
    conn->phase = Conn::Phase::busy;
    Reply reply;
    bool close = st->stopping.load();
    unsigned version = 11;
    if (ec) {
      // The request could not be read: say why, then close (the stream is out of step).
      close = true;
      if (ec == bhttp::error::body_limit)
        reply = error_reply(ApiError(413, "body_too_large", fmt::format("the request body is larger than {} bytes",
                                                                        st->options.body_limit)),
                            id);
      else if (ec == bhttp::error::header_limit)
        reply = error_reply(ApiError(431, "headers_too_large", "the request headers are larger than 16 KiB"), id);
      else if (ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category())
        reply = error_reply(ApiError(400, "bad_request", "the request is not well-formed HTTP/1.1"), id);
      else
        co_return;
    } else {
      const auto& req = parser.get();
      version = req.version();
      if (!req.keep_alive()) close = true;
      reply = co_await respond(st, req, id);
      if (reply.stream_events) {
        spdlog::info("http {} GET {} 200 event stream {}", id, std::string_view(req.target().data(), req.target().size()),
                     reply.actor);
        co_await stream_events(st, stream, *conn, reply.since_id, version, id);
        co_return;  // no graceful close: the peer watcher may still be reading
      }
      spdlog::info("http {} {} {} {} {} {}ms", id, std::string_view(req.method_string().data(), req.method_string().size()),
                   std::string_view(req.target().data(), std::min<std::size_t>(req.target().size(), 200)), reply.status,
                   reply.actor.empty() ? "-" : reply.actor,
                   std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count());
    }
    if (st->stopping) close = true;
    Response res = make_response(reply, version, id);
    res.keep_alive(!close);
    res.prepare_payload();
    lowest.expires_after(st->options.write_timeout);
    co_await bhttp::async_write(*stream, res, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    if (close) {
      conn->phase = Conn::Phase::closing;
      co_await close_gracefully(*stream);
      co_return;
    }
  }
}

// The connection's whole life: TLS handshake when on, requests, and leaving the registry.
asio::awaitable<void> session(std::shared_ptr<State> st, tcp::socket socket, std::shared_ptr<Conn> conn) {
  struct Leave {
    State& st;
    std::shared_ptr<Conn> conn;
    ~Leave() {
      conn->tcp = nullptr;
      std::lock_guard lock(st.mutex);
      st.conns.erase(conn);
    }
  } leave{*st, conn};
  try {
    if (auto ctx = st->ssl_context()) {
      auto stream = std::make_shared<beast::ssl_stream<beast::tcp_stream>>(std::move(socket), *ctx);
      auto& lowest = beast::get_lowest_layer(*stream);
      conn->tcp = &lowest;
      if (st->stopping) co_return;
      beast::error_code ec;
      lowest.expires_after(st->options.read_timeout);
      co_await stream->async_handshake(ssl::stream_base::server, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        spdlog::debug("http: TLS handshake failed: {}", ec.message());
        co_return;
      }
      co_await serve(st, stream, conn);
    } else {
      auto stream = std::make_shared<beast::tcp_stream>(std::move(socket));
      conn->tcp = stream.get();
      if (st->stopping) co_return;
      co_await serve(st, stream, conn);
    }
  } catch (const std::exception& e) {
    spdlog::error("http: connection ended by an error: {}", e.what());
  }
}

// Past max_connections: a short 503 and close, so the listener never holds more.
asio::awaitable<void> refuse(tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  Response res = make_response(
      error_reply(ApiError(503, "too_many_connections", "the station has too many open connections; retry shortly"), 0),
      11, 0);
  res.keep_alive(false);
  res.prepare_payload();
  beast::error_code ec;
  stream.expires_after(std::chrono::seconds(2));
  co_await bhttp::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
}

asio::awaitable<void> accept_loop(std::shared_ptr<State> st) {
  for (;;) {
    beast::error_code ec;
    const asio::any_io_executor strand = asio::make_strand(st->io);
    tcp::socket socket(strand);
    co_await st->acceptor.async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
    if (st->stopping || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // E.g. out of file descriptors: wait a little instead of spinning.
      spdlog::warn("http: accept failed: {}", ec.message());
      asio::steady_timer t(st->control, std::chrono::milliseconds(100));
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    std::shared_ptr<Conn> conn;
    {
      std::lock_guard lock(st->mutex);
      if (st->conns.size() < static_cast<std::size_t>(st->options.max_connections)) {
        conn = std::make_shared<Conn>();
        conn->strand = strand;
        st->conns.insert(conn);
      }
    }
    if (!conn) {
      if (!st->options.tls) asio::co_spawn(strand, refuse(std::move(socket)), asio::detached);
      continue;  // with TLS the socket just closes: a 503 would need a handshake first
    }
    asio::co_spawn(strand, session(st, std::move(socket), conn), asio::detached);
  }
}

// Renews the TLS certificate (and key) at half its life; new connections get the new one.
asio::awaitable<void> renew_loop(std::shared_ptr<State> st) {
  for (;;) {
    std::chrono::system_clock::time_point expires;
    {
      std::lock_guard lock(st->mutex);
      expires = st->tls->expires;
    }
    const auto left = expires - std::chrono::system_clock::now();
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(left / 2);
    if (wait < std::chrono::minutes(1)) wait = std::chrono::minutes(1);
    st->renew_timer.expires_after(wait);
    beast::error_code ec;
    co_await st->renew_timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (ec || st->stopping) co_return;
    try {
      auto issue = [st] {
        return std::optional<TlsIdentity>(
            make_tls_identity(st->context.station, st->options.tls_names, st->options.tls_validity_days));
      };
      auto fresh = co_await on_pool(st->pool, std::move(issue));
      std::lock_guard lock(st->mutex);
      st->tls = std::move(fresh);
      spdlog::info("http: TLS certificate renewed (serial {}, until {})", st->tls->serial, st->tls->not_after);
    } catch (const std::exception& e) {
      spdlog::error("http: renewing the TLS certificate failed, retrying in a minute: {}", e.what());
    }
  }
}

}  // namespace

ServerOptions options_from_config(const core::HttpSection& http) {
  ServerOptions o;
  o.listen = http.listen;
  o.tls = http.tls;
  o.body_limit = http.body_limit;
  o.read_timeout = std::chrono::milliseconds(http.read_timeout_ms);
  o.max_connections = http.max_connections;
  return o;
}

Server::Server(asio::io_context& io, ServerOptions options, Context context)
    : state_(std::make_shared<State>(io, std::move(options), context)) {}

Server::~Server() {
  stop();
  state_->pool.join();
}

void Server::start() {
  auto st = state_;
  if (st->started.exchange(true)) throw Error(Errc::invalid_argument, "the HTTP server is already started");
  if (st->options.max_connections < 1) throw Error(Errc::invalid_argument, "max_connections must be at least 1");
  const tcp::endpoint ep = parse_listen(st->options.listen);
  if (st->options.tls) {
    try {
      st->tls = make_tls_identity(st->context.station, st->options.tls_names, st->options.tls_validity_days);
    } catch (const Error& e) {
      throw Error(e.code(), fmt::format("HTTPS on {}: cannot issue the server certificate: {}", st->options.listen,
                                        e.what()));
    }
  }
  boost::system::error_code ec;
  st->acceptor.open(ep.protocol(), ec);
  if (!ec) st->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) st->acceptor.bind(ep, ec);
  if (!ec) st->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    boost::system::error_code ignored;
    st->acceptor.close(ignored);
    throw Error(Errc::io_error,
                fmt::format("cannot listen on {}: {}; choose another address with --listen ADDR:PORT or [http] listen",
                            st->options.listen, ec.message()),
                ec.value());
  }
  st->bound = st->acceptor.local_endpoint();
  asio::co_spawn(st->control, accept_loop(st), asio::detached);
  if (st->tls) asio::co_spawn(st->control, renew_loop(st), asio::detached);
  spdlog::info("http: listening on {}{}", endpoint_text(st->bound), st->tls ? " (TLS)" : "");
}

std::string Server::address() const { return endpoint_text(state_->bound); }

void Server::stop() {
  auto st = state_;
  if (st->stopping.exchange(true)) return;
  asio::post(st->control, [st] {
    boost::system::error_code ec;
    st->acceptor.close(ec);
    st->renew_timer.cancel();
    std::lock_guard lock(st->mutex);
    for (const auto& c : st->conns) {
      // Idle connections and handshakes end now; busy ones answer first (Connection: close);
      // event streams see the flag at their next tick.
      asio::post(c->strand, [c] {
        if (c->tcp != nullptr && (c->phase == Conn::Phase::idle || c->phase == Conn::Phase::starting)) c->tcp->cancel();
      });
    }
  });
}

std::size_t Server::connections() const {
  std::lock_guard lock(state_->mutex);
  return state_->conns.size();
}

std::string Server::tls_chain_pem() const {
  std::lock_guard lock(state_->mutex);
  return state_->tls ? state_->tls->chain_pem : std::string();
}

}  // namespace station::http
