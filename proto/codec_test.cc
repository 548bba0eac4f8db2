#include "proto/codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "common/sanitizers.h"
#include "proto/test_fixtures.h"

namespace forge::proto {
namespace {

using namespace forge::proto::fixtures;
using ::testing::HasSubstr;

Hello FullHello() {
  return Hello{"worker", 4242, "0.1.0"};
}
Heartbeat FullHeartbeat() {
  return Heartbeat{int64_t{77}};
}
Started FullStarted() {
  return Started{77, 5000, 5000, 123456789, "0123456789abcdef0123456789abcdef01234567"};
}

Result FullResult() {
  Result r;
  r.attempt_id = 77;
  r.outcome = "failed";
  r.exit_code = 2;
  r.signal = 6;
  r.duration_ms = 4500;
  r.cost_usd = 0.125;
  r.tokens_in = 100;
  r.tokens_out = 200;
  r.num_turns = 3;
  r.session_id = "s-1";
  r.error = "agent said no";
  r.log_path = "/tmp/log";
  r.output_tail = "last\nlines\n";
  r.log_error = "the attempt log stops after 10 bytes: no space; 5 bytes not written";
  r.retryable = false;
  r.rate_limited = true;
  r.rate_limit_reset_ms = 1795273445123;
  r.model_failure = true;
  r.infra = true;
  r.spec = "## Problem\nx\n";
  r.model = "sonnet";
  r.agent_pid = 4242;
  r.pgid = 4242;
  r.base_commit = "0123456789abcdef0123456789abcdef01234567";
  return r;
}

ReviewResult FullReviewResult() {
  ReviewResult r;
  r.attempt_id = 77;
  r.verdict = "reject";
  r.findings = {FullFinding(0), FullFinding(1)};
  r.checks = {FullCheck(0), FullCheck(1)};
  r.commit = "abc";
  r.error = "tests failed";
  r.log_error = "the review log stops after 10 bytes: writing 'x': No space left on device";
  return r;
}

Dispatch FullDispatch() {
  Dispatch d;
  d.attempt_id = 77;
  d.n = 2;
  d.task = FullTask();
  d.brief = "do the thing";
  d.history = {FullSummary(1)};
  d.workspace = "/work/ws";
  d.agent = FullAgent();
  d.log_path = "/work/log";
  return d;
}

Review FullReview() {
  Review r;
  r.attempt_id = 77;
  r.n = 2;
  r.task = FullTask();
  r.workspace = "/work/ws";
  r.verify = {"make test"};
  r.verify_timeout_ms = 999;
  r.critic = FullAgent();
  r.log_path = "/work/review.log";
  return r;
}

template <typename M>
void ExpectChildRoundTrip(const M& m) {
  std::string bytes = Encode(m, "id-1");
  auto decoded = DecodeChildMessage(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.error().ToString() << "\n" << bytes;
  const M* got = std::get_if<M>(&*decoded);
  ASSERT_NE(got, nullptr) << M::kType;
  EXPECT_EQ(*got, m) << bytes;
  EXPECT_EQ(TypeName(*decoded), M::kType);
  // The variant overload encodes the same thing.
  auto again = DecodeChildMessage(Encode(ChildMessage(m)));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(std::get<M>(*again), m);
}

template <typename M>
void ExpectSupervisorRoundTrip(const M& m) {
  std::string bytes = Encode(m);
  auto decoded = DecodeSupervisorMessage(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.error().ToString() << "\n" << bytes;
  const M* got = std::get_if<M>(&*decoded);
  ASSERT_NE(got, nullptr) << M::kType;
  EXPECT_EQ(*got, m) << bytes;
  EXPECT_EQ(TypeName(*decoded), M::kType);
  auto again = DecodeSupervisorMessage(Encode(SupervisorMessage(m)));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(std::get<M>(*again), m);
}

TEST(CodecRoundTrip, EveryChildMessage) {
  ExpectChildRoundTrip(FullHello());
  ExpectChildRoundTrip(FullHeartbeat());
  ExpectChildRoundTrip(Heartbeat{});  // no attempt
  ExpectChildRoundTrip(FullStarted());
  ExpectChildRoundTrip(FullResult());
  ExpectChildRoundTrip(FullReviewResult());
  ReviewResult no_commit = FullReviewResult();
  no_commit.commit.reset();
  ExpectChildRoundTrip(no_commit);
  ReviewResult critic_spent = FullReviewResult();
  critic_spent.cost_usd = 0.75;
  critic_spent.tokens_in = 300;
  critic_spent.tokens_out = 30;
  ExpectChildRoundTrip(critic_spent);
  ReviewResult out_of_space = FullReviewResult();
  out_of_space.verdict = "error";
  out_of_space.infra = true;
  ExpectChildRoundTrip(out_of_space);
  ReviewResult rate_limited = FullReviewResult();
  rate_limited.verdict = "error";
  rate_limited.rate_limited = true;
  rate_limited.rate_limit_reset_ms = 1'700'000'000'000;
  ExpectChildRoundTrip(rate_limited);
  ReviewResult stuck = FullReviewResult();
  stuck.verdict = "error";
  stuck.retryable = false;
  ExpectChildRoundTrip(stuck);
  EXPECT_EQ(json::parse(Encode(stuck))["retryable"], false);
}

// A review with no critic agent spent nothing: nothing about it on the wire.
TEST(CodecRoundTrip, AReviewResultWithoutSpendLeavesItsCostOff) {
  json j = json::parse(Encode(FullReviewResult()));
  EXPECT_FALSE(j.contains("cost_usd"));
  EXPECT_FALSE(j.contains("tokens_in"));
  EXPECT_FALSE(j.contains("tokens_out"));
  EXPECT_FALSE(j.contains("infra"));
  EXPECT_FALSE(j.contains("rate_limited"));
  EXPECT_FALSE(j.contains("rate_limit_reset_ms"));
  EXPECT_FALSE(j.contains("retryable"));
}

// The base commit a worker reports once (the task's first attempt) is off
// the wire otherwise, and a message without it (an older worker's) reads
// as none: the supervisor records nothing.
TEST(CodecRoundTrip, ABaseCommitIsOffTheWireWhenEmpty) {
  Started started = FullStarted();
  EXPECT_EQ(json::parse(Encode(started))["base_commit"], started.base_commit);
  started.base_commit.clear();
  EXPECT_FALSE(json::parse(Encode(started)).contains("base_commit"));
  ExpectChildRoundTrip(started);
  Result result = FullResult();
  EXPECT_EQ(json::parse(Encode(result))["base_commit"], result.base_commit);
  result.base_commit.clear();
  EXPECT_FALSE(json::parse(Encode(result)).contains("base_commit"));
  ExpectChildRoundTrip(result);
  Dispatch d = FullDispatch();
  EXPECT_EQ(json::parse(Encode(d))["task"]["base_commit"], d.task.base_commit);
  d.task.base_commit.clear();
  EXPECT_FALSE(json::parse(Encode(d))["task"].contains("base_commit"));
  ExpectSupervisorRoundTrip(d);
}

TEST(CodecRoundTrip, EverySupervisorMessage) {
  ExpectSupervisorRoundTrip(FullDispatch());
  ExpectSupervisorRoundTrip(FullReview());
  Review no_critic = FullReview();
  no_critic.critic.reset();
  ExpectSupervisorRoundTrip(no_critic);
  ExpectSupervisorRoundTrip(Cancel{77});
  ExpectSupervisorRoundTrip(Shutdown{30000});
}

// The child protocol leaves out the fields at their defaults (the task's,
// the agent's, a result's): the decoder restores them, including defaults
// that are not zero (exit_code -1, retryable, max_attempts 3, kind "work").
TEST(CodecWire, DefaultsAreLeftOutAndReadBack) {
  Dispatch d;
  d.attempt_id = 1;
  d.n = 1;
  d.task.id = "t1";
  d.workspace = "/w";
  d.agent.command = {"true"};
  d.log_path = "/l";
  json j = json::parse(Encode(d, "m1"));
  EXPECT_EQ(j["task"], json({{"id", "t1"}}));
  EXPECT_EQ(j["agent"], json({{"command", {"true"}}}));
  EXPECT_FALSE(j.contains("brief"));
  EXPECT_FALSE(j.contains("history"));
  ExpectSupervisorRoundTrip(d);

  Review r;
  r.attempt_id = 1;
  r.task.id = "t1";
  r.workspace = "/w";
  EXPECT_EQ(json::parse(Encode(r, "m2"))["task"], json({{"id", "t1"}}));
  ExpectSupervisorRoundTrip(r);

  Result result;
  result.attempt_id = 7;
  result.outcome = "passed";
  j = json::parse(Encode(result, "m3"));
  EXPECT_EQ(
      j,
      json({{"v", 1}, {"type", "result"}, {"id", "m3"}, {"attempt_id", 7}, {"outcome", "passed"}}));
  ExpectChildRoundTrip(result);
}

// A value that differs from a non-zero default is sent, zero included.
TEST(CodecWire, ZeroIsSentWhereTheDefaultIsNot) {
  Result result;
  result.attempt_id = 7;
  result.outcome = "failed";
  result.exit_code = 0;
  result.retryable = false;
  json j = json::parse(Encode(result, "m"));
  EXPECT_EQ(j["exit_code"], 0);
  EXPECT_EQ(j["retryable"], false);
  ExpectChildRoundTrip(result);

  Dispatch d;
  d.attempt_id = 1;
  d.task.id = "t1";
  d.task.kind = "";
  d.task.max_attempts = 0;
  d.task.state = TaskState::kRunning;
  d.workspace = "/w";
  d.agent.command = {"true"};
  d.agent.profile = "";
  d.agent.timeout_ms = 0;
  j = json::parse(Encode(d, "m"));
  EXPECT_EQ(j["task"]["kind"], "");
  EXPECT_EQ(j["task"]["max_attempts"], 0);
  EXPECT_EQ(j["task"]["state"], "running");
  EXPECT_EQ(j["agent"]["profile"], "");
  EXPECT_EQ(j["agent"]["timeout_ms"], 0);
  ExpectSupervisorRoundTrip(d);
}

TEST(CodecEnvelope, HasVersionTypeAndId) {
  json j = json::parse(Encode(FullHello(), "abc"));
  EXPECT_EQ(j["v"], 1);
  EXPECT_EQ(j["type"], "hello");
  EXPECT_EQ(j["id"], "abc");
  EXPECT_EQ(j["pid"], 4242);
  EXPECT_EQ(j["role"], "worker");
}

TEST(CodecEnvelope, MessageIdsAreUnique) {
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) ids.insert(NextMessageId());
  EXPECT_EQ(ids.size(), 1000u);
  EXPECT_THAT(NextMessageId(), HasSubstr(std::to_string(getpid()) + "-"));
}

forge::Error ChildError(const std::string& bytes) {
  auto r = DecodeChildMessage(bytes);
  EXPECT_FALSE(r.ok()) << bytes;
  if (r.ok()) return {};
  EXPECT_EQ(r.error().code, ErrorCode::kDecode);
  return r.error();
}

forge::Error SupervisorError(const std::string& bytes) {
  auto r = DecodeSupervisorMessage(bytes);
  EXPECT_FALSE(r.ok()) << bytes;
  if (r.ok()) return {};
  EXPECT_EQ(r.error().code, ErrorCode::kDecode);
  return r.error();
}

TEST(CodecErrors, MissingRequiredFieldIsNamed) {
  EXPECT_EQ(ChildError(R"({"v":1,"type":"hello","role":"worker","version":"1"})").message,
            "hello: field 'pid' is missing");
  EXPECT_EQ(ChildError(R"({"v":1,"type":"started","attempt_id":1,"agent_pid":2})").message,
            "started: field 'pgid' is missing");
  EXPECT_EQ(SupervisorError(R"({"v":1,"type":"cancel"})").message,
            "cancel: field 'attempt_id' is missing");
}

TEST(CodecErrors, MistypedFieldIsNamed) {
  auto e = ChildError(R"({"v":1,"type":"hello","role":"worker","pid":"x","version":"1"})");
  EXPECT_EQ(e.message, "hello: field 'pid' must be an integer, got string");
  e = ChildError(R"({"v":1,"type":"result","attempt_id":1,"outcome":"failed","cost_usd":"1"})");
  EXPECT_EQ(e.message, "result: field 'cost_usd' must be a number, got string");
  e = ChildError(R"({"v":1,"type":"result","attempt_id":1,"outcome":"failed","infra":"yes"})");
  EXPECT_EQ(e.message, "result: field 'infra' must be a boolean, got string");
  e = ChildError(R"({"v":1,"type":"result","attempt_id":1,"outcome":"passed","pgid":1.5})");
  EXPECT_EQ(e.message, "result: field 'pgid' must be an integer, got number");
  e = ChildError(R"({"v":1,"type":"heartbeat","attempt_id":true})");
  EXPECT_THAT(e.message, HasSubstr("field 'attempt_id' must be an integer"));
}

TEST(CodecErrors, NestedFieldPath) {
  json j = json::parse(Encode(FullDispatch()));
  j["task"].erase("id");
  EXPECT_EQ(SupervisorError(j.dump()).message, "dispatch: field 'task.id' is missing");

  j = json::parse(Encode(FullDispatch()));
  j["agent"]["env"]["LANG"] = 5;
  EXPECT_EQ(SupervisorError(j.dump()).message,
            "dispatch: field 'agent.env.LANG' must be a string, got number");

  j = json::parse(Encode(FullReviewResult()));
  j["findings"][1].erase("message");
  EXPECT_EQ(ChildError(j.dump()).message, "review_result: field 'findings.1.message' is missing");

  j = json::parse(Encode(FullDispatch()));
  j["task"]["state"] = "sleeping";
  EXPECT_THAT(SupervisorError(j.dump()).message,
              HasSubstr("dispatch: field 'task.state' must be one of pending"));

  j = json::parse(Encode(FullDispatch()));
  j["task"]["created_at"] = "yesterday";
  EXPECT_THAT(SupervisorError(j.dump()).message,
              HasSubstr("dispatch: field 'task.created_at' is not an RFC 3339 time"));
}

TEST(CodecErrors, UnknownFieldsAreIgnored) {
  json j = json::parse(Encode(FullStarted()));
  j["future_field"] = {{"x", 1}};
  j["another"] = nullptr;
  auto r = DecodeChildMessage(j.dump());
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(std::get<Started>(*r), FullStarted());
}

TEST(CodecErrors, Envelope) {
  EXPECT_EQ(ChildError(R"({"type":"heartbeat"})").message, "envelope: field 'v' is missing");
  EXPECT_EQ(ChildError(R"({"v":"1","type":"heartbeat"})").message,
            "envelope: field 'v' must be an integer, got string");
  EXPECT_EQ(ChildError(R"({"v":1})").message, "envelope: field 'type' is missing");
  EXPECT_EQ(ChildError(R"({"v":2,"type":"heartbeat"})").message,
            "unsupported protocol version 2 (this build speaks 1)");
  EXPECT_THAT(ChildError(R"({"v":1,"type":"bogus"})").message,
              HasSubstr("unknown child message type 'bogus' (expected one of hello, heartbeat"));
  EXPECT_EQ(ChildError(R"({"v":1,"type":"dispatch"})").message,
            "'dispatch' is not a child message");
  EXPECT_EQ(SupervisorError(R"({"v":1,"type":"hello"})").message,
            "'hello' is not a supervisor message");
}

TEST(CodecErrors, MalformedJson) {
  EXPECT_THAT(ChildError("{\"v\":1,").message, HasSubstr("malformed JSON"));
  EXPECT_THAT(ChildError("").message, HasSubstr("malformed JSON"));
  EXPECT_EQ(ChildError("[1,2]").message, "message must be a JSON object, got array");
  EXPECT_EQ(ChildError("42").message, "message must be a JSON object, got number");
  EXPECT_THAT(ChildError("{\"v\":1,\"type\":\"hello\",\"role\":\"\xff\"}").message,
              HasSubstr("malformed JSON"));
}

TEST(CodecErrors, OversizeRefused) {
  std::string big = R"({"v":1,"type":"heartbeat","pad":")";
  big += std::string(kMaxMessageBytes, 'x');
  big += "\"}";
  auto e = ChildError(big);
  EXPECT_EQ(e.message, "message of " + std::to_string(big.size()) +
                           " bytes exceeds the limit of 4194304 bytes");
  // Just under the limit is fine.
  std::string ok = R"({"v":1,"type":"heartbeat","pad":")";
  ok += std::string(kMaxMessageBytes - ok.size() - 2, 'x');
  ok += "\"}";
  ASSERT_EQ(ok.size(), kMaxMessageBytes);
  EXPECT_TRUE(DecodeChildMessage(ok).ok());
}

TEST(CodecErrors, DeepNestingRefused) {
  std::string deep = R"({"v":1,"type":"heartbeat","x":)" + std::string(100000, '[') +
                     std::string(100000, ']') + "}";
  EXPECT_THAT(ChildError(deep).message, HasSubstr("nests deeper than"));
  // Brackets inside strings do not count.
  std::string in_string =
      R"({"v":1,"type":"heartbeat","x":")" + std::string(1000, '[') + R"(\"[["})";
  EXPECT_TRUE(DecodeChildMessage(in_string).ok());
}

