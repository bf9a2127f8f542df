// What the running station tells its watchers: an in-process event bus the pipeline
// publishes to and the HTTP API streams from (GET /api/events), and the live view of the
// line (fixtures, batch progress) the API and the operator's page read.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace station::core {

struct Event {
  std::int64_t id = 0;        // 1, 2, ... per bus; SSE "id:"
  std::string type;           // "fixture" | "device" | "batch" | "alarm" | "lagged"
  nlohmann::json data;        // the payload (see docs/api.md, GET /api/events)
};

// Thread-safe. publish() never blocks on a slow subscriber: each subscription has a bounded
// queue; when it overflows the oldest events are dropped and the subscriber receives one
// "lagged" event saying how many it missed (it should re-read the state it shows).
class EventBus {
 public:
  explicit EventBus(std::size_t history = 512);

  class Subscription {
   public:
    // Moves queued events into out (waits up to `timeout` for the first). False when the
    // bus was closed and nothing is left.
    bool wait(std::vector<Event>& out, std::chrono::milliseconds timeout);
    // Takes what is queued without waiting.
    void take(std::vector<Event>& out);

   private:
    friend class EventBus;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<Event> queue_;
    std::size_t max_queue_ = 1024;
    std::int64_t dropped_ = 0;
    bool closed_ = false;
    std::int64_t lagged_id_ = 0;  // the last dropped event's id: the "lagged" event's id
  };

  Event publish(std::string type, nlohmann::json data);
  // A new subscription; it first receives the retained events with id > since_id.
  std::shared_ptr<Subscription> subscribe(std::int64_t since_id = -1, std::size_t max_queue = 1024);
  void unsubscribe(const std::shared_ptr<Subscription>& s);
  // The last `history` events with id > since_id.
  std::vector<Event> recent(std::int64_t since_id = 0) const;
  std::int64_t last_id() const;
  std::size_t subscribers() const;
  // Wakes every subscriber; later publishes are dropped.
  void close();

 private:
  mutable std::mutex mutex_;
  std::size_t history_;
  std::deque<Event> recent_;
  std::vector<std::shared_ptr<Subscription>> subs_;
  std::int64_t next_id_ = 1;
  bool closed_ = false;
};

// One fixture as the operator sees it.
struct FixtureView {
  int number = 0;
  std::string name;            // "fixture 3"
  std::string port;            // "/dev/pts/5", "usb 1209:0001@1-4"
  // idle (waiting for a device) | busy (provisioning) | done (device finished, waiting for
  // it to be removed) | failed (see reason/hint) | paused (batch paused / HSM unavailable)
  // | offline (the link cannot be opened)
  std::string status = "idle";
  std::string step;            // the device's pipeline state while busy
  std::string serial;          // current or last device
  std::string reason;          // plain words, on failed/paused/offline
  std::string hint;            // what to do about it
  std::int64_t done = 0;       // devices finished on this fixture since start
  std::int64_t failed = 0;
  std::string updated;         // RFC 3339
};

nlohmann::json to_json(const FixtureView& f);

// What a running line exposes to the HTTP API. Implemented by the pipeline.
class LineView {
 public:
  virtual ~LineView() = default;
  virtual std::vector<FixtureView> fixtures() const = 0;
  // {"batch": name|null, "state", "done", "failed", "in_flight", "devices_per_min",
  //  "hsm": "ok"|"unavailable", "started"}
  virtual nlohmann::json progress() const = 0;
};

}  // namespace station::core
