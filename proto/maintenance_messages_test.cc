// The maintenance messages (maintain, maintenance_result): round trips and
// the errors a malformed one gets, like the other messages in codec_test.cc.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "proto/codec.h"

namespace forge::proto {
namespace {

using ::testing::HasSubstr;

Maintain FullMaintain() {
  Maintain m;
  m.job_id = 9;
  m.state_dir = "/srv/forge";
  m.remove = {{"t-1", "/srv/forge/worktrees/t-1", "/src/repo", "forge/t-1"},
              {"t-2", "/srv/forge/workspaces/t-2", "", ""}};
  m.logs_dir = "/srv/forge/logs";
  m.logs_before_ms = 1795273445123;
  return m;
}

MaintenanceResult FullMaintenanceResult() {
  MaintenanceResult r;
  r.job_id = 9;
  r.removed = {{"t-1", "/srv/forge/worktrees/t-1", true}, {"t-2", "/x", false}};
  r.logs_deleted = 12;
  r.errors = {"removing '/y': permission denied"};
  r.duration_ms = 55;
  return r;
}

std::string DecodeErrorOf(bool from_child, const std::string& bytes) {
  if (from_child) {
    auto r = DecodeChildMessage(bytes);
    EXPECT_FALSE(r.ok()) << bytes;
    return r.ok() ? "" : r.error().message;
  }
  auto r = DecodeSupervisorMessage(bytes);
  EXPECT_FALSE(r.ok()) << bytes;
  return r.ok() ? "" : r.error().message;
}

TEST(MaintenanceMessages, MaintainRoundTrips) {
  for (const Maintain& m : {FullMaintain(), Maintain{}}) {
    auto decoded = DecodeSupervisorMessage(Encode(SupervisorMessage(m)));
    ASSERT_TRUE(decoded.ok()) << decoded.error().ToString();
    ASSERT_TRUE(std::holds_alternative<Maintain>(*decoded));
    EXPECT_EQ(std::get<Maintain>(*decoded), m);
    EXPECT_EQ(TypeName(*decoded), "maintain");
  }
}

TEST(MaintenanceMessages, ResultRoundTrips) {
  for (const MaintenanceResult& m : {FullMaintenanceResult(), MaintenanceResult{}}) {
    auto decoded = DecodeChildMessage(Encode(ChildMessage(m)));
    ASSERT_TRUE(decoded.ok()) << decoded.error().ToString();
    ASSERT_TRUE(std::holds_alternative<MaintenanceResult>(*decoded));
    EXPECT_EQ(std::get<MaintenanceResult>(*decoded), m);
    EXPECT_EQ(TypeName(*decoded), "maintenance_result");
  }
}

TEST(MaintenanceMessages, PlainWorkspaceEntryOmitsRepoAndBranch) {
  json j = json::parse(Encode(FullMaintain()));
  EXPECT_TRUE(j["remove"][0].contains("repo"));
  EXPECT_FALSE(j["remove"][1].contains("repo"));
  EXPECT_FALSE(j["remove"][1].contains("branch"));
}

TEST(MaintenanceMessages, MissingFieldsAreNamed) {
  EXPECT_EQ(DecodeErrorOf(false, R"({"v":1,"type":"maintain","state_dir":"/s"})"),
            "maintain: field 'job_id' is missing");
  EXPECT_EQ(DecodeErrorOf(false, R"({"v":1,"type":"maintain","job_id":1})"),
            "maintain: field 'state_dir' is missing");
  json j = json::parse(Encode(FullMaintain()));
  j["remove"][1].erase("path");
  EXPECT_EQ(DecodeErrorOf(false, j.dump()), "maintain: field 'remove.1.path' is missing");
  EXPECT_EQ(DecodeErrorOf(true, R"({"v":1,"type":"maintenance_result"})"),
            "maintenance_result: field 'job_id' is missing");
  j = json::parse(Encode(FullMaintenanceResult()));
  j["removed"][0].erase("task_id");
  EXPECT_EQ(DecodeErrorOf(true, j.dump()),
            "maintenance_result: field 'removed.0.task_id' is missing");
}

TEST(MaintenanceMessages, MistypedFieldsAreNamed) {
  json j = json::parse(Encode(FullMaintain()));
  j["logs_before_ms"] = "yesterday";
  EXPECT_EQ(DecodeErrorOf(false, j.dump()),
            "maintain: field 'logs_before_ms' must be an integer, got string");
  j = json::parse(Encode(FullMaintain()));
  j["remove"] = json::object();
  EXPECT_THAT(DecodeErrorOf(false, j.dump()), HasSubstr("field 'remove' must be an array"));
  j = json::parse(Encode(FullMaintenanceResult()));
  j["removed"][0]["existed"] = 1;
  EXPECT_THAT(DecodeErrorOf(true, j.dump()),
              HasSubstr("maintenance_result: field 'removed.0.existed' must be a boolean"));
  j = json::parse(Encode(FullMaintenanceResult()));
  j["errors"][0] = 5;
  EXPECT_THAT(DecodeErrorOf(true, j.dump()), HasSubstr("field 'errors.0' must be a string"));
}

TEST(MaintenanceMessages, WrongDirectionIsNamed) {
  EXPECT_THAT(DecodeErrorOf(true, Encode(FullMaintain())),
              HasSubstr("'maintain' is not a child message"));
  EXPECT_THAT(DecodeErrorOf(false, Encode(FullMaintenanceResult())),
              HasSubstr("'maintenance_result' is not a supervisor message"));
}

}  // namespace
}  // namespace forge::proto
