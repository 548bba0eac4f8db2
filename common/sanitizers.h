// FORGE_ASAN is defined when this translation unit is built with
// AddressSanitizer, by GCC (__SANITIZE_ADDRESS__) or clang (__has_feature).
// For the few places that must cooperate with ASan (a hand-made child stack)
// or cannot run under it (a preloaded libfaketime).
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
