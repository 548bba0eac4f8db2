// The claude result fields that make a failure the model's (and so switch the
// next attempt to agent.fallback_model).
#include <gtest/gtest.h>

#include "worker/agent_profile.h"

namespace forge::worker {
namespace {

proto::Result ParseClaude(const std::string& result_json, int exit_code = 1) {
  auto parser = MakeOutputParser(Profile::kClaude);
  parser->Feed(result_json + "\n");
  proto::Result r;
  parser->Finish(ExitStatus{exit_code, 0}, result_json, r);
  return r;
}

TEST(ClaudeModelFailure, OverloadedAndServerErrors) {
  EXPECT_TRUE(ParseClaude(R"({"type":"result","is_error":true,"subtype":"error",)"
                          R"("api_error_status":529,"result":"Overloaded"})")
                  .model_failure);
  EXPECT_TRUE(
      ParseClaude(R"({"type":"result","is_error":true,"api_error_status":503,"result":"x"})")
          .model_failure);
  EXPECT_TRUE(
      ParseClaude(R"({"type":"result","is_error":true,"subtype":"error_overloaded","result":"x"})")
          .model_failure);
  EXPECT_TRUE(ParseClaude(R"({"type":"result","is_error":true,"subtype":"error",)"
                          R"("terminal_reason":"model_unavailable","result":"x"})")
                  .model_failure);
}

TEST(ClaudeModelFailure, NotTheModelsFault) {
  proto::Result rate = ParseClaude(
      R"({"type":"result","is_error":true,"api_error_status":429,"result":"rate limited"})");
  EXPECT_FALSE(rate.model_failure);
  EXPECT_TRUE(rate.rate_limited);
  EXPECT_FALSE(
      ParseClaude(R"({"type":"result","is_error":true,"api_error_status":400,"result":"bad"})")
          .model_failure);
  // The agent's own words mentioning a model are not a structured signal.
  EXPECT_FALSE(ParseClaude(R"({"type":"result","is_error":true,"subtype":"error_max_turns",)"
                           R"("result":"the model is overloaded"})")
                   .model_failure);
  EXPECT_FALSE(
      ParseClaude(R"({"type":"result","subtype":"success","result":"ok"})", 0).model_failure);
}

}  // namespace
}  // namespace forge::worker
