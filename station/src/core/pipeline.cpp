#include "core/pipeline.hpp"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <boost/asio/detached.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cstdlib>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/secure.hpp"
#include "core/batches.hpp"
#include "core/ca_lifecycle.hpp"
#include "core/labelling.hpp"
#include "db/records.hpp"
#include "fixtures/client.hpp"
#include "fixtures/fixture.hpp"
#include "fixtures/keys.hpp"
#include "fixtures/usb_link.hpp"
#include "fixtures/usb_watch.hpp"
#include "pki/ca.hpp"
#include "pki/dpp.hpp"
#include "pki/dpp_key.hpp"
#include "pki/x509.hpp"

namespace station::core {

namespace fx = station::fixtures;
namespace asio = boost::asio;

// ---------------------------------------------------------------------------------------
// Test hook

void crash_point(const std::string& state) {
  static const auto spec = []() -> std::optional<std::pair<std::string, long>> {
    const char* v = std::getenv("STATION_CRASH_AFTER");
    if (v == nullptr) return std::nullopt;
    const std::string s(v);
    const auto colon = s.find(':');
    if (colon == std::string::npos) return std::make_pair(s, 1L);
    return std::make_pair(s.substr(0, colon), std::strtol(s.c_str() + colon + 1, nullptr, 10));
  }();
  if (!spec || spec->first != state) return;
  static std::atomic<long> count{0};
  if (++count == spec->second) {
    std::fprintf(stderr, "station: STATION_CRASH_AFTER=%s:%ld reached; killing myself\n", state.c_str(), spec->second);
    ::kill(::getpid(), SIGKILL);
  }
}

namespace {

std::string hex_of(ByteView b) { return hex_encode(b); }

// State names (g++ 12 mishandles string literals turned into temporaries in co_await
// argument lists, so coroutine calls take these objects).
const std::string kReserved = "reserved", kKeyed = "keyed", kWritten = "written", kVerified = "verified",
                  kLocked = "locked", kLabelled = "labelled", kDone = "done";

std::string now_text() { return db::now_rfc3339(); }

// Operator's words for a failure: what happened and what to do.
std::string hint_for(const Error& e) {
  switch (e.code()) {
    case Errc::timeout: return "check the cable and that the device is in provisioning mode, then reseat it";
    case Errc::io_error: return "reseat the device (it disconnected or the link is noisy); it resumes where it stopped";
    case Errc::device_error: return "the device refused a step; reseat it once, then set it aside for rework";
    case Errc::tampered: return "set the device aside: it does not hold what was written (possible hardware fault)";
    case Errc::crypto_error: return "set the device aside: it could not prove it holds its key";
    case Errc::protocol_error: return "check the device firmware version (it broke the protocol)";
    case Errc::unsupported: return "the device lacks a capability the batch needs (curve, key generation or lock)";
    case Errc::constraint_violation: return "a number would be given twice; call a security officer";
    case Errc::hsm_unavailable: return "reconnect the HSM; the line resumes by itself";
    default: return "see the journal for details; reseat the device to retry";
  }
}

pki::dpp::Curve pki_curve(const std::string& name) {
  const auto c = pki::dpp::curve_from_name(name);
  if (!c) throw Error(Errc::invalid_argument, "unknown DPP curve " + name);
  return *c;
}

fx::Curve wire_curve(const std::string& name) {
  const auto c = fx::curve_from_name(name);
  if (!c) throw Error(Errc::invalid_argument, "unknown DPP curve " + name);
  return *c;
}

Bytes concat(const std::vector<Bytes>& parts) {
  Bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

std::string mac_text(const fx::Mac& mac) { return hex_of(ByteView(mac.data(), mac.size())); }

}  // namespace

// ---------------------------------------------------------------------------------------
// Recovery at start

namespace {

// Whether the device's batch locks devices after verification.
bool batch_locks(Station& station, const db::DeviceRecord& d) {
  if (!d.batch_id) return false;
  const std::lock_guard lock(station.mutex());
  auto st = station.records().connection().prepare("SELECT settings FROM batches WHERE id = ?");
  st.bind(1, *d.batch_id);
  if (!st.step()) return false;
  const auto j = nlohmann::json::parse(st.text(0), nullptr, false);
  return j.is_object() && j.value("lock", false);
}

}  // namespace

std::vector<std::string> recover_in_flight(Station& station, const std::string& actor) {
  std::vector<std::string> report;
  std::vector<db::DeviceRecord> in_flight;
  {
    const std::lock_guard lock(station.mutex());
    in_flight = db::devices_in_states(station.records().connection(),
                                      {"detected", "reserved", "keyed", "issued", "written", "verified", "locked",
                                       "labelled"});
  }
  for (const auto& d : in_flight) {
    std::string action;
    std::string to = d.state;
    std::optional<db::IdentityRecord> voided;
    {
      const std::lock_guard lock(station.mutex());
      for (const auto& i : db::identities_of(station.records().connection(), d.id))
        if (i.status == "active") voided = i;
    }
    if (d.state == "keyed") {
      to = "reserved";
      action = "the key made before the stop was never certified; a new one is made when the device returns";
      voided.reset();
    } else if (d.state == "issued") {
      to = "reserved";
      action = "the certificate was issued but not known to be written: voided and recorded for revocation";
    } else if (d.state == "labelled") {
      to = "done";
      action = "verified and labelled before the stop: done";
      voided.reset();
    } else if (d.state == "reserved" || d.state == "detected") {
      continue;  // nothing was made for it yet; it continues when it returns
    } else if (d.state == "locked" || (d.state == "verified" && !batch_locks(station, d))) {
      // Proven on the device and nothing left to write: the station may have stopped after
      // releasing it (BYE), so it may never come back. Its label is printed now; if it is
      // still in the fixture it is seen as done and released.
      const auto printed = print_device_label(station, d.serial, actor, false, std::nullopt,
                                              nlohmann::json{{"serial", d.serial}, {"after", "recovery"},
                                                             {"from", d.state}});
      if (printed.status != "printed" || !printed.done) {
        report.push_back(fmt::format("{} ({}): label not printed: {}", d.serial, d.state, printed.detail));
        continue;
      }
      report.push_back(fmt::format("{} ({}): verified before the stop; labelled and done", d.serial, d.state));
      continue;
    } else {
      action = "verified again when the device returns (written, verified or locked before the stop)";
      voided.reset();
    }
    nlohmann::json details = {{"serial", d.serial}, {"from", d.state}, {"to", to}, {"action", action}};
    if (voided) details["voided_cert_serial"] = voided->cert_serial;
    station.journal().commit({actor, "device.recovered", "device:" + d.serial, details}, [&](db::Connection& c) {
      std::vector<db::RowRef> rows;
      if (to != d.state) rows.push_back(db::set_device_state(c, d.id, to, d.reason));
      if (voided) {
        rows.push_back(db::set_identity_status(c, voided->id, "voided"));
        rows.push_back(db::insert_revocation(
            c, {0, voided->cert_serial, voided->issuer_key_id, "cessationOfOperation", db::now_rfc3339()}));
      }
      return rows;
    });
    report.push_back(fmt::format("{} ({}): {}", d.serial, d.state, action));
  }
  return report;
}

// ---------------------------------------------------------------------------------------
// The line

struct ProvisioningLine::Impl {
  struct Fixture {
    Fixture(FixtureSection c, asio::io_context& io) : config(std::move(c)), strand(asio::make_strand(io)) {}
    FixtureSection config;
    asio::strand<asio::io_context::executor_type> strand;
    std::unique_ptr<fx::DeviceClient> client;
    std::unique_ptr<db::Connection> reader;  // this fixture's own read connection
    std::map<std::string, int> attempts;     // chip id -> failed attempts here
    std::string last_chip;                   // the device that was set aside or finished
    std::set<std::string> set_aside;         // chips given up here: waiting to be removed
    std::set<std::string> finishing;         // chips whose label record is still committing
    std::unique_ptr<fx::UsbWatcher> watcher; // USB fixtures: hot-plug (or polling) arrivals
    FixtureView view;
    bool idle = true;
    std::chrono::steady_clock::time_point idle_since = std::chrono::steady_clock::now();
  };

