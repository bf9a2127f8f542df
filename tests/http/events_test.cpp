// The event bus: ids, replay after an id, bounded queues with one "lagged" event, close.
#include <gtest/gtest.h>

#include <thread>

#include "core/events.hpp"

namespace station::core {
namespace {

std::vector<Event> take(EventBus::Subscription& s) {
  std::vector<Event> out;
  s.take(out);
  return out;
}

TEST(EventBus, PublishNumbersEventsAndDeliversToEverySubscriber) {
  EventBus bus;
  const auto a = bus.subscribe();
  const auto b = bus.subscribe();
  EXPECT_EQ(bus.publish("fixture", {{"n", 1}}).id, 1);
  EXPECT_EQ(bus.publish("device", {{"n", 2}}).id, 2);
  EXPECT_EQ(bus.last_id(), 2);
  for (const auto& s : {a, b}) {
    const auto got = take(*s);
    ASSERT_EQ(got.size(), 2U);
    EXPECT_EQ(got[0].type, "fixture");
    EXPECT_EQ(got[1].data["n"], 2);
  }
  EXPECT_TRUE(take(*a).empty());
  bus.unsubscribe(a);
  EXPECT_EQ(bus.subscribers(), 1U);
}

TEST(EventBus, SubscribeReplaysRetainedEventsAfterAnId) {
  EventBus bus(3);
  for (int k = 1; k <= 5; ++k) bus.publish("batch", {{"n", k}});
  EXPECT_EQ(bus.recent(0).size(), 3U);
  auto got = take(*bus.subscribe(3));
  ASSERT_EQ(got.size(), 2U);
  EXPECT_EQ(got[0].id, 4);
  // Asking for more than is retained: a "lagged" first, with the count and the last missed id.
  got = take(*bus.subscribe(0));
  ASSERT_EQ(got.size(), 4U);
  EXPECT_EQ(got[0].type, "lagged");
  EXPECT_EQ(got[0].data["missed"], 2);
  EXPECT_EQ(got[0].id, 2);
  EXPECT_EQ(got[1].id, 3);
  // No id: only what comes next. An id from an earlier run (beyond the last): all retained.
  EXPECT_TRUE(take(*bus.subscribe()).empty());
  got = take(*bus.subscribe(900));
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got[0].type, "lagged");
}

TEST(EventBus, ASlowSubscriberLosesTheOldestAndGetsOneLaggedEvent) {
  EventBus bus;
  const auto s = bus.subscribe(-1, 4);
  for (int k = 1; k <= 10; ++k) bus.publish("device", {{"n", k}});
  const auto got = take(*s);
  ASSERT_EQ(got.size(), 5U);
  EXPECT_EQ(got[0].type, "lagged");
  EXPECT_EQ(got[0].data["missed"], 6);
  EXPECT_EQ(got[0].id, 6);
  EXPECT_EQ(got[1].id, 7);
  EXPECT_EQ(got[4].id, 10);
  EXPECT_TRUE(take(*s).empty());  // reported once
}

TEST(EventBus, WaitWakesOnPublishAndEndsOnClose) {
  EventBus bus;
  const auto s = bus.subscribe();
  std::vector<Event> out;
  EXPECT_TRUE(s->wait(out, std::chrono::milliseconds(10)));  // timeout: still open
  EXPECT_TRUE(out.empty());
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    bus.publish("alarm", {{"text", "HSM unavailable"}});
  });
  EXPECT_TRUE(s->wait(out, std::chrono::seconds(10)));
  t.join();
  ASSERT_EQ(out.size(), 1U);
  bus.close();
  out.clear();
  EXPECT_FALSE(s->wait(out, std::chrono::seconds(10)));
  EXPECT_EQ(bus.publish("alarm", {}).id, 0);  // dropped after close
  EXPECT_EQ(bus.subscribers(), 0U);
}

TEST(FixtureView, JsonUsesNullForAbsentValues) {
  FixtureView f;
  f.number = 1;
  f.name = "fixture 1";
  const auto j = to_json(f);
  EXPECT_EQ(j["status"], "idle");
  EXPECT_TRUE(j["serial"].is_null());
  EXPECT_TRUE(j["reason"].is_null());
  EXPECT_EQ(j["done"], 0);
}

}  // namespace
}  // namespace station::core
