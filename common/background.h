// Background<T>: runs one function on its own thread and says so through an
// eventfd, so a poll loop can wait for it among its sockets without blocking
// on it. Used for work that may take seconds (a maintenance job's git and
// rm -r in the worker, the WAL checkpoint in the supervisor) by processes
// whose loop must keep answering meanwhile.
//
// Contract: fd() becomes readable once the function has returned; Finished()
// is then true (it consumes the readiness) and Take() returns the value. The
// destructor joins: an owner that must not wait forever bounds the function
// itself (timeouts inside it), not the join. The function reports failure in
// its value; it must not throw (nothing on its thread would catch it).
#pragma once

#include <errno.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include "common/fd.h"
#include "common/result.h"

namespace forge {

template <typename T>
class Background {
 public:
  static Result<std::unique_ptr<Background>> Start(std::function<T()> fn) {
    std::unique_ptr<Background> b(new Background());
    b->event_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!b->event_.valid()) {
      return MakeError(ErrorCode::kIo, std::string("eventfd: ") + std::strerror(errno));
    }
    Background* raw = b.get();
    try {
      b->thread_ = std::thread([raw, fn = std::move(fn)] {
        raw->value_ = fn();
        uint64_t one = 1;
        (void)!::write(raw->event_.get(), &one, sizeof one);
      });
    } catch (const std::system_error& e) {  // out of threads or memory: the caller's error
      return MakeError(ErrorCode::kIo, std::string("starting a thread: ") + e.what());
    }
    return b;
  }

  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;
  ~Background() {
    if (thread_.joinable()) thread_.join();
  }

  int fd() const { return event_.get(); }

  bool Finished() {
    if (finished_) return true;
    uint64_t value = 0;
    if (::read(event_.get(), &value, sizeof value) == sizeof value) finished_ = true;
    return finished_;
  }

  // Joins (immediate once Finished()) and hands over the value.
  T Take() {
    if (thread_.joinable()) thread_.join();
    return std::move(value_);
  }

 private:
  Background() = default;
  UniqueFd event_;
  std::thread thread_;
  T value_{};
  bool finished_ = false;
};

}  // namespace forge
