#include "core/events.hpp"

#include <algorithm>

namespace station::core {
namespace {

// The "lagged" event a subscriber receives in place of events it missed. Its id is that of
// the last missed event, so a client that resumes with Last-Event-ID does not ask for them
// again: it has been told they are gone and re-reads the state it shows instead.
Event lagged(std::int64_t last_missed_id, std::int64_t missed) {
  return Event{last_missed_id, "lagged", {{"missed", missed}}};
}

}  // namespace

EventBus::EventBus(std::size_t history) : history_(std::max<std::size_t>(history, 1)) {}

Event EventBus::publish(std::string type, nlohmann::json data) {
  std::lock_guard lock(mutex_);
  if (closed_) return Event{0, std::move(type), std::move(data)};
  Event e{next_id_++, std::move(type), std::move(data)};
  recent_.push_back(e);
  while (recent_.size() > history_) recent_.pop_front();
  for (const auto& s : subs_) {
    {
      std::lock_guard sl(s->mutex_);
      if (s->queue_.size() >= s->max_queue_) {
        // The oldest goes; the subscriber learns how many in one "lagged" event.
        s->lagged_id_ = s->queue_.front().id;
        s->queue_.pop_front();
        ++s->dropped_;
      }
      s->queue_.push_back(e);
    }
    s->cv_.notify_one();
  }
  return e;
}

std::shared_ptr<EventBus::Subscription> EventBus::subscribe(std::int64_t since_id, std::size_t max_queue) {
  auto s = std::make_shared<Subscription>();
  s->max_queue_ = std::max<std::size_t>(max_queue, 1);
  std::lock_guard lock(mutex_);
  if (since_id >= 0) {
    // An id beyond the last one comes from an earlier run of the station (ids restart at 1):
    // everything of this run is new to that client.
    if (since_id >= next_id_) since_id = 0;
    // Replay what is retained; what the client asks for beyond that is reported as missed.
    const std::int64_t first_kept = recent_.empty() ? next_id_ : recent_.front().id;
    if (since_id < first_kept - 1) {
      s->dropped_ = first_kept - 1 - since_id;
      s->lagged_id_ = first_kept - 1;
    }
    for (const auto& e : recent_)
      if (e.id > since_id) s->queue_.push_back(e);
    while (s->queue_.size() > s->max_queue_) {
      s->lagged_id_ = s->queue_.front().id;
      s->queue_.pop_front();
      ++s->dropped_;
    }
  }
  s->closed_ = closed_;
  if (!closed_) subs_.push_back(s);
  return s;
}

void EventBus::unsubscribe(const std::shared_ptr<Subscription>& s) {
  std::lock_guard lock(mutex_);
  subs_.erase(std::remove(subs_.begin(), subs_.end(), s), subs_.end());
}

std::vector<Event> EventBus::recent(std::int64_t since_id) const {
  std::lock_guard lock(mutex_);
  std::vector<Event> out;
  for (const auto& e : recent_)
    if (e.id > since_id) out.push_back(e);
  return out;
}

std::int64_t EventBus::last_id() const {
  std::lock_guard lock(mutex_);
  return next_id_ - 1;
}

std::size_t EventBus::subscribers() const {
  std::lock_guard lock(mutex_);
  return subs_.size();
}

void EventBus::close() {
  std::vector<std::shared_ptr<Subscription>> subs;
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
    subs.swap(subs_);
  }
  for (const auto& s : subs) {
    {
      std::lock_guard sl(s->mutex_);
      s->closed_ = true;
    }
    s->cv_.notify_all();
  }
}

void EventBus::Subscription::take(std::vector<Event>& out) {
  std::lock_guard lock(mutex_);
  if (dropped_ > 0) {
    out.push_back(lagged(lagged_id_, dropped_));
    dropped_ = 0;
  }
  for (auto& e : queue_) out.push_back(std::move(e));
  queue_.clear();
}

bool EventBus::Subscription::wait(std::vector<Event>& out, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, timeout, [&] { return !queue_.empty() || closed_; });
  if (queue_.empty() && dropped_ == 0) return !closed_;
  lock.unlock();
  take(out);
  return true;
}

nlohmann::json to_json(const FixtureView& f) {
  // DESIGN.md conventions: absent values are null, not empty strings.
  auto opt = [](const std::string& s) { return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s); };
  return {{"number", f.number},       {"name", f.name},           {"port", opt(f.port)},
          {"status", f.status},       {"step", opt(f.step)},      {"serial", opt(f.serial)},
          {"reason", opt(f.reason)},  {"hint", opt(f.hint)},      {"done", f.done},
          {"failed", f.failed},       {"updated", opt(f.updated)}};
}

}  // namespace station::core
