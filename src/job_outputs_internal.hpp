// Internal: how the worker's job_context records a stage's output (src/job_outputs.cpp).
#pragma once

#include <casecore/job_outputs.hpp>

#include <string>

namespace casecore::jobs::internal {

/// An output set by a handler, not yet written.
struct pending_output {
  output_kind kind = output_kind::bytes; ///< bytes or JSON
  std::string data;                      ///< checked by check_output (and check_json for JSON)
};

/// invalid_argument unless the database's JSON parser accepts `text` (one read statement).
void check_json(database& db, std::string_view text);

/// Write (or replace) the output of stage `position` (`stage`) of job `job_id` in `tx`, recording
/// the claim's token. Not a fence by itself: the caller completes the stage, fenced, in the same
/// transaction (a lost claim then rolls this back).
void write_output(transaction& tx, std::int64_t job_id, std::int64_t epoch, int position, std::string_view stage,
                  const pending_output& out);

} // namespace casecore::jobs::internal
