// casecore/detail/job_sql.hpp — the exact statements of the job queue's hot path, for tests.
//
// The behaviour tests EXPLAIN them (an empty claim must not read future jobs) and the isolation
// spec (tests/isolation/specs/jobs_claim_heartbeat_reclaim.spec) PREPAREs the same text, so what is
// proven about these statements is proven about the code. Not a public API: the text may change.
#pragma once

#include <casecore/detail/backend.hpp>

#include <string>

namespace casecore::detail::job_sql {

/// Promote due scheduled jobs to queued: $1 = at most this many.
const std::string& promote(dialect d);
/// Claim without limits: PostgreSQL $1 = batch, $2 = owner, $3 = lease (µs); SQLite $1 = JSON array
/// of the candidates' ids, $2 = owner, $3 = lease (then the token counter advances by their number).
const std::string& claim(dialect d);
/// SQLite's claim candidates (the head of the ready index): $1 = batch.
const std::string& claim_candidates_sqlite();
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