  // What one device carries through the steps.
  struct Work {
    db::DeviceRecord device;
    fx::DeviceInfo info;
    std::string chip;
    std::string state;  // the last journaled state
    std::optional<db::IdentityRecord> identity;
    Bytes spki;          // DPP public key (SubjectPublicKeyInfo, compressed)
    SecretBytes private_der;  // station-generated key while writing; wiped after
    // The certificate key of a "separate" profile (empty when the certificate certifies the
    // DPP key), and its private key while writing when the station generated it.
    Bytes cert_spki;
    SecretBytes cert_private_der;
    std::vector<std::pair<fx::ItemId, Bytes>> items;  // written, non-secret
    std::optional<nlohmann::json> keyed;  // the key's entry, journaled with its certificate
    std::shared_ptr<std::exception_ptr> written_error;  // `written`'s outcome, queued unwaited
    // The reservation's final outcome (set on the writer thread once its transaction ended;
    // read there by the units queued after it, which refuse when it did not land).
    std::shared_ptr<std::exception_ptr> reservation;
    bool reservation_lost() const { return reservation && *reservation; }
    // The journal entry of an officer's re-provisioning that took this device, done in this
    // batch and counted in batch_done, back to reserved after this run counted it.
    std::optional<std::int64_t> uncounted_by;
  };

  Station& station;
  LineOptions options;
  EventBus* bus;
  Batch batch;
  asio::io_context io;
  asio::thread_pool blocking;
  std::vector<std::unique_ptr<Fixture>> fixtures;
  mutable std::mutex mutex;  // guards views, counters, summary, issuer cache
  LineSummary summary;
  std::int64_t batch_done = 0;       // devices of the batch done (all runs)
  std::int64_t counted_up_to = 0;    // the journal's last entry when batch_done was read
  std::set<std::int64_t> reprovisions_uncounted;  // re-provisionings taken off batch_done
  std::int64_t in_flight_new = 0;    // new devices started and not yet finished
  std::int64_t devices_left = 0;     // devices that left a fixture in this run
  std::atomic<bool> stopping{false};
  std::string batch_state = "open";
  bool hsm_ok = true;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::chrono::system_clock::time_point started_wall = std::chrono::system_clock::now();
  std::string started_text = now_text();
  // Certificate issuers by issuing CA key id (their constant TBS parts are encoded once).
  std::map<std::string, std::shared_ptr<pki::CertificateIssuer>> issuers;
  std::optional<db::CaRecord> issuing;
  std::chrono::steady_clock::time_point issuing_checked{};
  Bytes trust_anchor_bytes;
  std::string last_journal_time;

  Impl(Station& s, LineOptions o, EventBus* b)
      : station(s), options(std::move(o)), bus(b), blocking(std::max<std::size_t>(2, options.fixtures.size() + 1)) {}

  // ----- helpers ---------------------------------------------------------------------

  // Runs f() on the blocking pool and comes back to the fixture's strand, with its result
  // or its exception (journal commits and HSM signatures block for an fsync or a token).
  // The coroutine's handler is posted to the pool and from there back to the strand: a
  // plain co_await post(blocking, use_awaitable) would resume on the strand at once, so
  // fn() would block an io thread and the fixtures would wait for each other's fsyncs.
  template <class F>
  asio::awaitable<std::invoke_result_t<F>> offload(Fixture& f, F fn) {
    using R = std::invoke_result_t<F>;
    std::exception_ptr error;
    std::optional<std::conditional_t<std::is_void_v<R>, int, R>> result;
    co_await asio::async_initiate<const asio::use_awaitable_t<>&, void()>(
        [&](auto handler) {
          asio::post(blocking, [&, handler = std::move(handler)]() mutable {
            try {
              if constexpr (std::is_void_v<R>) {
                fn();
                result = 0;
              } else {
                result.emplace(fn());
              }
            } catch (...) {
              error = std::current_exception();
            }
            asio::post(f.strand, std::move(handler));
          });
        },
        asio::use_awaitable);
    if (error) std::rethrow_exception(error);
    if constexpr (!std::is_void_v<R>) co_return std::move(*result);
  }

  // Commits the entries as one unit (all or none; Journal::commit_together) without holding
  // a thread while the writer flushes: its completion resumes this coroutine on the strand.
  // Mutations run on the writer thread while this coroutine waits, so they may refer to its
  // locals.
  asio::awaitable<std::vector<db::Entry>> commit_unit(Fixture& f, std::vector<db::Journal::Request> requests) {
    std::vector<db::Entry> entries;
    std::exception_ptr error;
    co_await asio::async_initiate<const asio::use_awaitable_t<>&, void()>(
        [&](auto handler) {
          auto h = std::make_shared<decltype(handler)>(std::move(handler));
          auto& strand = f.strand;
          try {
            station.journal().commit_async(std::move(requests),
                                           [&entries, &error, &strand, h](std::vector<db::Entry> e, std::exception_ptr x) {
                                             entries = std::move(e);
                                             error = x;
                                             asio::post(strand, std::move(*h));
                                           });
          } catch (...) {
            error = std::current_exception();
            asio::post(strand, std::move(*h));
          }
        },
        asio::use_awaitable);
    if (error) std::rethrow_exception(error);
    co_return entries;
  }

  // Queues the unit and resumes this coroutine as soon as the writer has applied it in its
  // open transaction (Journal::commit_async's `applied`), or once it failed before that;
  // `done` gets its final outcome on the writer thread. What the unit's mutations produced
  // may be read after this returns; nothing of it is durable yet.
  asio::awaitable<void> apply_unit(Fixture& f, std::vector<db::Journal::Request> requests,
                                   db::Journal::Completion done) {
    std::exception_ptr error;
    co_await asio::async_initiate<const asio::use_awaitable_t<>&, void()>(
        [&](auto handler) {
          auto h = std::make_shared<decltype(handler)>(std::move(handler));
          auto resumed = std::make_shared<bool>(false);  // on the writer thread only
          auto& strand = f.strand;
          // Error and strand are read only before the resumption, while this frame lives.
          auto resume = [h, resumed, &strand, &error](std::exception_ptr x) {
            if (*resumed) return;
            *resumed = true;
            error = x;
            asio::post(strand, std::move(*h));
          };
          try {
            station.journal().commit_async(
                std::move(requests),
                [resume, done = std::move(done)](std::vector<db::Entry> e, std::exception_ptr x) mutable {
                  done(std::move(e), x);
                  resume(x);  // failed before it was applied
                },
                [resume] { resume(nullptr); });
          } catch (...) {
            error = std::current_exception();
            asio::post(strand, std::move(*h));
          }
        },
        asio::use_awaitable);
    if (error) std::rethrow_exception(error);
  }

