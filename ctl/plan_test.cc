#include "ctl/plan.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "supervisor/store/submit_check.h"

namespace forge::ctl {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class PlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/forge_plan_test.XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path) << text;
    return path;
  }

  // The error message of the plan `text` (as file "p.yaml" in the temp dir).
  std::string ErrorOf(const std::string& text) {
    plan_ = dir_ + "/p.yaml";
    auto tasks = ParsePlan(text, plan_);
    EXPECT_FALSE(tasks.ok()) << "parsed without error:\n" << text;
    if (tasks.ok()) return "";
    EXPECT_EQ(tasks.error().code, ErrorCode::kInvalid);
    return tasks.error().message;
  }

  std::vector<proto::SubmitTask> Parse(const std::string& text) {
    plan_ = dir_ + "/p.yaml";
    auto tasks = ParsePlan(text, plan_);
    EXPECT_TRUE(tasks.ok()) << tasks.error().message;
    return tasks.ok() ? *tasks : std::vector<proto::SubmitTask>{};
  }

  // "DIR/p.yaml:LINE:COL: message"
  std::string At(int line, int column, const std::string& message) {
    return dir_ + "/p.yaml:" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
  }

  std::string dir_;
  std::string plan_;
};

TEST_F(PlanTest, ReadsEveryKeyInFileOrder) {
  Write("briefs/b.md", "Do the second thing.\n");
  auto tasks = Parse(R"(
tasks:
  - id: first
    title: First task
    brief: Do the first thing.
    repo: /src/repo
    base: main
    verify: [make test, "./check.sh --all"]
    priority: 5
    max_attempts: 2
    needs_approval: true
    allow_empty: true
    agent: codex
    model: o3
    env: {FOO: bar, N: 1}
  - id: second
    title: Second task
    brief_file: briefs/b.md
    depends_on: [first, t42]
    priority: -3
)");
  ASSERT_EQ(tasks.size(), 2u);
  const proto::SubmitTask& a = tasks[0];
  EXPECT_EQ(a.id, "first");
  EXPECT_EQ(a.title, "First task");
  EXPECT_EQ(a.brief, "Do the first thing.");
  EXPECT_EQ(a.kind, "work");
  EXPECT_EQ(a.repo, "/src/repo");
  EXPECT_EQ(a.base, "main");
  EXPECT_EQ(a.verify, (std::vector<std::string>{"make test", "./check.sh --all"}));
  EXPECT_EQ(a.priority, 5);
  EXPECT_EQ(a.max_attempts, 2);
  EXPECT_TRUE(a.needs_approval);
  EXPECT_TRUE(a.allow_empty);
  EXPECT_EQ(a.agent, "codex");
  EXPECT_EQ(a.model, "o3");
  EXPECT_EQ(a.env, (std::map<std::string, std::string>{{"FOO", "bar"}, {"N", "1"}}));
  EXPECT_TRUE(a.depends_on.empty());

  const proto::SubmitTask& b = tasks[1];
  EXPECT_EQ(b.id, "second");
  EXPECT_EQ(b.brief, "Do the second thing.\n");
  EXPECT_EQ(b.depends_on, (std::vector<std::string>{"first", "t42"}));
  EXPECT_EQ(b.priority, -3);
  EXPECT_FALSE(b.max_attempts.has_value());
  EXPECT_FALSE(b.needs_approval);
  EXPECT_TRUE(b.agent.empty());
}

TEST_F(PlanTest, JsonIsYamlToo) {
  auto tasks =
      Parse(R"({"tasks":[{"id":"a","title":"A"},{"id":"b","title":"B","depends_on":["a"]}]})");
  ASSERT_EQ(tasks.size(), 2u);
  EXPECT_EQ(tasks[1].depends_on, std::vector<std::string>{"a"});
  EXPECT_EQ(tasks[0].brief, "A") << "no brief: the title is the brief, as for submit's flags";
}

TEST_F(PlanTest, LoadPlanReadsBriefFilesBesideThePlan) {
  Write("sub/brief.md", "from the plan's directory");
  std::string plan =
      Write("sub/plan.yaml", "tasks:\n  - {id: a, title: A, brief_file: brief.md}\n");
  auto tasks = LoadPlan(plan);
  ASSERT_TRUE(tasks.ok()) << tasks.error().message;
  ASSERT_EQ(tasks->size(), 1u);
  EXPECT_EQ((*tasks)[0].brief, "from the plan's directory");
}

