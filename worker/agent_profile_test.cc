#include "worker/agent_profile.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace forge::worker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

ExitStatus Exit(int code) {
  return ExitStatus{code, 0};
}

proto::Result Parse(Profile profile, const std::string& out, ExitStatus status = Exit(0),
                    size_t chunk = 7) {
  auto parser = MakeOutputParser(profile);
  // Fed in small pieces, as pipes deliver it.
  for (size_t i = 0; i < out.size(); i += chunk)
    parser->Feed(std::string_view(out).substr(i, chunk));
  proto::Result r;
  parser->Finish(status, out, r);
  return r;
}

const char* kClaudeSuccess =
    R"({"type":"result","subtype":"success","is_error":false,"duration_ms":1234,)"
    R"("num_turns":6,"result":"All done.","session_id":"abc-123","total_cost_usd":0.0421,)"
    R"("usage":{"input_tokens":1500,"cache_read_input_tokens":99,"output_tokens":320}})";

TEST(ParseProfile, KnownAndUnknown) {
  EXPECT_EQ(ParseProfile("claude").value(), Profile::kClaude);
  EXPECT_EQ(ParseProfile("codex").value(), Profile::kCodex);
  EXPECT_EQ(ParseProfile("command").value(), Profile::kCommand);
  auto bad = ParseProfile("gpt");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kConfig);
  EXPECT_THAT(bad.error().message, HasSubstr("'gpt'"));
  EXPECT_THAT(bad.error().message, HasSubstr("(expected claude, codex or command)"));
}

// The names the config, forge-ctl and the submit check accept are the ones a
// worker runs: none of them spends an attempt on "unknown agent profile".
TEST(ParseProfile, EveryAcceptedNameIsOneAWorkerRuns) {
  for (std::string_view name : proto::AgentProfiles()) {
    EXPECT_TRUE(ParseProfile(name).ok()) << name;
    EXPECT_TRUE(proto::IsAgentProfile(name)) << name;
  }
  EXPECT_FALSE(proto::IsAgentProfile("bogus"));
  EXPECT_FALSE(proto::IsAgentProfile(""));
}

TEST(BuildArgv, CommandIsExactlyCommandPlusArgs) {
  proto::AgentSpec s;
  s.profile = "command";
  s.command = {"./agent.sh", "--x"};
  s.args = {"y"};
  s.model = "ignored";
  EXPECT_THAT(BuildArgv(s).value(), ElementsAre("./agent.sh", "--x", "y"));
}

TEST(BuildArgv, ClaudeAddsPrintJsonAndModel) {
  proto::AgentSpec s;
  s.profile = "claude";
  s.command = {"claude"};
  s.args = {"--allowedTools", "Write,Edit"};
  EXPECT_THAT(BuildArgv(s).value(), ElementsAre("claude", "-p", "--output-format", "stream-json",
                                                "--verbose", "--allowedTools", "Write,Edit"));
  s.model = "opus";
  EXPECT_THAT(BuildArgv(s).value(),
              ElementsAre("claude", "-p", "--output-format", "stream-json", "--verbose", "--model",
                          "opus", "--allowedTools", "Write,Edit"));
}

TEST(BuildArgv, CodexExecJsonReadsPromptFromStdin) {
  proto::AgentSpec s;
  s.profile = "codex";
  s.command = {"codex"};
  s.model = "o3";
  EXPECT_THAT(BuildArgv(s).value(), ElementsAre("codex", "exec", "--json", "--model", "o3", "-"));
}

TEST(BuildArgv, EmptyCommandIsAConfigError) {
  proto::AgentSpec s;
  s.profile = "claude";
  auto r = BuildArgv(s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kConfig);
  EXPECT_THAT(r.error().message, HasSubstr("no command"));
}

TEST(CommandParser, ExitCodeOnly) {
  EXPECT_EQ(Parse(Profile::kCommand, "whatever\n").outcome, "passed");
  auto r = Parse(Profile::kCommand, "step 1\nerror: it broke\n", Exit(4));
  EXPECT_EQ(r.outcome, "failed");
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_EQ(r.error, "agent exited with exit 4: error: it broke");
  auto k = Parse(Profile::kCommand, "", ExitStatus{-1, 9});
  EXPECT_EQ(k.outcome, "failed");
  EXPECT_EQ(k.signal, 9);
  EXPECT_THAT(k.error, HasSubstr("killed by signal 9"));
}