  void publish_fixture(Fixture& f) {
    FixtureView v;
    {
      const std::lock_guard lock(mutex);
      f.view.updated = now_text();
      v = f.view;
    }
    if (bus != nullptr) bus->publish("fixture", to_json(v));
  }

  void set_status(Fixture& f, const std::string& status, const std::string& step = {}, const std::string& reason = {},
                  const std::string& hint = {}) {
    {
      const std::lock_guard lock(mutex);
      if (f.view.status == status && f.view.step == step && f.view.reason == reason && f.view.hint == hint) return;
      f.view.status = status;
      f.view.step = step;
      f.view.reason = reason;
      f.view.hint = hint;
    }
    publish_fixture(f);
  }

  // A state change of the device (with its record) as a unit of its own.
  std::vector<db::Journal::Request> state_unit(Fixture& f, const Work& w, const std::string& state,
                                               nlohmann::json details, db::Mutation extra = {}) {
    details["serial"] = w.device.serial;
    details["fixture"] = f.config.number;
    std::vector<db::Journal::Request> unit;
    unit.emplace_back(db::EntryRequest{options.actor, "device." + state, "device:" + w.device.serial, details},
                      [id = w.device.id, state, fixture = std::to_string(f.config.number),
                       extra = std::move(extra)](db::Connection& c) {
                        std::vector<db::RowRef> rows;
                        if (extra) rows = extra(c);
                        rows.push_back(db::set_device_state(c, id, state, std::nullopt, fixture));
                        return rows;
                      });
    return unit;
  }

  void record_state(Fixture& f, Work& w, const std::string& state) {
    w.state = state;
    w.device.state = state;
    set_status(f, "busy", state);
  }

  // Journals a state change of the device (with its record) and passes the crash hook.
  asio::awaitable<void> journal_state(Fixture& f, Work& w, const std::string& state, nlohmann::json details,
                                      db::Mutation extra = {}) {
    const auto entries = co_await commit_unit(f, state_unit(f, w, state, std::move(details), std::move(extra)));
    {
      const std::lock_guard lock(mutex);
      last_journal_time = entries.back().time;
    }
    record_state(f, w, state);
    crash_point(state);
  }

  // ----- clock, issuer, HSM ------------------------------------------------------------

  // Issuing stops while the clock reads earlier than the last journal entry: certificates
  // would be back-dated and the journal's order would lie.
  void check_clock() {
    std::string last;
    {
      const std::lock_guard lock(mutex);
      last = last_journal_time;
    }
    if (last.empty()) {
      if (auto e = station.journal().last()) last = e->time;
      const std::lock_guard lock(mutex);
      last_journal_time = last;
    }
    if (!last.empty() && now_text() < last)
      throw Error(Errc::busy, fmt::format("the system clock ({}) is earlier than the last journal entry ({}); issuing "
                                          "is stopped until the clock is corrected (check NTP)",
                                          now_text(), last));
  }

  const pki::CertProfile& batch_profile() const {
    return station.config().profile(batch.settings.profile.empty() ? station.config().default_profile
                                                                   : batch.settings.profile);
  }

  // The key a recorded certificate certifies when that is not the device's DPP key (a
  // "separate" profile), as the device reports it (compressed SPKI); empty otherwise.
  static Bytes separate_cert_key(const db::IdentityRecord& id) {
    const auto certified = pki::dpp::PublicKey::from_spki_der(pki::describe_certificate(id.cert_der).spki);
    if (certified == pki::dpp::PublicKey::from_spki_der(id.public_key)) return {};
    return certified.spki_der();
  }

  std::pair<db::CaRecord, std::shared_ptr<pki::CertificateIssuer>> current_issuer_cached(bool refresh) {
    const auto now = std::chrono::steady_clock::now();
    const std::lock_guard lock(mutex);
    if (refresh || !issuing || now - issuing_checked > std::chrono::seconds(1)) {
      const std::lock_guard slock(station.mutex());
      issuing = current_issuer(station);
      issuing_checked = now;
      std::vector<Bytes> anchors;
      for (const auto& a : trust_anchors(station)) anchors.push_back(a.der);
      trust_anchor_bytes = concat(anchors);
    }
    auto& issuer = issuers[issuing->key_id];
    if (!issuer) {
      const auto& profile = batch_profile();
      // Certificate serials are 16 random bytes; the identities table's UNIQUE constraint is
      // the ledger (a repeat fails the record, so the certificate is never released).
      issuer = std::make_shared<pki::CertificateIssuer>(station.hsm(), pki::CaSigner{issuing->der, issuing->key_id},
                                                        profile, nullptr);
    }
    return {*issuing, issuer};
  }

  // Pauses the fixture while the HSM is unavailable or the clock is wrong, retrying `fn`.
  template <class F>
  asio::awaitable<std::invoke_result_t<F>> with_hsm(Fixture& f, Work& w, F fn) {
    for (;;) {
      try {
        auto r = co_await offload(f, fn);
        bool was_down = false;
        {
          const std::lock_guard lock(mutex);
          was_down = !hsm_ok;
          hsm_ok = true;
        }
        if (was_down && bus != nullptr) bus->publish("alarm", {{"hsm", "ok"}, {"message", "the HSM is back"}});
        co_return r;
      } catch (const Error& e) {
        if (e.code() != Errc::hsm_unavailable && !(e.code() == Errc::busy && std::string(e.what()).find("clock") !=
                                                                             std::string::npos))
          throw;
        if (e.code() == Errc::hsm_unavailable) {
          const std::lock_guard lock(mutex);
          if (hsm_ok && bus != nullptr) bus->publish("alarm", {{"hsm", "unavailable"}, {"message", e.what()}});
          hsm_ok = false;
        }
        set_status(f, "paused", w.state, e.code() == Errc::hsm_unavailable ? "HSM unavailable" : e.what(),
                   e.code() == Errc::hsm_unavailable ? hint_for(e) : "correct the system clock (NTP)");
      }
      if (stopping) throw Error(Errc::busy, "the line is stopping");
      asio::steady_timer t(f.strand, std::chrono::milliseconds(station.config().line.hsm_retry_ms));
      co_await t.async_wait(asio::use_awaitable);
    }
  }

  // ----- the steps -------------------------------------------------------------------

  // Voids the device's active identity (never proven on the device) and records it for
  // revocation, in the same entry as the state change.
  db::Mutation void_identity(Work& w, const std::string& reason) {
    auto identity = w.identity;
    w.identity.reset();
    return [identity, reason](db::Connection& c) {
      std::vector<db::RowRef> rows;
      if (identity) {
        rows.push_back(db::set_identity_status(c, identity->id, "voided"));
        rows.push_back(
            db::insert_revocation(c, {0, identity->cert_serial, identity->issuer_key_id, reason, db::now_rfc3339()}));
      }
      return rows;
    };
  }

