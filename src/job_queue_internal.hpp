// Internal: what src/job_queue.cpp and src/job_queue_admin.cpp share (row decoding, SQL pieces).
#pragma once

#include <casecore/job_queue.hpp>

#include <chrono>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace casecore::jobs::internal {

/// The columns to_job() decodes, in order.
inline constexpr std::string_view job_columns =
    "id, operation, subject, payload, stages, current_stage, state, priority, run_at, attempts, max_attempts, "
    "concurrency_key, cancel_requested, lease_owner, lease_epoch, lease_expires_at, heartbeat_at, last_error, "
    "created_at, finished_at";
/// The states of a job that ended.
inline constexpr std::string_view finished_states = "('succeeded', 'failed', 'cancelled')";

/// Milliseconds → microseconds for the database; invalid_argument outside 0 .. 100 years.
std::int64_t checked_us(std::chrono::milliseconds ms, std::string_view what);
/// invalid_argument unless enqueue() would accept `spec` (schedules check their job template with it).
void check_spec(const job_spec& spec);
/// "a,b,c" → {a, b, c}.
std::vector<std::string> split_stages(const std::string& joined);
/// A stored state ("scheduled" reads as queued).
job_state parse_state(const std::string& s);
/// A row of job_columns.
job to_job(const row_ref& r);
/// The state (SQL CASE) a waiting row of alias `t` takes when it is due: 'paused' while a pause
/// covers it (casecore_job_pauses), else 'queued'.
std::string due_state(std::string_view t);
/// Dependencies (src/job_dependencies.cpp). Validated, sorted, unique ids of spec.depends_on.
std::vector<std::int64_t> checked_dependencies(const job_spec& spec);
/// Lock (PostgreSQL: FOR SHARE) and read the dependencies' states; invalid_argument for an unknown id.
/// Call BEFORE inserting the dependent (nothing written on refusal).
std::vector<std::pair<std::int64_t, std::string>> lock_dependencies(transaction& tx, const std::vector<std::int64_t>& ids);
/// Record job `id`'s edges to `deps` (states from lock_dependencies) and make it waiting/blocked
/// when some dependency has not succeeded.
void attach_dependencies(transaction& tx, std::int64_t id, const std::vector<std::pair<std::int64_t, std::string>>& deps);
/// Jobs `ids` just succeeded: satisfy their edges, make dependents with nothing left to wait for due.
void dependencies_succeeded(transaction& tx, const std::vector<std::int64_t>& ids);
/// Job `id` just ended failed or cancelled (`state`): block its waiting dependents, transitively.
void dependency_ended(transaction& tx, std::int64_t id, std::string_view state);
/// Job `id` was retried: its blocked dependents go back to waiting (or stay blocked by another dependency).
void dependency_retried(transaction& tx, std::int64_t id);
/// The parts concatenated.
std::string sql(std::initializer_list<std::string_view> parts);

} // namespace casecore::jobs::internal
