// Result<T>: a value or an Error, in the spirit of std::expected (not in
// GCC 12). Errors carry a stable machine code (used on the control wire as
// {"error":{"code":...}}) and a human message that names what is wrong and
// where. Exceptions are used only at the edges (library calls that throw are
// caught and turned into Errors right there).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace forge {

enum class ErrorCode {
  kInvalid,      // bad input: usage, field, value
  kNotFound,     // no such task/attempt/file
  kConflict,     // state does not allow the operation
  kDecode,       // malformed message / JSON
  kConfig,       // configuration error
  kIo,           // filesystem / OS call failed
  kDb,           // SQLite error
  kBusy,         // database locked past busy timeout
  kFull,         // disk or database full
  kUnavailable,  // peer not running / not reachable
  kTimeout,
  kInternal,
};

std::string_view ErrorCodeName(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;

  std::string_view code_name() const { return ErrorCodeName(code); }
  // "code: message", for logs.
  std::string ToString() const;
  // Prefixes context to the message ("loading forge.yaml: ...").
  Error Wrap(std::string_view context) const;
};

inline Error MakeError(ErrorCode code, std::string message) {
  return Error{code, std::move(message)};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error error) : v_(std::move(error)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// Result<void>.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)), ok_(false) {}
  static Status Ok() { return Status(); }

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

}  // namespace forge

// Propagates an error from a Result/Status expression.
#define FORGE_RETURN_IF_ERROR(expr)                        \
  do {                                                     \
    auto&& forge_status_ = (expr);                         \
    if (!forge_status_.ok()) return forge_status_.error(); \
  } while (0)

#define FORGE_CONCAT_INNER_(a, b) a##b
#define FORGE_CONCAT_(a, b) FORGE_CONCAT_INNER_(a, b)
// FORGE_ASSIGN_OR_RETURN(auto x, Expr()); declares x from a Result or returns its error.
#define FORGE_ASSIGN_OR_RETURN(lhs, expr) \
  FORGE_ASSIGN_OR_RETURN_IMPL_(FORGE_CONCAT_(forge_result_, __LINE__), lhs, expr)
#define FORGE_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.error();                 \
  lhs = std::move(tmp).value()