TEST(ClaudeParser, SuccessFillsCostTokensSession) {
  auto r = Parse(Profile::kClaude, std::string("some stderr-ish noise\n") + kClaudeSuccess + "\n");
  EXPECT_EQ(r.outcome, "passed") << r.error;
  EXPECT_DOUBLE_EQ(r.cost_usd, 0.0421);
  EXPECT_EQ(r.tokens_in, 1599);  // the cached input too
  EXPECT_EQ(r.tokens_out, 320);
  EXPECT_EQ(r.num_turns, 6);
  EXPECT_EQ(r.session_id, "abc-123");
  EXPECT_FALSE(r.rate_limited);
  EXPECT_EQ(r.error, "");
}

TEST(ClaudeParser, VerboseArrayTakesTheResultElement) {
  std::string out = std::string(R"([{"type":"system","subtype":"init","session_id":"x"},)") +
                    kClaudeSuccess + "]";
  auto r = Parse(Profile::kClaude, out);
  EXPECT_EQ(r.outcome, "passed");
  EXPECT_EQ(r.session_id, "abc-123");
}

// What `--output-format stream-json --verbose` prints: a message a line,
// the result object last.
TEST(ClaudeParser, StreamJsonTakesTheResultLine) {
  std::string out =
      std::string(R"({"type":"system","subtype":"init","session_id":"abc-123","tools":["Bash"]})") +
      "\n" +
      R"({"type":"assistant","message":{"content":[{"type":"tool_use","name":"Bash","input":{"command":"make"}}]}})" +
      "\n" + R"({"type":"user","message":{"content":[{"type":"tool_result","content":"ok"}]}})" +
      "\n" + kClaudeSuccess + "\n";
  auto r = Parse(Profile::kClaude, out);
  EXPECT_EQ(r.outcome, "passed") << r.error;
  EXPECT_DOUBLE_EQ(r.cost_usd, 0.0421);
  EXPECT_EQ(r.tokens_in, 1599);  // the cached input too
  EXPECT_EQ(r.session_id, "abc-123");
}

TEST(ClaudeParser, IsErrorFails) {
  auto r = Parse(Profile::kClaude,
                 R"({"type":"result","subtype":"error_max_turns","is_error":true,"num_turns":30,)"
                 R"("session_id":"s","total_cost_usd":1.5,"result":"ran out of turns"})",
                 Exit(1));
  EXPECT_EQ(r.outcome, "failed");
  EXPECT_THAT(r.error, HasSubstr("error_max_turns"));
  EXPECT_THAT(r.error, HasSubstr("ran out of turns"));
  EXPECT_DOUBLE_EQ(r.cost_usd, 1.5);  // cost is recorded even for a failure
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_FALSE(r.rate_limited);
}

TEST(ClaudeParser, ErrorEvenWithExitZero) {
  auto r = Parse(Profile::kClaude,
                 R"({"type":"result","subtype":"error_during_execution","is_error":true})");
  EXPECT_EQ(r.outcome, "failed");
  EXPECT_THAT(r.error, HasSubstr("error_during_execution"));
}

TEST(ClaudeParser, NonZeroExitAfterSuccessFails) {
  auto r = Parse(Profile::kClaude, kClaudeSuccess, Exit(2));
  EXPECT_EQ(r.outcome, "failed");
  EXPECT_THAT(r.error, HasSubstr("exit 2"));
}

TEST(ClaudeParser, Http429IsRateLimited) {
  auto r = Parse(Profile::kClaude,
                 R"({"type":"result","subtype":"error_during_execution","is_error":true,)"
                 R"("api_error_status":429,"result":"API Error"})",
                 Exit(1));
  EXPECT_EQ(r.outcome, "failed");
  EXPECT_TRUE(r.rate_limited);
  EXPECT_THAT(r.error, HasSubstr("api_error_status 429"));
}

TEST(ClaudeParser, RateLimitSubtypeOrReasonIsRateLimited) {
  EXPECT_TRUE(
      Parse(Profile::kClaude, R"({"type":"result","subtype":"error_rate_limit","is_error":true})")
          .rate_limited);
  EXPECT_TRUE(
      Parse(
          Profile::kClaude,
          R"({"type":"result","subtype":"error","is_error":true,"terminal_reason":"rate_limit_exceeded"})")
          .rate_limited);
}

