#include "common/background.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <future>
#include <string>

namespace forge {
namespace {

bool Readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN) != 0;
}

TEST(BackgroundTest, TheFdBecomesReadableOnlyWhenTheFunctionHasReturned) {
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  auto started = Background<std::string>::Start([gate] {
    gate.wait();
    return std::string("done");
  });
  ASSERT_TRUE(started.ok()) << started.error().ToString();
  auto& job = **started;
  EXPECT_FALSE(Readable(job.fd(), 0));
  EXPECT_FALSE(job.Finished());

  release.set_value();
  EXPECT_TRUE(Readable(job.fd(), 10'000));
  EXPECT_TRUE(job.Finished());
  EXPECT_TRUE(job.Finished());  // stays finished once the readiness is consumed
  EXPECT_FALSE(Readable(job.fd(), 0));
  EXPECT_EQ(job.Take(), "done");
}

TEST(BackgroundTest, DestroyingAnUntakenJobWaitsForIt) {
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  bool ran = false;
  {
    auto started = Background<int>::Start([gate, &ran] {
      gate.wait();
      ran = true;
      return 1;
    });
    ASSERT_TRUE(started.ok());
    release.set_value();
  }  // joined here: `ran` is safe to read, and set
  EXPECT_TRUE(ran);
}

}  // namespace
}  // namespace forge
