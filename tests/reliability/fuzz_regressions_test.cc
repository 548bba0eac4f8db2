// Replays every committed fuzz input (fuzz/corpus/<target>/* and
// fuzz/regressions/<target>/*) through the same entry points the libFuzzer
// targets use, with the normal (GCC) build. An input that once crashed a
// parser stays here forever; each entry abort()s when its properties break.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz/entries.h"

namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kTargets = {"codec",   "plan",         "config",
                                           "control", "agent_output", "critic"};

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Every regular file under fuzz/<kind>/<target>/.
std::vector<fs::path> Inputs(const std::string& kind, const std::string& target) {
  std::vector<fs::path> out;
  fs::path dir = fs::path(FORGE_SOURCE_DIR) / "fuzz" / kind / target;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_regular_file()) out.push_back(e.path());
  }
  return out;
}

class FuzzReplay : public ::testing::TestWithParam<std::string> {};

TEST_P(FuzzReplay, CorpusAndRegressionsRunClean) {
  auto entry = forge::fuzz::EntryByName(GetParam());
  ASSERT_NE(entry, nullptr) << GetParam();
  auto corpus = Inputs("corpus", GetParam());
  // The committed seeds are what the fuzzer starts from: a target without any is a mistake.
  EXPECT_GE(corpus.size(), 3u) << "fuzz/corpus/" << GetParam() << " needs seed inputs";
  auto inputs = corpus;
  for (auto& p : Inputs("regressions", GetParam())) inputs.push_back(p);
  for (const auto& p : inputs) {
    SCOPED_TRACE(p.string());
    entry(ReadAll(p));  // aborts (fails the test binary) on a broken property
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, FuzzReplay, ::testing::ValuesIn(kTargets),
                         [](const auto& info) { return info.param; });

TEST(FuzzEntries, UnknownNameIsNull) {
  EXPECT_EQ(forge::fuzz::EntryByName("nope"), nullptr);
}

// The hand-picked edge cases every parser must survive, whatever the corpus holds.
TEST(FuzzEntries, EdgeInputs) {
  const std::vector<std::string> edges = {
      "",
      std::string(1, '\0'),
      "{",
      "[]",
      "null",
      std::string(5000, '['),
      std::string(5000, '{'),
      "\xff\xfe\xfd",
      "tasks:\n  - &a [*a]\n",
      "- - - - - -",
      "{\"v\":1,\"type\":\"hello\",\"role\":\"worker\",\"pid\":1e400,\"version\":\"x\"}",
      "{\"v\":1,\"cmd\":\"submit\",\"tasks\":[{\"title\":\"\\u0000\",\"brief\":\"\\ud800\"}]}",
      "{\"overall\":\"approve\",\"findings\":[{\"severity\":\"sev1\",\"line\":-9223372036854775808}"
      "]}",
  };
  for (const auto& name : kTargets) {
    for (const auto& e : edges) {
      SCOPED_TRACE(name + ": " + e.substr(0, 40));
      forge::fuzz::EntryByName(name)(e);
    }
  }
}

}  // namespace