TEST_F(PlanTest, MissingPlanFileIsNotFound) {
  auto tasks = LoadPlan(dir_ + "/none.yaml");
  ASSERT_FALSE(tasks.ok());
  EXPECT_EQ(tasks.error().code, ErrorCode::kNotFound);
  EXPECT_THAT(tasks.error().message, HasSubstr(dir_ + "/none.yaml"));
}

TEST_F(PlanTest, MissingBriefFileNamesThePlanLine) {
  EXPECT_EQ(ErrorOf("tasks:\n  - id: a\n    title: A\n    brief_file: nope.md\n"),
            At(4, 17, "key 'tasks[0].brief_file': " + dir_ + "/nope.md: not found"));
}

TEST_F(PlanTest, ABriefFileTooBigNamesThePlanLine) {
  Write("big.md", std::string(store::kMaxBriefBytes + 1, 'b'));
  EXPECT_EQ(ErrorOf("tasks:\n  - id: a\n    title: A\n    brief_file: big.md\n"),
            At(4, 17,
               "key 'tasks[0].brief_file': " + dir_ +
                   "/big.md is 2097153 bytes as sent, more "
                   "than the 2097152 a brief may be"));
}

// What the store would refuse is the plan's fault, said at its line (exit 2),
// not a refusal by the supervisor (exit 1) after the plan was sent.
TEST_F(PlanTest, WhatTheStoreRefusesNamesThePlanLine) {
  const std::string big(store::kMaxBriefBytes + 1, 'b');
  EXPECT_EQ(ErrorOf("tasks:\n  - id: a\n    title: A\n    brief: " + big + "\n"),
            At(4, 12,
               "key 'tasks[0].brief': 2097153 bytes as sent, more than the 2097152 a brief "
               "may be"));
  EXPECT_EQ(ErrorOf("tasks:\n  - id: a\n    title: \"  \"\n"),
            At(3, 12, "key 'tasks[0].title': must not be empty"));
  EXPECT_EQ(ErrorOf("tasks:\n  - id: a\n    title: A\n    verify: [make, \" \"]\n"),
            At(4, 20, "key 'tasks[0].verify[1]': a check must not be blank"));
  // A task no dispatch could carry (nor one submit): named, exit 2, not a
  // transport error after the plan was read.
  std::string checks;
  for (int i = 0; i < 11; ++i) checks += "      - echo " + std::string(100'000, 'x') + "\n";
  EXPECT_EQ(ErrorOf("tasks:\n  - id: a\n    title: A\n    verify:\n" + checks),
            plan_ +
                ": task 'a': its text besides the brief is 1100061 bytes as sent (title, verify, "
                "env, depends_on, ...), more than the 1048576 a task may have");
  EXPECT_EQ(ErrorOf("tasks:\n  - id: a\n    title: A\n    base: main\n"),
            At(4, 11, "key 'tasks[0].base': needs a repo (key 'tasks[0].repo')"));
}

TEST_F(PlanTest, BriefAndBriefFileTogether) {
  Write("b.md", "x");
  EXPECT_EQ(ErrorOf("tasks:\n  - {id: a, title: A, brief: x, brief_file: b.md}\n"),
            At(2, 45, "key 'tasks[0].brief_file': give brief or brief_file, not both"));
}

TEST_F(PlanTest, UnknownKeysAndWrongTypes) {
  EXPECT_EQ(ErrorOf("tasks:\n  - id: a\n    titel: A\n"),
            At(3, 5, "unknown key 'tasks[0].titel' (did you mean 'title'?)") + "\n" +
                At(2, 5, "key 'tasks[0].title': required"));
  EXPECT_EQ(ErrorOf("tasks:\n  - {id: a, title: A, verify: make test}\n"),
            At(2, 31, "key 'tasks[0].verify': must be a list of strings, got 'make test'"));
  EXPECT_EQ(ErrorOf("tasks:\n  - {id: a, title: A, priority: high}\n"),
            At(2, 33, "key 'tasks[0].priority': must be an integer, got 'high'"));
  EXPECT_EQ(ErrorOf("tasks:\n  - {id: a, title: A, priority: 3000000000}\n"),
            At(2, 33,
               "key 'tasks[0].priority': must be an integer from -2147483648 to 2147483647, got "
               "'3000000000'"));
  EXPECT_EQ(ErrorOf("tasks:\n  - {id: a, title: A, max_attempts: 0}\n"),
            At(2, 37, "key 'tasks[0].max_attempts': must be a positive integer, got '0'"));
  EXPECT_EQ(ErrorOf("tasks:\n  - {id: a, title: A, needs_approval: maybe}\n"),
            At(2, 39, "key 'tasks[0].needs_approval': must be true or false, got 'maybe'"));
  EXPECT_EQ(ErrorOf("tasks:\n  - {id: a, title: A, agent: gpt}\n"),
            At(2, 30, "key 'tasks[0].agent': must be one of claude, codex or command, got 'gpt'"));
  EXPECT_EQ(ErrorOf("tasks:\n  - {id: a, title: A, env: [X]}\n"),
            At(2, 28, "key 'tasks[0].env': must be a map of environment variables, got a list"));
  EXPECT_EQ(ErrorOf("tasks:\n  - just a title\n"),
            At(2, 5, "key 'tasks[0]': must be a map of task keys, got 'just a title'"));
  EXPECT_EQ(ErrorOf("tasks: {id: a}\n"),
            At(1, 8, "key 'tasks': must be a list of tasks, got a map"));
  EXPECT_EQ(ErrorOf("- {id: a, title: A}\n"),
            At(1, 1, "the document must be a map of keys, got a list"));
  EXPECT_EQ(ErrorOf("task: []\n"), At(1, 1, "unknown key 'task' (did you mean 'tasks'?)"));
}

TEST_F(PlanTest, EmptyPlanNeedsTasks) {
  EXPECT_EQ(ErrorOf(""), dir_ + "/p.yaml: key 'tasks': required (the plan is {tasks: [...]})");
  EXPECT_TRUE(Parse("tasks: []\n").empty());
}

TEST_F(PlanTest, SyntaxErrorNamesItsLine) {
  EXPECT_THAT(ErrorOf("tasks:\n  - {id: a, title: A\n"),
              ::testing::MatchesRegex(".*/p\\.yaml:3:[0-9]+: YAML syntax error: .*"));
}

TEST_F(PlanTest, MissingOrEmptyIdAndTitle) {
  EXPECT_EQ(ErrorOf("tasks:\n  - title: A\n  - id: \"\"\n    title: \"\"\n"),
            At(2, 5, "key 'tasks[0].id': required") + "\n" +
                At(3, 9, "key 'tasks[1].id': must not be empty") + "\n" +
                At(4, 12, "key 'tasks[1].title': must not be empty"));
}

TEST_F(PlanTest, DuplicateIdNamesBothLines) {
  EXPECT_EQ(
      ErrorOf("tasks:\n  - {id: a, title: A}\n  - {id: b, title: B}\n  - {id: a, title: C}\n"),
      At(4, 10, "duplicate task id 'a' (first at " + dir_ + "/p.yaml:2:10)"));
}

TEST_F(PlanTest, UnknownDependency) {
  EXPECT_EQ(ErrorOf("tasks:\n  - {id: a, title: A, depends_on: [b, t7, tx, a2]}\n  - {id: a2, "
                    "title: A2}\n"),
            At(2, 36,
               "key 'tasks[0].depends_on[0]': 'b' is neither a task of this plan nor an "
               "existing task id (t<number>)") +
                "\n" +
                At(2, 43,
                   "key 'tasks[0].depends_on[2]': 'tx' is neither a task of this plan nor an "
                   "existing task id (t<number>)"));
}

TEST_F(PlanTest, CyclesAreNamedInOrder) {
  EXPECT_EQ(ErrorOf(R"(tasks:
  - {id: a, title: A, depends_on: [b]}
  - {id: b, title: B, depends_on: [c]}
  - {id: c, title: C, depends_on: [a]}
  - {id: d, title: D, depends_on: [a]}
)"),
            At(2, 10, "dependency cycle: a -> b -> c -> a"));
  EXPECT_EQ(
      ErrorOf("tasks:\n  - {id: x, title: X}\n  - {id: self, title: S, depends_on: [self]}\n"),
      At(3, 10, "dependency cycle: self -> self"));
  // A diamond is not a cycle.
  EXPECT_EQ(Parse(R"(tasks:
  - {id: top, title: T, depends_on: [l, r]}
  - {id: l, title: L, depends_on: [base]}
  - {id: r, title: R, depends_on: [base]}
  - {id: base, title: B}
)")
                .size(),
            4u);
}

// A long chain: no deep recursion, and a cycle through all of it is named,
// shortened in the middle.
TEST_F(PlanTest, LongChains) {
  const int n = 50000;
  std::string text = "tasks:\n";
  for (int i = 0; i < n; ++i) {
    text += "  - {id: k" + std::to_string(i) + ", title: T";
    if (i > 0) text += ", depends_on: [k" + std::to_string(i - 1) + "]";
    text += "}\n";
  }
  auto tasks = ParsePlan(text, "p.yaml");
  ASSERT_TRUE(tasks.ok()) << tasks.error().message;
  ASSERT_EQ(tasks->size(), static_cast<size_t>(n));
  EXPECT_EQ(tasks->back().depends_on, std::vector<std::string>{"k49998"});

  text.replace(text.find("{id: k0, title: T}"), 18, "{id: k0, title: T, depends_on: [k49999]}");
  tasks = ParsePlan(text, "p.yaml");
  ASSERT_FALSE(tasks.ok());
  EXPECT_EQ(tasks.error().message,
            "p.yaml:2:10: dependency cycle: k0 -> k49999 -> k49998 -> k49997 -> k49996 -> k49995 "
            "-> k49994 -> k49993 -> k49992 -> k49991 -> ... (49989 more) -> k1 -> k0");
}

TEST_F(PlanTest, CollectsEveryProblem) {
  std::string message = ErrorOf(R"(tasks:
  - id: a
    title: A
    depends_on: [b]
    priorty: 1
  - id: b
    depends_on: [a]
  - id: a
    title: again
)");
  EXPECT_EQ(message, At(5, 5, "unknown key 'tasks[0].priorty' (did you mean 'priority'?)") + "\n" +
                         At(6, 5, "key 'tasks[1].title': required") + "\n" +
                         At(8, 9, "duplicate task id 'a' (first at " + dir_ + "/p.yaml:2:9)") +
                         "\n" + At(2, 9, "dependency cycle: a -> b -> a"));
}

TEST_F(PlanTest, ExamplePlanLoads) {
  fs::path example = fs::path(__FILE__).parent_path().parent_path() / "examples" / "plan.yaml";
  auto tasks = LoadPlan(example.string());
  ASSERT_TRUE(tasks.ok()) << tasks.error().message;
  ASSERT_EQ(tasks->size(), 3u);
  EXPECT_THAT((*tasks)[1].brief, HasSubstr("limits"));
  EXPECT_EQ((*tasks)[2].depends_on, (std::vector<std::string>{"parser", "docs"}));
}

// JSON carries only UTF-8: text in another encoding is refused at its line,
// not sent (nlohmann's dump() threw on it, and forge-ctl aborted).
TEST_F(PlanTest, TextThatIsNotUtf8NamesItsLine) {
  EXPECT_EQ(ErrorOf("tasks:\n  - id: a\n    title: caf\xe9\n"),
            At(3, 12, "key 'tasks[0].title': 'caf\\xe9' is not UTF-8 (byte 0xe9 at character 4)"));
  Write("latin1.md", "d\xe9j\xe0 vu\n");
  EXPECT_EQ(ErrorOf("tasks:\n  - id: a\n    title: A\n    brief_file: latin1.md\n"),
            At(4, 17,
               "key 'tasks[0].brief_file': " + dir_ +
                   "/latin1.md is not UTF-8 (byte 0xe9 at line 1, column 2); save it as UTF-8"));
  EXPECT_EQ(
      ErrorOf("tasks:\n  - id: a\n    title: A\n    verify: [make, \"m\xe9\"]\n"),
      At(4, 20, "key 'tasks[0].verify[1]': 'm\\xe9' is not UTF-8 (byte 0xe9 at character 2)"));
  EXPECT_EQ(ErrorOf("tasks:\n  - id: a\n    title: A\n    env: {X: \"\xff\"}\n"),
            At(4, 14, "key 'tasks[0].env.X': '\\xff' is not UTF-8 (byte 0xff at character 1)"));
  EXPECT_THAT(ErrorOf("tasks:\n  - id: a\n    title: A\n    brief: |\n      one\n      tw\x93o\n"),
              HasSubstr(At(4, 12,
                           "key 'tasks[0].brief': 'one\\ntw\\x93o\\n' is not UTF-8 (byte 0x93 "
                           "at line 2, column 3)")));
  EXPECT_THAT(ErrorOf("tasks:\n  - {id: \"a\xff\", title: A, repo: \"/src/\xe9\", "
                      "base: \"\xe9\", model: \"\xe9\", depends_on: [\"\xe9\"]}\n"),
              ::testing::AllOf(HasSubstr("key 'tasks[0].id': 'a\\xff'"),
                               HasSubstr("key 'tasks[0].repo': '/src/\\xe9'"),
                               HasSubstr("key 'tasks[0].base'"), HasSubstr("key 'tasks[0].model'"),
                               HasSubstr("key 'tasks[0].depends_on[0]'")));
}

// A NUL byte ("\0" in YAML, "\u0000" in JSON) would cut a check short where
// the supervisor passes it on (`true\0; false` ran `true` and passed): refused
// at its line, as the store refuses it, whatever the key.
TEST_F(PlanTest, ANulByteNamesItsLine) {
  EXPECT_EQ(ErrorOf("tasks:\n  - id: a\n    title: A\n    verify: [\"true\\0; false\"]\n"),
            At(4, 14, "key 'tasks[0].verify[0]': contains a NUL byte"));
  EXPECT_EQ(ErrorOf(R"({"tasks":[{"id":"a","title":"A","verify":["true\u0000; false"]}]})"),
            At(1, 43, "key 'tasks[0].verify[0]': contains a NUL byte"));
  EXPECT_EQ(ErrorOf("tasks:\n  - {id: a, title: A, env: {X: \"a\\0b\"}}\n"),
            At(2, 32, "key 'tasks[0].env.X': contains a NUL byte"));
  EXPECT_EQ(ErrorOf("tasks:\n  - {id: a, title: A, repo: \"/r\\0\", model: \"m\\0\"}\n"),
            At(2, 29, "key 'tasks[0].repo': contains a NUL byte") + "\n" +
                At(2, 44, "key 'tasks[0].model': contains a NUL byte"));
  // Raw, not escaped: no YAML text (yaml-cpp gave "illegal map value").
  EXPECT_EQ(ErrorOf(std::string("tasks:\n  - {id: a, title: A\0}\n", 30)),
            At(2, 21,
               "a NUL byte, which no YAML text has (a binary file, or a file saved as "
               "UTF-16?)"));
  Write("nul.md", std::string("half\0half", 9));
  EXPECT_EQ(ErrorOf("tasks:\n  - id: a\n    title: A\n    brief_file: nul.md\n"),
            At(4, 17,
               "key 'tasks[0].brief_file': " + dir_ +
                   "/nul.md contains a NUL byte (byte 0x00 at character 5)"));
}

// Whatever a plan's bytes, it loads and its request encodes, or it is
// refused with a located line per problem.
TEST_F(PlanTest, APlanThatLoadsCanBeEncoded) {
  const std::string base = R"(tasks:
  - {id: a, title: "A b", brief: "c d", depends_on: [b], verify: [make], model: m}
  - {id: b, title: B, env: {X: "y z"}, repo: "", base: ""}
)";
  std::mt19937 rng(11);
  int loaded = 0, refused = 0;
  for (int i = 0; i < 2000; ++i) {
    std::string text = base;
    for (int edits = 1 + static_cast<int>(rng() % 3); edits > 0; --edits) {
      // A byte of another encoding, or a UTF-8 character ("é").
      std::string insert = rng() % 2 ? std::string(1, static_cast<char>(0x80 + rng() % 128))
                                     : std::string("\xc3\xa9");
      text.insert(rng() % text.size(), insert);
    }
    auto tasks = ParsePlan(text, "p.yaml");
    if (!tasks.ok()) {
      ++refused;
      std::istringstream lines(tasks.error().message);
      for (std::string line; std::getline(lines, line);) {
        ASSERT_THAT(line, ::testing::StartsWith("p.yaml")) << tasks.error().message;
      }
      continue;
    }
    ++loaded;
    proto::SubmitRequest request;
    request.tasks = *tasks;
    EXPECT_NO_THROW((void)proto::json(request).dump()) << text;
  }
  EXPECT_GT(loaded, 0);
  EXPECT_GT(refused, 0);
}