  asio::awaitable<void> step_key(Fixture& f, Work& w) {
    const bool on_device = batch.settings.key_mode == "on-device";
    const pki::CertProfile& profile = batch_profile();
    const bool separate = profile.separate_key();
    if (separate && (w.info.capabilities & fx::kCapCertKey) == 0)
      throw Error(Errc::unsupported,
                  fmt::format("{}: certificate profile '{}' certifies a separate key and this device has no certificate "
                              "key slot (CERT_KEY); give its batch a profile with certified_key = 'dpp'",
                              f.client->where(), profile.name));
    w.cert_spki.clear();
    if (on_device) {
      const auto k = co_await f.client->genkey(fx::ItemId::dpp_key, wire_curve(batch.settings.curve));
      w.spki = k.spki;
      if (separate) {
        const auto c = co_await f.client->genkey(fx::ItemId::cert_key, wire_curve(batch.settings.curve));
        w.cert_spki = c.spki;
      }
    } else {
      auto pair = pki::dpp::KeyPair::generate(pki_curve(batch.settings.curve));
      w.spki = pair.public_key().spki_der();
      w.private_der = pair.ec_private_key_der();
      if (separate) {
        auto cert_pair = pki::dpp::KeyPair::generate(pki_curve(batch.settings.curve));
        w.cert_spki = cert_pair.public_key().spki_der();
        w.cert_private_der = cert_pair.ec_private_key_der();
      }
    }
    // Journaled with the certificate (step_issue): nothing leaves the station between them.
    nlohmann::json details;
    details["serial"] = w.device.serial;
    details["fixture"] = f.config.number;
    details["pkhash"] = sha256_hex(w.spki);
    details["key_mode"] = on_device ? "on-device" : "injected";
    details["cert_pkhash"] = separate ? nlohmann::json(sha256_hex(w.cert_spki)) : nlohmann::json(nullptr);
    w.keyed = std::move(details);
  }

  asio::awaitable<void> step_issue(Fixture& f, Work& w) {
    const bool on_device = batch.settings.key_mode == "on-device";
    pki::dpp::UriFields fields;
    fields.channels = {{81, 1}, {81, 6}, {81, 11}};
    pki::dpp::Mac m{};
    std::copy(w.info.mac.begin(), w.info.mac.end(), m.begin());
    if (w.device.mac) {
      const auto raw = hex_decode(*w.device.mac);
      if (raw && raw->size() == m.size()) std::copy(raw->begin(), raw->end(), m.begin());
    }
    fields.mac = m;
    const std::string uri = pki::dpp::generate_uri(pki::dpp::PublicKey::from_spki_der(w.spki), fields);
    db::IdentityRecord identity;
    identity.device_id = w.device.id;
    identity.public_key = w.spki;
    identity.pkhash = sha256_hex(w.spki);
    identity.dpp_uri = uri;
    identity.key_mode = on_device ? "on-device" : "injected";
    identity.status = "active";
    identity.op = options.actor;
    Bytes chain;
    Bytes anchors;
    auto entry = co_await with_hsm(f, w, [&] {
      check_clock();
      for (int attempt = 0;; ++attempt) {
        auto [ca, issuer] = current_issuer_cached(attempt > 0);
        const auto cert = w.cert_spki.empty() ? issuer->issue(w.spki, w.device.serial)
                                              : issuer->issue(w.cert_spki, w.device.serial, identity.pkhash);
        identity.cert_serial = cert.serial;
        identity.cert_sha256 = cert.sha256;
        identity.cert_der = cert.der;
        identity.issuer_key_id = cert.issuer_key_id;
        identity.profile = station.config()
                               .profile(batch.settings.profile.empty() ? station.config().default_profile
                                                                       : batch.settings.profile)
                               .name;
        bool switched = false;
        try {
          // `device.keyed` and `device.issued` as one unit: one flush, and a key is never
          // journaled without its certificate (or the reason it has none: device.failed).
          std::vector<db::Journal::Request> unit;
          unit.emplace_back(db::EntryRequest{options.actor, "device." + kKeyed, "device:" + w.device.serial, *w.keyed},
                            [&](db::Connection& c) {
                              if (w.reservation_lost()) std::rethrow_exception(*w.reservation);
                              return std::vector<db::RowRef>{db::set_device_state(
                                  c, w.device.id, kKeyed, std::nullopt, std::to_string(f.config.number))};
                            });
          unit.emplace_back(
              db::EntryRequest{options.actor, "device.issued", "device:" + w.device.serial,
               {{"serial", w.device.serial}, {"fixture", f.config.number}, {"cert_serial", cert.serial},
                {"cert_sha256", cert.sha256}, {"issuer", cert.issuer_key_id}, {"pkhash", identity.pkhash},
                {"dpp_uri", uri}, {"key_mode", identity.key_mode},
                {"cert_pkhash", w.keyed->at("cert_pkhash")}}},
              [&](db::Connection& c) {
                // An issuer rotated meanwhile: this certificate is discarded, never released.
                const auto now_issuer = db::issuing_ca_at(c, db::now_rfc3339());
                if (!now_issuer || now_issuer->key_id != cert.issuer_key_id) {
                  switched = true;
                  throw Error(Errc::busy, "the issuing CA was rotated during this issuance");
                }
                std::vector<db::RowRef> rows;
                rows.push_back(db::insert_identity(c, identity));
                identity.id = rows.back().id;
                rows.push_back(db::set_device_state(c, w.device.id, "issued", std::nullopt,
                                                    std::to_string(f.config.number)));
                return rows;
              });
          auto e = station.journal().commit_together(std::move(unit));
          const std::lock_guard lock(mutex);
          chain = ca.der;
          anchors = trust_anchor_bytes;
          return std::move(e.back());
        } catch (const Error&) {
          if (switched && attempt < 3) continue;
          throw;
        }
      }
    });
    {
      const std::lock_guard lock(mutex);
      last_journal_time = entry.time;
    }
    w.identity = identity;
    w.keyed.reset();
    w.state = "issued";
    w.device.state = "issued";
    set_status(f, "busy", "issued");
    crash_point(kKeyed);
    crash_point("issued");

    w.items.clear();
    w.items.emplace_back(fx::ItemId::device_cert, identity.cert_der);
    w.items.emplace_back(fx::ItemId::ca_chain, chain);
    w.items.emplace_back(fx::ItemId::dpp_uri, Bytes(uri.begin(), uri.end()));
    w.items.emplace_back(fx::ItemId::trust_anchors, anchors);
    if (!batch.settings.configurator_keys.empty()) {
      std::vector<Bytes> keys;
      for (const auto& k : batch.settings.configurator_keys) keys.push_back(base64_decode(k).value_or(Bytes{}));
      w.items.emplace_back(fx::ItemId::configurator_keys, concat(keys));
    }
  }

  asio::awaitable<void> step_write(Fixture& f, Work& w) {
    std::vector<fx::DigestEntry> entries;
    if (batch.settings.key_mode == "on-device") {
      entries.push_back({fx::ItemId::dpp_key, ByteView(w.spki)});
    } else {
      co_await f.client->put(fx::ItemId::dpp_key, w.private_der.bytes());
      entries.push_back({fx::ItemId::dpp_key, ByteView(w.private_der.bytes())});
    }
    if (!w.cert_spki.empty()) {  // a separate certificate key (slot CERT_KEY, after DPP_KEY)
      if (batch.settings.key_mode == "on-device") {
        entries.push_back({fx::ItemId::cert_key, ByteView(w.cert_spki)});
      } else {
        co_await f.client->put(fx::ItemId::cert_key, w.cert_private_der.bytes());
        entries.push_back({fx::ItemId::cert_key, ByteView(w.cert_private_der.bytes())});
      }
    }
    for (const auto& [id, bytes] : w.items) {
      co_await f.client->put(id, bytes);
      entries.push_back({id, ByteView(bytes)});
    }
    const auto digest = fx::items_digest(entries);
    co_await f.client->commit(digest);
    w.private_der = SecretBytes();  // wiped: the keys now live only in the device
    w.cert_private_der = SecretBytes();
    nlohmann::json details;
    details["digest"] = hex_of(ByteView(digest.data(), digest.size()));
    // Queued, not waited for: the read-back and the challenge change nothing on the device,
    // so `written` need only be durable before the lock. step_verify's unit follows it in the
    // journal's order (durable after it) and refuses unless the record says written.
    auto error = std::make_shared<std::exception_ptr>();
    station.journal().commit_async(state_unit(f, w, kWritten, std::move(details)),
                                   [error](std::vector<db::Entry>, std::exception_ptr x) {
                                     *error = x;
                                     if (!x) crash_point(kWritten);  // on the writer, the moment it is durable
                                   });
    w.written_error = std::move(error);
    record_state(f, w, kWritten);
  }

