#include "common/capped_log.h"

#include <gtest/gtest.h>

namespace forge {
namespace {

TEST(CappedLog, TheMarkerSaysWhatTheCutDoesAndHowMuchItRepeats) {
  std::string line = CappedLogMarker(65536, 32768, 32700);
  EXPECT_EQ(line,
            "[forge: earlier output dropped; each time this log reaches 65536 bytes it keeps "
            "only its last 32768 bytes; the first 32700 bytes after this line were in it "
            "before]\n");
  line.pop_back();
  EXPECT_EQ(RepeatedAfterCappedLogMarker(line), 32700u);
  EXPECT_EQ(RepeatedAfterCappedLogMarker(CappedLogMarker(1, 1, 0).substr(0, 200)), std::nullopt)
      << "with its newline it is not the line";
}

TEST(CappedLog, AnyOtherLineIsNoMarker) {
  EXPECT_EQ(RepeatedAfterCappedLogMarker(""), std::nullopt);
  EXPECT_EQ(RepeatedAfterCappedLogMarker("hello"), std::nullopt);
  // An older Forge's marker did not say how much repeats.
  EXPECT_EQ(RepeatedAfterCappedLogMarker("[forge: earlier output dropped; each time this log "
                                         "reaches 65536 bytes it keeps only its last 32768 bytes]"),
            std::nullopt);
  EXPECT_EQ(RepeatedAfterCappedLogMarker("[forge: earlier output dropped; the first x bytes "
                                         "after this line were in it before]"),
            std::nullopt);
  EXPECT_EQ(RepeatedAfterCappedLogMarker("[forge: earlier output dropped; the first  bytes "
                                         "after this line were in it before]"),
            std::nullopt);
}

}  // namespace
}  // namespace forge
