// The liveness arithmetic both links' writers use (net/link.hpp): when a silent peer is lost,
// and when this end owes a heartbeat.
#include <gtest/gtest.h>

#include "net/link.hpp"

namespace shoal::net {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kMs = 1'000'000;

TEST(LinkLiveness, HeartbeatPeriodIsAQuarterOfTheTimeoutAtMost100Ms) {
  EXPECT_EQ(heartbeat_period(200ms), 50ms);
  EXPECT_EQ(heartbeat_period(400ms), 100ms);
  EXPECT_EQ(heartbeat_period(1s), 100ms);  // so a peer watching with 500 ms still hears enough
}

TEST(LinkLiveness, SilenceCountsOnlyWhileTheReaderWaits) {
  const uint64_t now = 10'000 * kMs;
  EXPECT_FALSE(silent_peer(now, 0, 1s));  // the reader is busy with a frame: says nothing
  EXPECT_FALSE(silent_peer(now, now, 1s));
  EXPECT_FALSE(silent_peer(now, now + kMs, 1s));         // started waiting after `now` was read
  EXPECT_FALSE(silent_peer(now, now - 1000 * kMs, 1s));  // exactly the timeout: not yet
  auto lost = silent_peer(now, now - 1001 * kMs, 1s);
  ASSERT_TRUE(lost);
  EXPECT_EQ(lost->message(), "no heartbeat for 1.0 s");
  auto lost_fast = silent_peer(now, now - 400 * kMs, 300ms);
  ASSERT_TRUE(lost_fast);
  EXPECT_EQ(lost_fast->message(), "no heartbeat for 0.3 s");
}

TEST(LinkLiveness, AHeartbeatIsDueOncePerPeriodOfNothingSent) {
  const uint64_t sent = 5'000 * kMs;
  EXPECT_FALSE(heartbeat_due(sent, sent, 1s));
  EXPECT_FALSE(heartbeat_due(sent + 99 * kMs, sent, 1s));
  EXPECT_TRUE(heartbeat_due(sent + 100 * kMs, sent, 1s));
  EXPECT_TRUE(heartbeat_due(sent + 50 * kMs, sent, 200ms));
}

}  // namespace
}  // namespace shoal::net