  // Reads back what was written and has the device prove it holds the DPP key.
  asio::awaitable<void> verify_on_device(Fixture& f, Work& w) {
    for (const auto& [id, bytes] : w.items) {
      if (co_await f.client->get(id) != bytes)
        throw Error(Errc::tampered, fmt::format("{}: {} reads back different from what was written", f.client->where(),
                                                fx::item_name(id)));
    }
    if (co_await f.client->get(fx::ItemId::dpp_public_key) != w.spki)
      throw Error(Errc::tampered, f.client->where() + ": the device holds a different DPP key than its record");
    if (!w.cert_spki.empty() && co_await f.client->get(fx::ItemId::cert_public_key) != w.cert_spki)
      throw Error(Errc::tampered, f.client->where() + ": the device holds a different certificate key than certified");
    co_await f.client->prove_possession(w.spki, w.cert_spki);
  }

  asio::awaitable<void> step_verify(Fixture& f, Work& w) {
    co_await verify_on_device(f, w);
    nlohmann::json details;
    details["challenge"] = "ok";
    const auto written = std::move(w.written_error);
    db::Mutation after_written = [id = w.device.id](db::Connection& c) {
      db::require_device_state(c, id, kWritten);
      return std::vector<db::RowRef>{};
    };
    std::exception_ptr error;
    try {
      co_await journal_state(f, w, kVerified, std::move(details), std::move(after_written));
    } catch (...) {
      error = std::current_exception();
    }
    // Completed by now (queued before verified): its own failure is the better reason.
    if (written && *written) std::rethrow_exception(*written);
    if (error) std::rethrow_exception(error);
  }

  // The label goes out when the device has left the fixture (after BYE), so neighbouring
  // fixtures' labels cannot be swapped; it carries the fixture number. Returns once the label
  // is printed, with its record: the label's entry and `device.done` as one unit
  // (print_device_label's `done`), which the caller queues (finish_device). A failed print
  // is recorded here and thrown.
  asio::awaitable<std::vector<db::Journal::Request>> step_label(Fixture& f, Work& w) {
    const std::string serial = w.device.serial;
    const nlohmann::json done = {{"serial", serial}, {"fixture", f.config.number}};
    std::vector<db::Journal::Request> record;
    const auto outcome = co_await offload(f, [&] {
      return print_device_label(station, serial, options.actor, false,
                                f.config.printer.empty() ? std::nullopt : std::optional<std::string>(f.config.printer),
                                done, &record);
    });
    if (outcome.status != "printed" || !outcome.done) co_await commit_unit(f, std::move(record));
    if (outcome.status != "printed")
      throw Error(Errc::io_error, fmt::format("label for {} not printed on {}: {}", serial, outcome.printer,
                                              outcome.detail));
    if (!outcome.done)
      throw Error(Errc::internal, fmt::format("label for {} printed but the device was not {} or {}", serial,
                                              kVerified, kLocked));
    co_return record;
  }

  // The device has left with its label, its last side effect: its record (the label's
  // entry and `device.done`) commits while the fixture goes on with the next device. The
  // journal keeps the order, so that device's entries come after these. The device counts
  // as done, and as in flight until then, only once the record is durable.
  asio::awaitable<void> finish_device(Fixture& f, Work w, std::vector<db::Journal::Request> record, bool counted_new) {
    std::optional<Error> failure;
    try {
      co_await commit_unit(f, std::move(record));
    } catch (const Error& e) {
      failure = e;
    }
    if (failure) {
      spdlog::error("{}: the label of {} printed but its record failed: {}", f.config.link.name, w.device.serial,
                    failure->what());
      co_await fail_device(f, w, kLabelled, *failure);
      f.finishing.erase(w.chip);
      {
        const std::lock_guard lock(mutex);
        if (counted_new) --in_flight_new;
        ++summary.failed;
        ++devices_left;
      }
      const nlohmann::json failed = {{"serial", w.device.serial}, {"state", "failed"}, {"fixture", f.config.number},
                                     {"reason", failure->what()}};
      if (bus != nullptr) bus->publish("device", failed);
      if (options.on_device) options.on_device(failed);
      publish_progress();
      co_return;
    }
    f.finishing.erase(w.chip);
    crash_point(kLabelled);
    crash_point(kDone);
    {
      const std::lock_guard lock(mutex);
      if (counted_new) --in_flight_new;
      ++summary.done;
      ++batch_done;
      ++f.view.done;
      ++devices_left;
    }
    publish_fixture(f);
    if (bus != nullptr)
      bus->publish("device", {{"serial", w.device.serial}, {"state", "done"}, {"fixture", f.config.number},
                              {"chip_id", w.chip}, {"batch", batch.name}});
    if (options.on_device)
      options.on_device({{"serial", w.device.serial}, {"state", "done"}, {"fixture", f.config.number}});
    publish_progress();
  }

  // ----- one device ------------------------------------------------------------------

  // Loads what the records hold about this chip; nullopt for a new device.
  std::optional<Work> find_device(Fixture& f, const fx::DeviceInfo& info) {
    const std::string chip = hex_of(info.chip_id);
    auto d = db::device_by_chip(*f.reader, chip);
    if (!d) return std::nullopt;
    Work w;
    w.device = *d;
    w.info = info;
    w.chip = chip;
    w.state = d->state;
    bool revoked = false;
    for (const auto& i : db::identities_of(*f.reader, d->id)) {
      if (i.status == "active") w.identity = i;
      revoked = revoked || i.status == "revoked";
    }
    // An officer re-provisioned it after batch_done was read, from this batch: it was counted
    // done then, and is not any more (it counts again when it is done again).
    if (revoked && d->state != "done") {
      auto q = f.reader->prepare(
          "SELECT seq, details FROM journal WHERE subject = ? AND action = 'device.reprovisioned' ORDER BY seq DESC "
          "LIMIT 1");
      q.bind(1, "device:" + d->serial);
      if (q.step() && q.int64(0) > counted_up_to &&
          nlohmann::json::parse(q.text(1), nullptr, false).value("from_batch", nlohmann::json()) == batch.name)
        w.uncounted_by = q.int64(0);
    }
    return w;
  }

  bool may_start_new_device() {
    const std::lock_guard lock(mutex);
    return batch_state == "open" && batch_done + in_flight_new < batch.settings.quantity;
  }

