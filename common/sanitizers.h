// FORGE_ASAN is defined when this translation unit is built with
// AddressSanitizer, by GCC (__SANITIZE_ADDRESS__) or clang (__has_feature).
// For the few places that must cooperate with ASan (a hand-made child stack)
// or cannot run under it (a preloaded libfaketime), and for tests' loops over
// random inputs (SanitizerScaledRounds).
#pragma once

#if defined(__SANITIZE_ADDRESS__)
#define FORGE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FORGE_ASAN 1
#endif
#endif

#ifdef FORGE_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace forge {

// Rounds for a test's loop over random inputs or random kill moments: a
// quarter under ASan, where such a loop runs 5-10 times slower (CI's
// sanitizer half runs on two cores in its 30 minutes; for the decoders, that
// build's libFuzzer targets, Fuzz.*, search further, guided by coverage).
// The normal build runs every round.
constexpr int SanitizerScaledRounds(int rounds) {
#ifdef FORGE_ASAN
  return rounds / 4;
#else
  return rounds;
#endif
}

}  // namespace forge
