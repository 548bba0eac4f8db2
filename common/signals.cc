#include "common/signals.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <string>

namespace forge {

Result<SignalFd> SignalFd::Create(std::initializer_list<int> signals) {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : signals) {
    if (sigaddset(&set, sig) != 0) {
      return MakeError(ErrorCode::kInvalid, "signalfd: bad signal number " + std::to_string(sig));
    }
  }
  // Blocked signals stay pending until read from the descriptor; without
  // this they would be delivered the default way (often: terminate).
  if (int err = pthread_sigmask(SIG_BLOCK, &set, nullptr); err != 0) {
    return MakeError(ErrorCode::kIo, std::string("pthread_sigmask: ") + strerror(err));
  }
  int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) return MakeError(ErrorCode::kIo, std::string("signalfd: ") + strerror(errno));
  SignalFd out;
  out.fd_.reset(fd);
  return out;
}

std::optional<int> SignalFd::Read() {
  signalfd_siginfo info{};
  while (true) {
    ssize_t n = read(fd_.get(), &info, sizeof info);
    if (n == static_cast<ssize_t>(sizeof info)) return static_cast<int>(info.ssi_signo);
    if (n < 0 && errno == EINTR) continue;
    return std::nullopt;  // EAGAIN: nothing pending
  }
}

bool StopSignalPending() {
  sigset_t pending;
  sigemptyset(&pending);
  if (::sigpending(&pending) != 0) return false;
  return sigismember(&pending, SIGTERM) == 1 || sigismember(&pending, SIGINT) == 1;
}

void IgnoreWriteSignals() {
  signal(SIGPIPE, SIG_IGN);
  signal(SIGXFSZ, SIG_IGN);
}

}  // namespace forge