// The limit is on depth, not on how many brackets a message has: counting
// them is only the scan's shortcut (codec.cc).
TEST(CodecErrors, NestingLimitIsTheDepth) {
  auto nested = [](int depth) {
    return R"({"v":1,"type":"heartbeat","x":)" + std::string(depth - 1, '[') +
           std::string(depth - 1, ']') + "}";
  };
  EXPECT_TRUE(DecodeChildMessage(nested(kMaxJsonDepth)).ok());
  EXPECT_THAT(ChildError(nested(kMaxJsonDepth + 1)).message, HasSubstr("nests deeper than"));
  std::string wide = R"({"v":1,"type":"heartbeat","x":[)";
  for (int i = 0; i < 3 * kMaxJsonDepth; ++i) wide += i == 0 ? "{}" : ",[]";
  wide += "]}";
  EXPECT_TRUE(DecodeChildMessage(wide).ok());
}

TEST(CodecEncode, InvalidUtf8IsReplacedNotThrown) {
  Result r = FullResult();
  r.output_tail = "cut mid-char \xe2\x82";
  std::string bytes;
  ASSERT_NO_THROW(bytes = Encode(r));
  auto decoded = DecodeChildMessage(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.error().ToString();
  EXPECT_THAT(std::get<Result>(*decoded).output_tail, HasSubstr("cut mid-char"));
}

// Garbage must never crash or throw out of the decoder (run under ASan too).
TEST(CodecFuzz, RandomBytesNeverCrash) {
  std::mt19937 rng(12345);
  const std::string alphabet = "{}[]\":,0123456789.-+eEtrufalsn \\/abcvtype\x01\xff\xc3";
  int decoded = 0;
  for (int i = 0; i < SanitizerScaledRounds(100000); ++i) {
    size_t len = rng() % 64;
    std::string s(len, '\0');
    bool structured = rng() % 2;
    for (auto& c : s) {
      c = structured ? alphabet[rng() % alphabet.size()] : static_cast<char>(rng() % 256);
    }
    auto a = DecodeChildMessage(s);
    auto b = DecodeSupervisorMessage(s);
    if (a.ok() || b.ok()) ++decoded;
    if (!a.ok()) {
      EXPECT_EQ(a.error().code, ErrorCode::kDecode);
    }
  }
  SUCCEED() << decoded << " random inputs happened to decode";
}

std::string Mutate(std::string s, std::mt19937& rng) {
  int edits = 1 + static_cast<int>(rng() % 4);
  const std::string tokens[] = {"\"",    "{",    "}",       "[",     "]",
                                ",",     ":",    "null",    "1e999", "-1",
                                "\"x\"", "true", "\\u0000", "\\",    "99999999999999999999"};
  for (int e = 0; e < edits && !s.empty(); ++e) {
    size_t pos = rng() % s.size();
    switch (rng() % 5) {
      case 0:
        s[pos] = static_cast<char>(rng() % 256);
        break;
      case 1:
        s.erase(pos, 1 + rng() % 8);
        break;
      case 2:
        s.insert(pos, tokens[rng() % std::size(tokens)]);
        break;
      case 3:
        s.resize(pos);
        break;
      case 4:
        s.insert(pos, s.substr(rng() % s.size(), rng() % 16));
        break;
    }
  }
  return s;
}

TEST(CodecFuzz, MutatedValidMessagesNeverCrash) {
  std::vector<std::string> seeds = {
      Encode(FullHello()),  Encode(FullHeartbeat()),    Encode(FullStarted()),
      Encode(FullResult()), Encode(FullReviewResult()), Encode(FullDispatch()),
      Encode(FullReview()), Encode(Cancel{1}),          Encode(Shutdown{2}),
  };
  std::mt19937 rng(777);
  int ok = 0;
  for (int i = 0; i < SanitizerScaledRounds(20000); ++i) {
    std::string m = Mutate(seeds[rng() % seeds.size()], rng);
    auto a = DecodeChildMessage(m);
    auto b = DecodeSupervisorMessage(m);
    // Whatever decodes must re-encode and decode to the same value.
    if (a.ok()) {
      ++ok;
      auto again = DecodeChildMessage(Encode(*a));
      ASSERT_TRUE(again.ok()) << m;
    }
    if (b.ok()) {
      ++ok;
      auto again = DecodeSupervisorMessage(Encode(*b));
      ASSERT_TRUE(again.ok()) << m;
    }
  }
  EXPECT_GT(ok, 0);  // some mutations (e.g. in string contents) stay valid
}

}  // namespace
}  // namespace forge::proto
