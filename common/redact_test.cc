#include "common/redact.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace forge {
namespace {

TEST(Redact, SecretNames) {
  for (const char* name : {"API_KEY", "anthropic_api_key", "GITHUB_TOKEN", "Client_Secret",
                           "DB_PASSWORD", "SSH_KEYFILE", "MYSQL_PASSWD", "AWS_CREDENTIALS"}) {
    EXPECT_TRUE(IsSecretName(name)) << name;
  }
  for (const char* name : {"PATH", "HOME", "LANG", "MODEL", "TOKE", ""}) {
    EXPECT_FALSE(IsSecretName(name)) << name;
  }
  // A number under a TOKENS name counts tokens; anything else under it, or
  // a number under another secret name, is a secret.
  EXPECT_FALSE(IsSecret("MAX_TOKENS", "4096"));
  EXPECT_FALSE(IsSecret("CLAUDE_CODE_MAX_OUTPUT_TOKENS", "32000"));
  EXPECT_TRUE(IsSecret("NPM_TOKENS", "npm_abcdef123"));
  EXPECT_TRUE(IsSecret("API_TOKENS", "tok-1,tok-2"));
  EXPECT_TRUE(IsSecret("GH_TOKEN", "12345678"));
  EXPECT_TRUE(IsSecret("TOKENS_API_KEY", "12345678"));
  EXPECT_TRUE(IsSecret("PIN_PASSWORD", "4096"));
  EXPECT_FALSE(IsSecret("PATH", "/bin"));
  EXPECT_EQ(SecretValues(std::map<std::string, std::string>{{"MAX_TOKENS", "4096"},
                                                            {"NPM_TOKENS", "npm_x"}}),
            std::vector<std::string>{"npm_x"});
}

TEST(Redact, EnvMap) {
  std::map<std::string, std::string> env = {
      {"API_KEY", "sk-12345"}, {"PATH", "/bin"}, {"github_token", "ghp_x"}};
  auto red = RedactEnv(env);
  EXPECT_EQ(red["API_KEY"], "[redacted]");
  EXPECT_EQ(red["github_token"], "[redacted]");
  EXPECT_EQ(red["PATH"], "/bin");
  EXPECT_EQ(red.size(), 3u);
  EXPECT_EQ(env["API_KEY"], "sk-12345");  // the input is untouched
}

TEST(Redact, SecretValuesAndText) {
  std::map<std::string, std::string> env = {
      {"API_KEY", "sk-12345"}, {"PATH", "/bin"}, {"TOKEN", "abc"}, {"EMPTY_SECRET", ""}};
  auto values = SecretValues(env);
  EXPECT_THAT(values, ::testing::UnorderedElementsAre("sk-12345", "abc"));
  // "abc" is too short to redact safely (it would shred ordinary text).
  EXPECT_EQ(RedactText("key sk-12345 and sk-12345; abc stays", values),
            "key [redacted] and [redacted]; abc stays");
  EXPECT_EQ(RedactText("nothing here", values), "nothing here");
}

// claude's and codex's JSON lines carry a tool's output escaped: a PEM
// key's newlines as \n, a credential's quotes as \". Those forms, and the
// long lines of a value of several, are secrets too.
TEST(Redact, ASecretIsFoundJsonEscapedAndLineByLine) {
  const std::string pem =
      "-----BEGIN KEY-----\nMIIEowIBAAKCAQEAxyz0123456789\r\nqwertyuiopasdfghjkl\"end\"\n";
  for (const auto& values : {SecretValues(std::map<std::string, std::string>{{"APP_KEY", pem}}),
                             SecretValues(std::vector<std::string>{"APP_KEY=" + pem})}) {
    const std::string escaped =
        R"(-----BEGIN KEY-----\nMIIEowIBAAKCAQEAxyz0123456789\r\nqwertyuiopasdfghjkl\"end\"\n)";
    EXPECT_EQ(RedactText(R"({"type":"user","content":")" + escaped + R"("})", values),
              R"({"type":"user","content":"[redacted]"})");
    EXPECT_EQ(RedactText("line: MIIEowIBAAKCAQEAxyz0123456789 printed alone", values),
              "line: [redacted] printed alone");
    EXPECT_EQ(RedactText(pem, values), "[redacted]");
  }
}

TEST(Redact, LongestSecretFirstAndNoRescan) {
  // "secret-long" contains "secr"; it must be replaced whole.
  EXPECT_EQ(RedactText("x secret-long y secr z", {"secr", "secret-long"}),
            "x [redacted] y [redacted] z");
  // A secret that occurs in the replacement text does not loop forever.
  EXPECT_EQ(RedactText("dacted", {"dacted"}), "[redacted]");
}

}  // namespace
}  // namespace forge