// A subscription's usage limit: no 429 in the result object, the reset as
// epoch seconds in the text (claude-code issues #2490, #6119).
TEST(ClaudeParser, AUsageLimitIsARateLimitWithItsReset) {
  auto r = Parse(Profile::kClaude,
                 R"({"type":"result","subtype":"success","is_error":true,)"
                 R"("result":"Claude AI usage limit reached|1755615600"})",
                 Exit(1));
  EXPECT_EQ(r.outcome, "failed");
  EXPECT_TRUE(r.rate_limited);
  EXPECT_EQ(r.rate_limit_reset_ms, 1'755'615'600'000);
  auto no_reset = Parse(Profile::kClaude,
                        R"({"type":"result","subtype":"success","is_error":true,)"
                        R"("result":"Claude AI usage limit reached|soon"})",
                        Exit(1));
  EXPECT_TRUE(no_reset.rate_limited);
  EXPECT_EQ(no_reset.rate_limit_reset_ms, 0);
  // An answer that quotes the message is a pass, not a limit.
  auto quoted = Parse(Profile::kClaude,
                      R"({"type":"result","subtype":"success","is_error":false,)"
                      R"("result":"Claude AI usage limit reached|1 is what users saw; fixed"})");
  EXPECT_EQ(quoted.outcome, "passed");
  EXPECT_FALSE(quoted.rate_limited);
}

TEST(ClaudeParser, FreeTextMentioningRateLimitsIsNotARateLimit) {
  auto r = Parse(Profile::kClaude,
                 R"({"type":"result","subtype":"success","is_error":false,)"
                 R"("result":"I hit a rate_limit error 429 in the test suite and fixed it"})");
  EXPECT_EQ(r.outcome, "passed");
  EXPECT_FALSE(r.rate_limited);
}

TEST(ClaudeParser, GarbageFailsWithTheTail) {
  auto r = Parse(Profile::kClaude, "Error: not logged in\nPlease run claude login\n", Exit(1));
  EXPECT_EQ(r.outcome, "failed");
  EXPECT_THAT(r.error, HasSubstr("without a claude JSON result"));
  EXPECT_THAT(r.error, HasSubstr("Please run claude login"));
}

TEST(ClaudeParser, TruncatedJsonFailsWithTheTail) {
  std::string cut = std::string(kClaudeSuccess).substr(0, 80);
  auto r = Parse(Profile::kClaude, cut);
  EXPECT_EQ(r.outcome, "failed");
  EXPECT_THAT(r.error, HasSubstr("without a claude JSON result"));
  EXPECT_THAT(r.error, HasSubstr(cut.substr(40)));
  EXPECT_EQ(r.cost_usd, 0);
}

TEST(ClaudeParser, EmptyOutputFails) {
  auto r = Parse(Profile::kClaude, "");
  EXPECT_EQ(r.outcome, "failed");
  EXPECT_THAT(r.error, HasSubstr("without a claude JSON result"));
}

// Every input token the model read (claude counts the cached ones apart),
// and never a negative spend or count: a wrapper's -5 would take from the
// budgets' sums.
TEST(ClaudeParser, InputTokensIncludeTheCachedOnesAndNothingIsNegative) {
  auto r = Parse(Profile::kClaude,
                 R"({"type":"result","subtype":"success","is_error":false,"total_cost_usd":0.5,)"
                 R"("usage":{"input_tokens":3,"cache_creation_input_tokens":1200,)"
                 R"("cache_read_input_tokens":16000,"output_tokens":40}})");
  EXPECT_EQ(r.tokens_in, 17203);
  EXPECT_EQ(r.tokens_out, 40);
  auto negative = Parse(Profile::kClaude,
                        R"({"type":"result","subtype":"success","is_error":false,)"
                        R"("total_cost_usd":-5,"usage":{"input_tokens":-7,"output_tokens":-1}})");
  EXPECT_EQ(negative.cost_usd, 0);
  EXPECT_EQ(negative.tokens_in, 0);
  EXPECT_EQ(negative.tokens_out, 0);
}

TEST(ClaudeParser, MistypedFieldsAreIgnoredNotThrown) {
  auto r = Parse(
      Profile::kClaude,
      R"({"type":"result","is_error":"no","total_cost_usd":"1","usage":[1],"num_turns":null})");
  EXPECT_EQ(r.outcome, "passed");
  EXPECT_EQ(r.cost_usd, 0);
  EXPECT_EQ(r.tokens_in, 0);
}

TEST(ClaudeParser, NumbersNoIntegerCanHoldAreAbsent) {
  auto r = Parse(Profile::kClaude,
                 R"({"type":"result","is_error":false,"num_turns":3.3e80,)"
                 R"("usage":{"input_tokens":18446744073709551615,"output_tokens":-1e300}})");
  EXPECT_EQ(r.outcome, "passed");
  EXPECT_EQ(r.num_turns, 0);
  EXPECT_EQ(r.tokens_in, 0);
  EXPECT_EQ(r.tokens_out, 0);
  auto whole = Parse(Profile::kClaude, R"({"type":"result","is_error":false,"num_turns":7.0,)"
                                       R"("usage":{"input_tokens":9223372036854775807}})");
  EXPECT_EQ(whole.num_turns, 7);
  EXPECT_EQ(whole.tokens_in, INT64_MAX);
}

