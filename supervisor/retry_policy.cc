#include "supervisor/retry_policy.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <string>

namespace forge::supervisor {
namespace {

using proto::Outcome;

// FNV-1a 64: stable across processes and builds (std::hash is not).
uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

std::string Hex16(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

store::Close Base(const AttemptEnd& end) {
  store::Close c;
  c.outcome = end.outcome;
  c.error = end.error;
  c.findings = end.findings;
  c.checks = end.checks;
  c.verdict = end.verdict;
  c.commit = end.commit;
  c.review_log_error = end.review_log_error;
  return c;
}

store::Close Blocked(store::Close c, std::string reason) {
  c.next_state = proto::TaskState::kBlocked;
  c.reason = std::move(reason);
  return c;
}

}  // namespace

// Hand-rolled rather than std::regex: GCC 12's <regex> trips
// -Wmaybe-uninitialized under the sanitizer build.
namespace {

bool IsHex(unsigned char c) {
  return std::isdigit(c) || (c >= 'a' && c <= 'f');
}
bool IsWordChar(unsigned char c) {
  return std::isalnum(c) || c == '_';
}

// Replaces /tmp/..., /var/tmp/... paths (up to whitespace, a quote or ':') with <tmp>.
std::string ReplaceTempPaths(const std::string& s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    size_t len = 0;
    for (const char* prefix : {"/private/tmp/", "/var/tmp/", "/tmp/"}) {
      size_t n = std::char_traits<char>::length(prefix);
      if (s.compare(i, n, prefix) == 0) {
        len = n;
        break;
      }
    }
    if (len == 0) {
      out.push_back(s[i++]);
      continue;
    }
    i += len;
    while (i < s.size() && !std::isspace(static_cast<unsigned char>(s[i])) && s[i] != '\'' &&
           s[i] != '"' && s[i] != ':') {
      ++i;
    }
    out += "<tmp>";
  }
  return out;
}

// Replaces standalone hex runs of 8+ characters (optionally 0x-prefixed) with <id>.
std::string ReplaceHexIds(const std::string& s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    bool boundary = i == 0 || !IsWordChar(static_cast<unsigned char>(s[i - 1]));
    size_t j = i;
    if (boundary && s.compare(i, 2, "0x") == 0) j += 2;
    size_t k = j;
    while (k < s.size() && IsHex(static_cast<unsigned char>(s[k]))) ++k;
    bool end_ok = k == s.size() || !IsWordChar(static_cast<unsigned char>(s[k]));
    if (boundary && k - j >= 8 && end_ok) {
      out += "<id>";
      i = k;
      continue;
    }
    out.push_back(s[i++]);
  }
  return out;
}

}  // namespace

std::string NormalizeFailureText(const std::string& text) {
  std::string s = text;
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  s = ReplaceHexIds(ReplaceTempPaths(s));
  // Digits cover timestamps, pids, line numbers, durations.
  s.erase(std::remove_if(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); }),
          s.end());
  std::string out;
  bool space = false;
  for (unsigned char c : s) {
    if (std::isspace(c)) {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(static_cast<char>(c));
  }
  return out;
}

std::string Fingerprint(const AttemptEnd& end) {
  if (end.outcome == Outcome::kPassed) return "";
  std::string material(proto::OutcomeName(end.outcome));
  // Appends piece by piece, not `"\n" + ...`: GCC 12 at -O3 reports a false
  // -Wrestrict inside libstdc++ for a literal + std::string (PR 105329).
  material += '\n';
  material += NormalizeFailureText(end.error);
  material += '\n';
  material += NormalizeFailureText(end.output_tail);
  for (const auto& check : end.checks) {
    if (check.passed) continue;
    material += "\ncheck:";
    material += check.name;
    material += '\n';
    material += NormalizeFailureText(check.output_tail);
  }
  return Hex16(Fnv1a(material));
}

