// casecore/detail/job_sql.hpp — the exact statements of the job queue's hot path, for tests.
//
// The behaviour tests EXPLAIN them (an empty claim must not read future jobs) and the isolation
// spec (tests/isolation/specs/jobs_claim_heartbeat_reclaim.spec) PREPAREs the same text, so what is
// proven about these statements is proven about the code. Not a public API: the text may change.
#pragma once

#include <casecore/detail/backend.hpp>

#include <string>
#include <string_view>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::detail::job_sql {

/// " LIMIT n" for a batch n in 1..1000 (written into the text: see job_queue.cpp); invalid_argument otherwise.
std::string limit_clause(std::int64_t n);
/// Promote at most `limit` due scheduled jobs to queued (no parameters).
std::string promote(dialect d, std::int64_t limit);
/// Claim without limits: $1 = owner, $2 = lease (µs). PostgreSQL claims up to `batch` jobs; SQLite
/// claims the candidates in $3 (a JSON array of ids; `batch` is unused) and the caller then advances
/// the token counter by their number.
std::string claim(dialect d, std::int64_t batch);
/// The claim's "no job of this key runs" condition on q (PostgreSQL's keeps the probe per row).
std::string_view no_running_sibling_text(bool postgresql);
/// The claim's "no pause covers q" condition (PostgreSQL's keeps the probe per row).
std::string_view not_paused_text(bool postgresql);
/// SQLite's claim candidates (the head of the ready index), at most `batch` (no parameters).
std::string claim_candidates_sqlite(std::int64_t batch);
/// Heartbeat: $1 = lease (µs), $2 = job ids, $3 = tokens (PostgreSQL arrays / SQLite JSON arrays).
const std::string& heartbeat(dialect d);
/// Of the refs a heartbeat did not extend, those still held (row locked: skipped): $1 = ids, $2 = tokens.
const std::string& heartbeat_busy(dialect d);
/// Reclaim up to 100 expired claims (no parameters).
const std::string& reclaim(dialect d);
/// Complete stages (PostgreSQL): $1 = ids, $2 = tokens, $3 = stages (arrays).
const std::string& complete_pg();
/// Enqueue's update of the waiting job of a key: $1 = operation, $2 = subject, $3 = payload.
const std::string& replace_payload();
/// The fence of check(): $1 = id, $2 = token.
const std::string& check(dialect d);

} // namespace casecore::detail::job_sql

CASECORE_API_END