  asio::awaitable<void> reserve(Fixture& f, Work& w) {
    const std::string chip = w.chip;
    const auto mac = mac_text(w.info.mac);
    const auto fixture = std::to_string(f.config.number);
    db::DeviceRecord d;
    // The detection is a unit of its own, queued first: it stays journaled when the
    // reservation is refused, and the reservation's completion implies it is durable.
    // Shared: should the reservation fail to queue (the journal closing), this completion
    // may still run after this coroutine has gone.
    auto detect_error = std::make_shared<std::exception_ptr>();
    {
      std::vector<db::Journal::Request> detected;
      detected.emplace_back(db::EntryRequest{options.actor, "device.detected", "chip:" + chip,
                                             {{"chip_id", chip}, {"fixture", f.config.number}, {"model", w.info.model},
                                              {"firmware", w.info.firmware}, {"mac", mac}}},
                            db::Mutation{});
      station.journal().commit_async(std::move(detected), [detect_error](std::vector<db::Entry>, std::exception_ptr x) {
        *detect_error = x;  // read after the next unit's completion, which comes after this one
      });
    }
    std::vector<db::Journal::Request> reserved;
    reserved.emplace_back(
          db::EntryRequest{options.actor, "device.reserved", "chip:" + chip, {{"chip_id", chip}, {"fixture", f.config.number}}},
          [&](db::Connection& c) {
            std::vector<db::RowRef> rows;
            auto [serial, counter] = next_serial(c, batch);
            rows.push_back(counter);
            d.serial = serial;
            if (batch.settings.mac_source == "device") {
              d.mac = mac;
            } else {
              auto [pool_mac, mac_row] = next_mac(c, batch);
              rows.push_back(mac_row);
              d.mac = pool_mac;
            }
            d.chip_id = chip;
            d.batch_id = batch.id;
            d.fixture = fixture;
            d.state = "reserved";
            rows.push_back(db::insert_device(c, d));
            d.id = rows.back().id;
            return rows;
          });
    if (batch.settings.key_mode == "on-device") {
      // The device makes its key next (GENKEY, a side effect): the reservation is durable first.
      co_await commit_unit(f, std::move(reserved));
      if (*detect_error) std::rethrow_exception(*detect_error);
      crash_point("detected");
      crash_point("reserved");
    } else {
      // The serial is what issuance needs, and nothing leaves the station before `issued`,
      // which the journal orders after this unit: resume once it is applied, not durable.
      // `issued` (and a failure's record) refuse unless it landed (Work::reservation).
      auto outcome = std::make_shared<std::exception_ptr>();
      // A named completion: g++ 12 mishandles a lambda built in a co_await's arguments.
      db::Journal::Completion landed = [outcome, detect_error](std::vector<db::Entry>, std::exception_ptr x) {
        *outcome = x ? x : *detect_error;
        if (*outcome) return;
        crash_point("detected");  // on the writer, the moment both are durable
        crash_point("reserved");
      };
      co_await apply_unit(f, std::move(reserved), std::move(landed));
      w.reservation = std::move(outcome);
    }
    w.device = d;
    w.state = "reserved";
    set_status(f, "busy", "reserved");
    {
      const std::lock_guard lock(mutex);
      f.view.serial = d.serial;
    }
  }

  // Takes one device (already answering HELLO) as far as it goes. Returns true when the
  // device is finished here (done, already done, or set aside), false to retry it.
  asio::awaitable<bool> provision(Fixture& f, const fx::DeviceInfo& info) {
    const std::string chip = hex_of(info.chip_id);
    // Put straight back while its label's record commits: read its state once that is done.
    while (f.finishing.count(chip) != 0) co_await sleep(f, std::chrono::milliseconds(1));
    std::optional<Work> found = co_await offload(f, [&] { return find_device(f, info); });
    bool counted_new = false;
    Work w;
    if (found) {
      w = std::move(*found);
      if (w.uncounted_by) {
        const std::lock_guard lock(mutex);
        if (reprovisions_uncounted.insert(*w.uncounted_by).second) --batch_done;
      }
      if (w.device.batch_id && *w.device.batch_id != batch.id && w.device.state != "done") {
        set_status(f, "failed", w.state, fmt::format("device {} belongs to another batch", w.device.serial),
                   "set it aside for that batch's line");
        co_await bye_quietly(f);
        co_return true;
      }
      if (w.device.state == "done") {
        {
          const std::lock_guard lock(mutex);
          f.view.serial = w.device.serial;
        }
        set_status(f, "done", "done", fmt::format("already provisioned as {}", w.device.serial),
                   fmt::format("remove the device; for a new identity a security officer runs: station device "
                               "reprovision --serial {} --reason TEXT",
                               w.device.serial));
        co_await bye_quietly(f);
        co_return true;
      }
      {
        const std::lock_guard lock(mutex);
        f.view.serial = w.device.serial;
      }
      set_status(f, "busy", w.state);
      co_await offload(f, [&] {
        station.journal().commit({options.actor, "device.detected", "device:" + w.device.serial,
                                  {{"chip_id", chip}, {"fixture", f.config.number}, {"serial", w.device.serial},
                                   {"resumes_from", w.device.state}}});
      });
      crash_point("detected");
    } else {
      if (!may_start_new_device()) {
        set_status(f, batch_state == "open" ? "idle" : "paused", {},
                   batch_state == "open" ? "the batch is complete" : "the batch is " + batch_state,
                   batch_state == "open" ? "close the batch or open the next one" : "resume the batch to continue");
        co_return false;
      }
      {
        const std::lock_guard lock(mutex);
        ++in_flight_new;
        f.view.serial.clear();
      }
      counted_new = true;
      w.info = info;
      w.chip = chip;
    }
    auto finish_new = [&] {
      if (!counted_new) return;
      const std::lock_guard lock(mutex);
      --in_flight_new;
      counted_new = false;
    };

    std::string failed_at;
    std::optional<Error> failure;
    std::vector<db::Journal::Request> record;  // the label's, once printed
    try {
      if (!found) co_await reserve(f, w);
      // A device that comes back with an identity proves it (resume) or loses it.
      if (w.identity && (w.state == "written" || w.state == "verified" || w.state == "locked" || w.state == "failed")) {
        bool holds = false;
        try {
          const Bytes cert_spki = separate_cert_key(*w.identity);
          if (co_await f.client->get(fx::ItemId::device_cert) == w.identity->cert_der &&
              co_await f.client->get(fx::ItemId::dpp_public_key) == w.identity->public_key) {
            co_await f.client->prove_possession(w.identity->public_key, cert_spki);
            holds = true;
          }
        } catch (const Error& e) {
          if (e.code() == Errc::io_error || e.code() == Errc::timeout) throw;
        }
        if (holds) {
          if (w.state != "verified" && w.state != "locked") {
            nlohmann::json details;
            details["resumed"] = true;
            co_await journal_state(f, w, kVerified, std::move(details));
          }
        } else {
          nlohmann::json details;
          details["voided_cert_serial"] = w.identity->cert_serial;
          details["why"] = "the device does not hold its recorded identity";
          auto voiding = void_identity(w, "superseded");
          co_await journal_state(f, w, kReserved, std::move(details), std::move(voiding));
        }
      } else if (w.identity) {
        nlohmann::json details;
        details["voided_cert_serial"] = w.identity->cert_serial;
        auto voiding = void_identity(w, "cessationOfOperation");
        co_await journal_state(f, w, kReserved, std::move(details), std::move(voiding));
      }
      if (w.state != "verified" && w.state != "locked") {
        failed_at = "keyed";
        co_await step_key(f, w);
        failed_at = "issued";
        co_await step_issue(f, w);
        failed_at = "written";
        co_await step_write(f, w);
        failed_at = "verified";
        co_await step_verify(f, w);
      }
      if (batch.settings.lock && w.state != "locked") {
        failed_at = "locked";
        co_await f.client->lock();
        co_await journal_state(f, w, kLocked, nlohmann::json::object());
      }
      failed_at = kLabelled;
      co_await bye_quietly(f);  // it may already be gone; it holds a verified identity either way
      record = co_await step_label(f, w);
    } catch (const Error& e) {
      failure = e;
    }
    if (failure) {
      w.private_der = SecretBytes();
      w.cert_private_der = SecretBytes();
      finish_new();
      co_await fail_device(f, w, failed_at, *failure);
      co_return false;
    }
    set_status(f, "done", "done", {}, "remove the device");
    f.finishing.insert(chip);
    asio::co_spawn(f.strand, finish_device(f, std::move(w), std::move(record), counted_new), asio::detached);
    co_return true;
  }

