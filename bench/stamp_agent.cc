// The dispatch-latency agent: writes CLOCK_REALTIME (ns) at entry to the file
// named by $BENCH_STAMP_DIR/$FORGE_TASK_ID (or argv[1] when given), then exits 0.
// Deliberately libc only and statically linked (bench/CMakeLists.txt), so its
// own start-up adds as little as possible.
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char** argv) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  char path[4096];
  if (argc > 1) {
    snprintf(path, sizeof path, "%s", argv[1]);
  } else {
    const char* dir = getenv("BENCH_STAMP_DIR");
    const char* task = getenv("FORGE_TASK_ID");
    if (dir == nullptr || task == nullptr) return 0;
    snprintf(path, sizeof path, "%s/%s", dir, task);
  }
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return 1;
  char buf[64];
  int n = snprintf(buf, sizeof buf, "%lld\n",
                   static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec);
  if (write(fd, buf, static_cast<size_t>(n)) != n) return 1;
  close(fd);
  return rename(tmp, path) == 0 ? 0 : 1;  // the reader never sees a half-written stamp
}
