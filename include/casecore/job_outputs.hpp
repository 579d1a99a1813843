// casecore/job_outputs.hpp — what a job's stage hands to later stages and to operators.
//
// Concept: a stage handler records one output for its stage (job_context::set_output for bytes,
// set_output_json for JSON text); later stages of the job read it (job_context::output("stage")),
// and operators read every stage's output (jobs::outputs, `casecore job show`, the dashboard's job
// page). One output per (job, stage): the row of the stage's position in casecore_job_outputs.
//
// Guarantees: an output is written in the same transaction as its stage's completion
// (job_context::complete, or the completion the worker makes for a handler that returned) and that
// transaction is fenced by the claim's token and expiry: a handler that failed, snoozed, was
// cancelled or lost its claim leaves no output, and the output a later stage or an operator reads
// is always that of a committed completion. A stage run again after a failed attempt replaces its
// output only when that run completes. Outputs go with their job (pruned with it: ON DELETE
// CASCADE). Both backends, every isolation level, behind a transaction pooler (no session state).
// Bounds: at most worker_options::max_output bytes (default 64 KiB, up to 16 MiB). JSON text must
// be valid UTF-8 without raw control characters (checked locally) and valid JSON as the database's
// own parser reads it (SQLite json_valid, PostgreSQL's json type; checked by one read statement in
// set_output_json, and again by the column's CHECK / type when it is stored). That read uses a
// second pooled connection when set_output_json is called inside complete(f): with a pool of one
// connection, set JSON outputs before complete().
// Failure modes: invalid_argument (too large, invalid UTF-8 / JSON, set after the stage completed or
// snoozed, an unknown stage name) and nothing is recorded; lease_lost from the completion when the
// claim is gone (the output is not written).
//
//   w.on_stage("ocr", "extract", [](jobs::job_context& ctx) {
//     ctx.set_output_json(R"({"pages": 12})");                 // committed with the completion
//   });
//   w.on_stage("ocr", "index", [](jobs::job_context& ctx) {
//     if (const auto o = ctx.output("extract")) use(o->data);  // {"pages": 12}
//   });
//   for (const auto& o : jobs::outputs(db, id)) std::cout << o.stage << " " << o.data.size() << "\n";
#pragma once

#include <casecore/database.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::jobs {

/// What an output holds.
enum class output_kind {
  bytes, ///< opaque bytes
  json,  ///< JSON text (valid UTF-8, valid JSON)
};

/// "bytes" or "json".
std::string_view to_string(output_kind k) noexcept;

/// Default bound of one output (worker_options::max_output).
inline constexpr std::size_t default_max_output = 64 * 1024;
/// Largest bound a worker accepts.
inline constexpr std::size_t max_output_limit = 16 * 1024 * 1024;

/// One stage's recorded output.
struct stage_output {
  std::string stage;                      ///< stage name
  int position = 0;                       ///< index in the job's stage list
  output_kind kind = output_kind::bytes;  ///< bytes or JSON text
  std::string data;                       ///< the bytes, or the JSON text
  std::int64_t lease_epoch = 0;           ///< fencing token of the claim whose completion wrote it
  micros written_at = 0;                  ///< when that completion committed (database clock)
};

/// Every recorded output of job `id`, in stage order (empty when none, or no such job).
std::vector<stage_output> outputs(database& db, std::int64_t id);
/// The output of stage `stage` of job `id`, or nullopt when that stage recorded none.
std::optional<stage_output> output(database& db, std::int64_t id, std::string_view stage);
/// The same inside the caller's transaction.
std::optional<stage_output> output(transaction& tx, std::int64_t id, std::string_view stage);

/// invalid_argument unless `data` may be recorded as a `kind` output of at most `max_bytes` bytes:
/// the size, and for JSON valid UTF-8 without raw control characters (the JSON parse itself is the
/// database's, see the header comment). The message never echoes the data.
void check_output(output_kind kind, std::string_view data, std::size_t max_bytes);

} // namespace casecore::jobs

CASECORE_API_END