  asio::awaitable<void> fail_device(Fixture& f, Work& w, const std::string& at, const Error& e) {
    const std::string reason = e.what();
    set_status(f, "failed", at, reason, hint_for(e));
    if (w.device.id == 0) co_return;  // nothing reserved: nothing to record
    // A certificate that was not proven on the device is voided; a verified one stays.
    const bool proven = w.state == "verified" || w.state == "locked" || w.state == "labelled";
    db::Mutation voiding;
    nlohmann::json details = {{"serial", w.device.serial}, {"fixture", f.config.number}, {"at", at},
                              {"reason", reason}, {"code", errc_name(e.code())}};
    if (w.identity && !proven) {
      details["voided_cert_serial"] = w.identity->cert_serial;
      voiding = void_identity(w, "cessationOfOperation");
    }
    const std::int64_t id = w.device.id;
    const std::string fixture = std::to_string(f.config.number);
    const std::string state = proven ? w.state : "failed";
    try {
      co_await offload(f, [&] {
        station.journal().commit({options.actor, "device.failed", "device:" + w.device.serial, details},
                                 [&](db::Connection& c) {
                                   // Its id may be another device's by now.
                                   if (w.reservation_lost())
                                     throw Error(Errc::internal, "its reservation did not land: nothing to record");
                                   std::vector<db::RowRef> rows;
                                   if (voiding) rows = voiding(c);
                                   rows.push_back(db::set_device_state(c, id, state, reason, fixture));
                                   return rows;
                                 });
      });
    } catch (const Error& je) {
      spdlog::error("{}: cannot record the failure of {}: {}", f.config.link.name, w.device.serial, je.what());
    }
    crash_point("failed");
  }

  void publish_progress() {
    if (bus != nullptr) bus->publish("batch", progress_json());
  }

  nlohmann::json progress_json() const {
    const std::lock_guard lock(mutex);
    const double minutes =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count() / 60.0;
    return {{"batch", batch.name},
            {"state", batch_state},
            {"quantity", batch.settings.quantity},
            {"done", batch_done},
            {"done_this_run", summary.done},
            {"failed", summary.failed},
            {"in_flight", in_flight_new},
            {"devices_per_min", minutes > 0 ? static_cast<double>(summary.done) / minutes : 0.0},
            {"hsm", hsm_ok ? "ok" : "unavailable"},
            {"started", started_text}};
  }

  // ----- a fixture's life --------------------------------------------------------------

  asio::awaitable<void> bye_quietly(Fixture& f) {
    if (!f.client || !f.client->is_open()) co_return;
    try {
      co_await f.client->bye();
    } catch (const Error&) {
    }
  }

  std::string current_batch_state() {
    const std::lock_guard lock(mutex);
    return batch_state;
  }

  asio::awaitable<void> sleep(Fixture& f, std::chrono::milliseconds d) {
    asio::steady_timer t(f.strand, d);
    co_await t.async_wait(asio::use_awaitable);
  }

  void device_left(Fixture& f, bool failed_for_good, const std::string& reason, const std::string& serial) {
    const std::lock_guard lock(mutex);
    ++devices_left;
    if (failed_for_good) {
      ++summary.failed;
      ++f.view.failed;
      summary.failures.push_back({serial, f.last_chip, f.config.link.name, "failed", reason});
    }
  }

  asio::awaitable<void> run_fixture(Fixture& f) {
    while (!stopping) {
      if (!f.client || !f.client->is_open()) {
        bool opened = false;
        bool usb_absent = false;
        try {
          if (options.open_link) {
            fx::ClientOptions co;
            co.fixture = f.config.link.name;
            co.timeouts = f.config.link.timeouts;
            co.retries = f.config.link.retries;
            co.max_payload = f.config.link.max_payload;
            f.client = std::make_unique<fx::DeviceClient>(options.open_link(f.strand, f.config), co);
          } else {
            f.client = fx::open_fixture(f.strand, f.config.link);
          }
          set_status(f, "idle");
          opened = true;
        } catch (const Error& e) {
          usb_absent = f.config.link.transport == "usb" && e.code() == Errc::not_found;
          set_status(f, usb_absent ? "idle" : "offline", {}, e.what(),
                     usb_absent ? "plug the device in" : "check the fixture's cable and its port in station.conf");
        }
        if (!opened && usb_absent) {
          // Nothing plugged into this USB port: wait for the hot-plug arrival (or the poll).
          bool waited = false;
          try {
            if (!f.watcher)
              f.watcher = std::make_unique<fx::UsbWatcher>(f.strand, fx::UsbSelector::parse(f.config.link.port));
            mark_idle(f, true);
            co_await f.watcher->wait_present();
            waited = true;
          } catch (const Error&) {
          }
          if (waited) continue;
        }
        if (!opened) {
          co_await sleep(f, std::chrono::milliseconds(1000));
          continue;
        }
      }
      std::optional<fx::DeviceInfo> info;
      bool link_failed = false;
      try {
        info = co_await f.client->detect();
      } catch (const Error& e) {
        f.client->close();
        set_status(f, "offline", {}, e.what(), hint_for(e));
        link_failed = true;
      }
      if (link_failed) {
        co_await sleep(f, std::chrono::milliseconds(200));
        continue;
      }
      if (!info) {
        mark_idle(f, true);
        if (f.view.status != "idle" && f.view.status != "paused") set_status(f, "idle");
        co_await sleep(f, options.poll);
        continue;
      }
      mark_idle(f, false);
      refresh_batch_state();
      const std::string chip = hex_of(info->chip_id);
      if (const auto state = current_batch_state(); state != "open") {
        set_status(f, "paused", {}, "the batch is " + state, "resume the batch to continue");
        co_await sleep(f, options.poll);
        continue;
      }
      if (f.set_aside.count(chip) != 0) {
        // Given up here: ask it to end its session (a line simulator presents the next chip)
        // and wait for the operator to take it out.
        co_await bye_quietly(f);
        co_await sleep(f, options.poll);
        continue;
      }
      bool finished = false;
      try {
        // A fresh session for the provisioning (detect() only said hello once).
        co_await f.client->hello();
        const fx::DeviceInfo device = *f.client->device();
        finished = co_await provision(f, device);
      } catch (const Error& e) {
        set_status(f, "failed", {}, e.what(), hint_for(e));
      }
      if (finished) {
        f.attempts.erase(chip);
        f.last_chip = chip;
        if (f.view.status != "done" || f.view.reason.rfind("already", 0) == 0) device_left(f, false, {}, {});
        co_await sleep(f, options.poll);
        continue;
      }
      if (f.view.status == "idle" || f.view.status == "paused") {  // batch complete or paused
        co_await sleep(f, options.poll);
        continue;
      }
      const int n = ++f.attempts[chip];
      if (n >= options.max_attempts) {
        // Set aside: the operator removes it (a line simulator presents the next chip).
        const std::string reason = f.view.reason;
        f.attempts.erase(chip);
        f.last_chip = chip;
        f.set_aside.insert(chip);
        device_left(f, true, reason, f.view.serial);
        if (options.on_device)
          options.on_device({{"serial", f.view.serial}, {"state", "failed"}, {"fixture", f.config.number},
                             {"reason", reason}});
        if (bus != nullptr)
          bus->publish("device", {{"serial", f.view.serial}, {"state", "failed"}, {"fixture", f.config.number},
                                  {"reason", reason}});
        {
          const std::lock_guard lock(mutex);
          f.view.status = "failed";
          f.view.reason = reason;
          f.view.hint = "set the device aside for rework and insert the next one";
        }
        publish_fixture(f);  // always: the tile's failed count changed even when its state did not
        co_await bye_quietly(f);
        publish_progress();
      }
      if (f.client && f.client->is_open()) f.client->link()->discard_input();
      co_await sleep(f, options.poll);
    }
  }

