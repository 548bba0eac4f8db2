// agent.fallback_model: the attempt after one that failed in a way the agent
// attributed to the model (claude: overloaded / 5xx API status, a model error
// subtype or terminal reason; see worker/agent_profile.cc) runs with the
// fallback model instead. The supervisor decides, so the worker only ever
// sees the model to use (AgentSpec.model) and the ledger records it per
// attempt. The failure is remembered as an attempt.model_failure event, so
// the decision survives a supervisor restart.
#pragma once

#include <string>

namespace forge::supervisor {

// The model for the task's next attempt. previous_n: the number of the task's
// last attempt (0: none); last_model_failure_n: the number of its last
// attempt that failed on the model (0: none). The fallback applies only right
// after such a failure: a later attempt goes back to the primary model.
std::string ModelForNextAttempt(const std::string& model, const std::string& fallback,
                                int previous_n, int last_model_failure_n);

}  // namespace forge::supervisor
