#include "supervisor/model_fallback.h"

namespace forge::supervisor {

std::string ModelForNextAttempt(const std::string& model, const std::string& fallback,
                                int previous_n, int last_model_failure_n) {
  if (fallback.empty() || previous_n <= 0) return model;
  return last_model_failure_n == previous_n ? fallback : model;
}

}  // namespace forge::supervisor