int64_t BackoffMs(int n, const RetryConfig& retry, const UniformRng& rng) {
  int64_t delay = retry.backoff_base_ms;
  for (int i = 1; i < n && delay < retry.backoff_max_ms; ++i) delay *= 2;
  delay = std::min(delay, retry.backoff_max_ms);
  double jitter = 0.8 + 0.4 * rng();  // [0.8, 1.2)
  return std::max<int64_t>(0, static_cast<int64_t>(static_cast<double>(delay) * jitter));
}

store::Close Decide(const TaskRetryState& task, const AttemptEnd& end, const PolicyConfig& config,
                    int64_t now_wall_ms, const UniformRng& rng) {
  store::Close c = Base(end);
  if (end.outcome == Outcome::kPassed) {
    c.next_state = proto::TaskState::kDone;
    c.reason = "passed";
    return c;
  }
  const bool infra = proto::IsInfraOutcome(end.outcome) || end.infra;
  if (infra || end.outcome == Outcome::kCancelled) {
    c.counted = false;
    c.infra = infra;
    // Whatever ended it, a task that has spent its budget runs no more: a
    // worker that dies after its agent spent is a crash, and an agent a stop
    // interrupted after it spent is a shutdown, not a free retry.
    if (config.task_usd > 0 && task.cost_usd >= config.task_usd) {
      return Blocked(std::move(c), "task budget exceeded");
    }
    if (infra && task.infra_retries >= config.retry.max_infra_retries) {
      return Blocked(std::move(c), "infrastructure failures exhausted (" +
                                       std::to_string(task.infra_retries + 1) + " " +
                                       std::string(proto::OutcomeName(end.outcome)) +
                                       " attempts, max_infra_retries " +
                                       std::to_string(config.retry.max_infra_retries) + ")");
    }
    c.reason =
        end.infra && !proto::IsInfraOutcome(end.outcome)
            ? "infrastructure error: requeued without using an attempt"
            : std::string(proto::OutcomeName(end.outcome)) + ": requeued without using an attempt";
    // A crash or a lost worker waits out a backoff, as a failure does: a
    // host that kills every attempt would otherwise run the queue's agents
    // back to back. A full disk (`infra`) pauses dispatch until it has room,
    // and a cancel (a shutdown) and a supervisor restart's recovery are not
    // the attempt's doing: those are requeued at once.
    if (end.outcome == Outcome::kLost || end.outcome == Outcome::kCrashed) {
      c.next_state = proto::TaskState::kCooldown;
      c.not_before_ms = now_wall_ms + BackoffMs(task.infra_retries + 1, config.retry, rng);
      c.reason += ", after backoff";
      return c;
    }
    c.next_state = proto::TaskState::kReady;
    return c;
  }
  if (end.rate_limited && end.retryable) {
    // Uncounted, so nothing else bounds a task that keeps meeting the limit
    // (each run may still cost: claude reports spend on a 429).
    c.counted = false;
    if (config.task_usd > 0 && task.cost_usd >= config.task_usd) {
      return Blocked(std::move(c), "task budget exceeded");
    }
    c.next_state = proto::TaskState::kReady;
    c.reason = "rate limited: requeued without using an attempt";
    return c;
  }
  c.fingerprint = Fingerprint(end);
  if (!end.retryable) return Blocked(std::move(c), "not retryable: " + end.error);
  if (config.task_usd > 0 && task.cost_usd >= config.task_usd) {
    return Blocked(std::move(c), "task budget exceeded");
  }
  if (!task.last_fingerprint.empty() && task.last_fingerprint == c.fingerprint) {
    return Blocked(std::move(c), "same failure twice");
  }
  int used = task.attempts_used + 1;
  if (used >= task.max_attempts) {
    return Blocked(std::move(c), "attempts exhausted (" + std::to_string(used) + " of " +
                                     std::to_string(task.max_attempts) + ")");
  }
  c.next_state = proto::TaskState::kCooldown;
  c.not_before_ms = now_wall_ms + BackoffMs(used, config.retry, rng);
  c.reason = "retry after backoff";
  return c;
}

}  // namespace forge::supervisor