// Mutations of a valid plan either parse or give one located line per problem.
TEST_F(PlanTest, MangledInputNeverCrashes) {
  const std::string base = R"(tasks:
  - {id: a, title: A, depends_on: [b, c], priority: 1, verify: [make]}
  - {id: b, title: B, depends_on: [c], env: {X: y}, agent: codex}
  - {id: c, title: C, depends_on: [t1], needs_approval: true, max_attempts: 2}
)";
  const std::string special = ":-[]{}#&*!|>'\",?~ \nabct1";
  std::mt19937 rng(7);
  int failures = 0;
  for (int i = 0; i < 1500; ++i) {
    std::string text = base;
    for (int edits = 1 + static_cast<int>(rng() % 4); edits > 0; --edits) {
      size_t pos = rng() % text.size();
      char c = special[rng() % special.size()];
      if (rng() % 2) {
        text[pos] = c;
      } else {
        text.insert(pos, 1, c);
      }
    }
    auto tasks = ParsePlan(text, "p.yaml");
    if (tasks.ok()) continue;
    ++failures;
    std::istringstream lines(tasks.error().message);
    for (std::string line; std::getline(lines, line);) {
      ASSERT_THAT(line, ::testing::StartsWith("p.yaml")) << tasks.error().message;
    }
  }
  EXPECT_GT(failures, 0);
}

}  // namespace
}  // namespace forge::ctl