  void mark_idle(Fixture& f, bool idle) {
    const std::lock_guard lock(mutex);
    if (idle && !f.idle) f.idle_since = std::chrono::steady_clock::now();
    f.idle = idle;
  }

  std::chrono::steady_clock::time_point batch_checked{};
  void refresh_batch_state() {
    const auto now = std::chrono::steady_clock::now();
    {
      const std::lock_guard lock(mutex);
      if (now - batch_checked < std::chrono::milliseconds(500)) return;
      batch_checked = now;
    }
    std::string state;
    {
      const std::lock_guard slock(station.mutex());
      auto st = station.records().connection().prepare("SELECT state FROM batches WHERE id = ?");
      st.bind(1, batch.id);
      state = st.step() ? st.text(0) : "closed";
    }
    const std::lock_guard lock(mutex);
    batch_state = state;
  }

  bool should_stop() {
    if (stopping) return true;
    const std::lock_guard lock(mutex);
    if (options.stop_after_devices > 0 && devices_left >= options.stop_after_devices) return true;
    if (options.stop_when_complete && batch_done >= batch.settings.quantity) return true;
    if (options.stop_when_closed && batch_state == "closed") return true;
    if (options.stop_when_idle.count() > 0) {
      const auto now = std::chrono::steady_clock::now();
      for (const auto& f : fixtures)
        if (!f->idle || now - f->idle_since < options.stop_when_idle) return false;
      return true;
    }
    return false;
  }
};

ProvisioningLine::ProvisioningLine(Station& station, LineOptions options, EventBus* bus) {
  if (options.fixtures.empty()) options.fixtures = station.config().fixtures;
  if (options.fixtures.empty())
    throw Error(Errc::config_error, "no fixtures: add [fixtures.1] (transport, port) to station.conf (docs/config.md)");
  if (options.actor.empty()) options.actor = os_user();
  impl_ = std::make_unique<Impl>(station, std::move(options), bus);
  auto& im = *impl_;
  {
    const std::lock_guard lock(station.mutex());
    std::optional<Batch> b;
    if (!im.options.batch.empty()) {
      b = find_batch(station, im.options.batch);
      if (!b) throw Error(Errc::not_found, fmt::format("no batch {}; open it with `station batch open`", im.options.batch));
    } else {
      std::vector<Batch> open;
      for (auto& x : list_batches(station))
        if (x.state != "closed") open.push_back(x);
      if (open.size() != 1)
        throw Error(Errc::invalid_argument,
                    open.empty() ? "no open batch: open one with `station batch open` (or name it in [line] batch)"
                                 : "several batches are open: name one with --batch or [line] batch");
      b = open.front();
    }
    if (b->state == "closed") throw Error(Errc::invalid_argument, fmt::format("batch {} is closed", b->name));
    im.batch = *b;
    im.batch_state = b->state;
    im.batch_done = b->counts.done;
    {
      auto q = station.records().connection().prepare("SELECT coalesce(max(seq), 0) FROM journal");
      q.step();
      im.counted_up_to = q.int64(0);
    }
    im.summary.batch = b->name;
  }
  for (const auto& fc : im.options.fixtures) {
    auto f = std::make_unique<Impl::Fixture>(fc, im.io);
    f->view.number = fc.number;
    f->view.name = fc.link.name;
    f->view.port = fc.link.transport == "usb" ? "usb " + fc.link.port : fc.link.port;
    f->reader = std::make_unique<db::Connection>(station.config().resolve(station.config().database), true);
    im.fixtures.push_back(std::move(f));
  }
}

ProvisioningLine::~ProvisioningLine() = default;

void ProvisioningLine::stop() {
  impl_->stopping = true;
  for (auto& f : impl_->fixtures)
    asio::post(f->strand, [fx = f.get()] {
      if (fx->watcher) fx->watcher->cancel();
    });
}

LineSummary ProvisioningLine::run() {
  auto& im = *impl_;
  // Make the HSM session and the journal before the fixtures start (and fail early).
  {
    const std::lock_guard lock(im.station.mutex());
    im.station.hsm();
    im.station.journal();
  }
  im.started = std::chrono::steady_clock::now();
  for (auto& f : im.fixtures) {
    asio::co_spawn(f->strand, im.run_fixture(*f), [&im, name = f->config.link.name](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        spdlog::error("{} stopped: {}", name, x.what());
      }
    });
  }
  // The watchdog: stop conditions, checked on a timer.
  asio::steady_timer watchdog(im.io);
  std::function<void()> arm = [&] {
    watchdog.expires_after(std::chrono::milliseconds(50));
    watchdog.async_wait([&](const boost::system::error_code& ec) {
      if (ec) return;
      if (im.options.stop_when_closed) im.refresh_batch_state();
      if (im.should_stop()) {
        im.stopping = true;
        for (auto& f : im.fixtures)
          asio::post(f->strand, [fx = f.get()] {
            if (fx->watcher) fx->watcher->cancel();
          });
        return;
      }
      arm();
    });
  };
  arm();
  std::vector<std::thread> threads;
  for (unsigned i = 1; i < std::max(1U, im.options.threads); ++i)
    threads.emplace_back([&] {
      ::pthread_setname_np(::pthread_self(), "line-io");
      im.io.run();
    });
  im.io.run();
  for (auto& t : threads) t.join();
  im.blocking.join();
  for (auto& f : im.fixtures)
    if (f->client) f->client->close();
  const std::lock_guard lock(im.mutex);
  im.summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - im.started).count();
  return im.summary;
}

std::vector<FixtureView> ProvisioningLine::fixtures() const {
  const std::lock_guard lock(impl_->mutex);
  std::vector<FixtureView> out;
  for (const auto& f : impl_->fixtures) out.push_back(f->view);
  return out;
}

nlohmann::json ProvisioningLine::progress() const { return impl_->progress_json(); }

}  // namespace station::core
