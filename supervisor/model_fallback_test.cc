#include "supervisor/model_fallback.h"

#include <gtest/gtest.h>

namespace forge::supervisor {
namespace {

TEST(ModelFallback, NextAttemptAfterAModelFailureUsesTheFallback) {
  EXPECT_EQ(ModelForNextAttempt("opus", "sonnet", 1, 1), "sonnet");
  EXPECT_EQ(ModelForNextAttempt("opus", "sonnet", 3, 3), "sonnet");
}

TEST(ModelFallback, OtherwiseThePrimaryModel) {
  EXPECT_EQ(ModelForNextAttempt("opus", "sonnet", 0, 0), "opus");  // first attempt
  EXPECT_EQ(ModelForNextAttempt("opus", "sonnet", 2, 0), "opus");  // no model failure
  EXPECT_EQ(ModelForNextAttempt("opus", "sonnet", 2, 1), "opus");  // an older one
  EXPECT_EQ(ModelForNextAttempt("opus", "", 1, 1), "opus");        // no fallback configured
  EXPECT_EQ(ModelForNextAttempt("", "sonnet", 1, 1), "sonnet");    // profile default model
}

}  // namespace
}  // namespace forge::supervisor
