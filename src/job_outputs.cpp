#include "job_outputs_internal.hpp"

#include <casecore/detail/text.hpp>
#include <casecore/migration.hpp>

namespace casecore {

namespace detail {
// Its own component (not a casecore.jobs version): features of this round add job migrations side
// by side, and a component of its own never collides with another feature's next version number.
// Listed after job_migrations() in schema.cpp (the foreign key needs casecore_jobs).
std::vector<migration> job_output_migrations() {
  return {
      {"casecore.job_outputs", 1, "stage outputs (bytes or JSON text) read by later stages and operators", "",
       // One row per (job, stage position); exactly one of the two data columns is set. The JSON
       // column refuses text its database cannot parse, whatever path wrote it.
       "CREATE TABLE casecore_job_outputs("
       " job_id BIGINT NOT NULL REFERENCES casecore_jobs(id) ON DELETE CASCADE, position INTEGER NOT NULL,"
       " stage TEXT NOT NULL, kind TEXT NOT NULL CHECK (kind IN ('bytes', 'json')),"
       " data_bytes BLOB, data_json TEXT CHECK (data_json IS NULL OR json_valid(data_json)),"
       " lease_epoch BIGINT NOT NULL, written_at BIGINT NOT NULL, PRIMARY KEY(job_id, position),"
       " CHECK ((kind = 'bytes') = (data_bytes IS NOT NULL)), CHECK ((kind = 'json') = (data_json IS NOT NULL)))",
       "CREATE TABLE casecore_job_outputs("
       " job_id BIGINT NOT NULL REFERENCES casecore_jobs(id) ON DELETE CASCADE, position INTEGER NOT NULL,"
       " stage TEXT NOT NULL, kind TEXT NOT NULL CHECK (kind IN ('bytes', 'json')),"
       " data_bytes BYTEA, data_json json,"
       " lease_epoch BIGINT NOT NULL, written_at BIGINT NOT NULL, PRIMARY KEY(job_id, position),"
       " CHECK ((kind = 'bytes') = (data_bytes IS NOT NULL)), CHECK ((kind = 'json') = (data_json IS NOT NULL)))"},
  };
}
} // namespace detail

namespace jobs {

namespace {

constexpr std::string_view columns = "position, stage, kind, data_bytes, data_json, lease_epoch, written_at";

stage_output to_output(const row_ref& r) {
  stage_output o;
  o.position = r.get<int>(0);
  o.stage = r.get<std::string>(1);
  o.kind = r.get<std::string>(2) == "json" ? output_kind::json : output_kind::bytes;
  if (o.kind == output_kind::json) o.data = r.get<std::string>(4);
  else {
    const auto b = r.get<blob>(3);
    o.data.assign(reinterpret_cast<const char*>(b.bytes.data()), b.bytes.size());
  }
  o.lease_epoch = r.get<std::int64_t>(5);
  o.written_at = r.get<micros>(6);
  return o;
}

} // namespace

std::string_view to_string(output_kind k) noexcept { return k == output_kind::json ? "json" : "bytes"; }

void check_output(output_kind kind, std::string_view data, std::size_t max_bytes) {
  const auto what = std::string(kind == output_kind::json ? "JSON output" : "output");
  if (data.empty()) raise(errc::invalid_argument, what + " is empty");
  if (data.size() > max_bytes)
    raise(errc::invalid_argument, what + " of " + std::to_string(data.size()) + " bytes is larger than the bound of " +
                                      std::to_string(max_bytes) + " bytes (worker_options::max_output)");
  if (kind != output_kind::json) return;
  if (!detail::is_valid_utf8(data)) raise(errc::invalid_argument, "JSON output is not valid UTF-8");
  // JSON allows no raw control character but whitespace (RFC 8259: strings escape them); refusing
  // them here also keeps a NUL from cutting the text short on its way to PostgreSQL.
  for (const char c : data) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 && c != '\t' && c != '\n' && c != '\r') raise(errc::invalid_argument, "JSON output holds a raw control character");
  }
}

std::vector<stage_output> outputs(database& db, std::int64_t id) {
  return db.read([&](transaction& tx) {
    std::vector<stage_output> out;
    for (auto r : tx.exec("SELECT " + std::string(columns) + " FROM casecore_job_outputs WHERE job_id = $1 ORDER BY position", id))
      out.push_back(to_output(r));
    return out;
  });
}

std::optional<stage_output> output(transaction& tx, std::int64_t id, std::string_view stage) {
  const auto r = tx.exec("SELECT " + std::string(columns) + " FROM casecore_job_outputs WHERE job_id = $1 AND stage = $2", id, stage);
  if (r.empty()) return std::nullopt;
  return to_output(r[0]);
}

std::optional<stage_output> output(database& db, std::int64_t id, std::string_view stage) {
  return db.read([&](transaction& tx) { return output(tx, id, stage); });
}

namespace internal {

void check_json(database& db, std::string_view text) {
  bool ok = false;
  try {
    ok = db.read([&](transaction& tx) {
      // SQLite: json_valid (RFC 8259). PostgreSQL: the json type's input parser (22P02, a data
      // exception, for anything else: invalid_argument).
      if (tx.dialect() == dialect::sqlite) return tx.query_one<std::int64_t>("SELECT json_valid($1)", text) == 1;
      tx.exec("SELECT CAST($1 AS json) IS NOT NULL", text);
      return true;
    });
  } catch (const invalid_argument&) {
    ok = false; // the server's message may quote the text: ours does not
  }
  if (!ok) raise(errc::invalid_argument, "JSON output is not valid JSON");
}

void write_output(transaction& tx, std::int64_t job_id, std::int64_t epoch, int position, std::string_view stage,
                  const pending_output& out) {
  const bool json = out.kind == output_kind::json;
  std::optional<blob> bytes;
  std::optional<std::string> text;
  if (json) text = out.data;
  else {
    blob b;
    b.bytes.resize(out.data.size());
    for (std::size_t i = 0; i < out.data.size(); ++i) b.bytes[i] = static_cast<std::byte>(out.data[i]);
    bytes = std::move(b);
  }
  const std::string json_param = tx.dialect() == dialect::postgresql ? "CAST($6 AS json)" : "$6";
  tx.exec("INSERT INTO casecore_job_outputs(job_id, position, stage, kind, data_bytes, data_json, lease_epoch, written_at) "
          "VALUES($1, $2, $3, $4, $5, " + json_param + ", $7, casecore_now_us()) "
          "ON CONFLICT (job_id, position) DO UPDATE SET stage = excluded.stage, kind = excluded.kind, "
          "data_bytes = excluded.data_bytes, data_json = excluded.data_json, lease_epoch = excluded.lease_epoch, "
          "written_at = excluded.written_at",
          job_id, position, stage, to_string(out.kind), bytes, text, epoch);
}

} // namespace internal

} // namespace jobs

} // namespace casecore