TEST(CodexParser, SumsTurnsAndTakesTheThread) {
  std::string out =
      R"({"type":"thread.started","thread_id":"th-9"})"
      "\n"
      R"({"type":"turn.started"})"
      "\n"
      R"({"type":"item.completed","item":{"id":"i0","type":"agent_message","text":"hi"}})"
      "\n"
      R"({"type":"turn.completed","usage":{"input_tokens":100,"cached_input_tokens":50,"output_tokens":20}})"
      "\n"
      "plain text in between\n"
      R"({"type":"turn.completed","usage":{"input_tokens":30,"output_tokens":5}})";  // no final
                                                                                     // newline
  auto r = Parse(Profile::kCodex, out, Exit(0), 5);
  EXPECT_EQ(r.outcome, "passed") << r.error;
  EXPECT_EQ(r.session_id, "th-9");
  EXPECT_EQ(r.tokens_in, 130);
  EXPECT_EQ(r.tokens_out, 25);
  EXPECT_EQ(r.num_turns, 2);
}

TEST(CodexParser, TokenSumsStopAtTheLargestCount) {
  std::string turn = R"({"type":"turn.completed","usage":{"input_tokens":9223372036854775807,)"
                     R"("output_tokens":-9223372036854775807}})"
                     "\n";
  auto r = Parse(Profile::kCodex, turn + turn + turn, Exit(0), 5);
  EXPECT_EQ(r.tokens_in, INT64_MAX);
  EXPECT_EQ(r.tokens_out, 0);  // a negative count is none
  EXPECT_EQ(r.num_turns, 3);
}

TEST(CodexParser, TurnFailedFailsWithItsMessage) {
  std::string out = R"({"type":"thread.started","thread_id":"th-1"})"
                    "\n"
                    R"({"type":"turn.failed","error":{"message":"model overloaded"}})"
                    "\n";
  auto r = Parse(Profile::kCodex, out, Exit(1));
  EXPECT_EQ(r.outcome, "failed");
  EXPECT_THAT(r.error, HasSubstr("model overloaded"));
  EXPECT_EQ(r.session_id, "th-1");
}

TEST(CodexParser, ErrorEventFailsEvenWithExitZero) {
  auto r = Parse(Profile::kCodex, R"({"type":"error","message":"stream disconnected"})"
                                  "\n");
  EXPECT_EQ(r.outcome, "failed");
  EXPECT_THAT(r.error, HasSubstr("stream disconnected"));
}

TEST(CodexParser, NonZeroExitWithoutEventsFails) {
  auto r = Parse(Profile::kCodex, "codex: command not understood\n", Exit(2));
  EXPECT_EQ(r.outcome, "failed");
  EXPECT_THAT(r.error, HasSubstr("exit 2"));
  EXPECT_THAT(r.error, HasSubstr("command not understood"));
}

TEST(FinalText, IsTheAgentsLastMessage) {
  auto claude = MakeOutputParser(Profile::kClaude);
  claude->Feed(kClaudeSuccess);
  proto::Result r;
  claude->Finish(Exit(0), "", r);
  EXPECT_EQ(claude->FinalText(), "All done.");

  auto codex = MakeOutputParser(Profile::kCodex);
  codex->Feed(R"({"type":"item.completed","item":{"type":"agent_message","text":"first"}})"
              "\n"
              R"({"type":"item.completed","item":{"type":"command_execution","text":"ls"}})"
              "\n"
              R"({"type":"item.completed","item":{"type":"agent_message","text":"last"}})"
              "\n");
  codex->Finish(Exit(0), "", r);
  EXPECT_EQ(codex->FinalText(), "last");

  auto command = MakeOutputParser(Profile::kCommand);
  command->Feed("line 1\n");
  command->Feed("line 2\n");
  command->Finish(Exit(0), "", r);
  EXPECT_EQ(command->FinalText(), "line 1\nline 2\n");
}

TEST(TailText, CutsAtALineStart) {
  std::string text;
  for (int i = 0; i < 100; ++i) text += "line " + std::to_string(i) + "\n";
  std::string tail = TailText(text, 100);
  EXPECT_LE(tail.size(), 100u);
  EXPECT_EQ(tail.rfind("line 99\n"), tail.size() - 8);
  EXPECT_EQ(tail.rfind("line ", 0), 0u);  // starts at a line
  EXPECT_EQ(TailText("short", 100), "short");
}

}  // namespace
}  // namespace forge::worker
