// CPU time for the benchmarks, shared by forge_bench and the design floor
// (which links nothing of Forge's, so this is a header of its own).
#pragma once

#include <sys/resource.h>
#include <sys/time.h>

// CPU time (user + system), in ms, of this process (RUSAGE_SELF, all
// threads) or of its reaped descendants so far (RUSAGE_CHILDREN: around one
// waited-for child, that child's whole tree, as long as nothing else is
// reaped meanwhile).
inline double CpuMs(int who) {
  rusage u{};
  ::getrusage(who, &u);
  auto ms = [](const timeval& t) { return static_cast<double>(t.tv_sec) * 1e3 + t.tv_usec / 1e3; };
  return ms(u.ru_utime) + ms(u.ru_stime);
}
