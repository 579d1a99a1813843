#include <casecore/detail/token.hpp>
#include <casecore/migration.hpp>
#include <casecore/outbox.hpp>

#include <algorithm>

namespace casecore {

namespace detail {
std::vector<migration> core_migrations() {
  return {
      {"casecore", 1, "clock function", "", "SELECT 1",
       "CREATE OR REPLACE FUNCTION casecore_now_us() RETURNS bigint LANGUAGE sql VOLATILE AS "
       "$$ SELECT {{now_us}} $$"},
      {"casecore", 2, "outbox",
       "CREATE TABLE casecore_outbox("
       " id {{id}}, topic TEXT NOT NULL, msg_key TEXT NOT NULL DEFAULT '', payload TEXT NOT NULL,"
       " created_at BIGINT NOT NULL, available_at BIGINT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
       " claimed_by TEXT, claimed_until BIGINT, last_error TEXT);"
       "CREATE INDEX casecore_outbox_ready ON casecore_outbox(topic, available_at, id);",
       "", ""},
  };
}
} // namespace detail

namespace outbox {

namespace {
void check_topic(std::string_view topic) {
  if (topic.empty() || topic.size() > 200) raise(errc::invalid_argument, "outbox topic must be 1..200 characters");
}
} // namespace

std::int64_t publish(transaction& tx, std::string_view topic, std::string_view payload, std::string_view key) {
  check_topic(topic);
  if (!tx.writable()) raise(errc::invalid_argument, "outbox::publish needs a write transaction");
  if (payload.size() > 16 * 1024 * 1024) raise(errc::invalid_argument, "outbox payload larger than 16 MiB");
  return tx.query_one<std::int64_t>(
      "INSERT INTO casecore_outbox(topic, msg_key, payload, created_at, available_at) "
      "VALUES($1, $2, $3, casecore_now_us(), casecore_now_us()) RETURNING id",
      topic, key, payload);
}

std::size_t drain(database& db, std::string_view topic, const std::function<void(const message&)>& handler,
                  const drain_options& options) {
  check_topic(topic);
  if (options.batch == 0 || options.batch > 10000) raise(errc::invalid_argument, "drain batch must be 1..10000");
  if (options.claim_ttl.count() <= 0) raise(errc::invalid_argument, "drain claim_ttl must be positive");
  const std::string claimer = detail::random_token();
  const std::int64_t ttl_us = options.claim_ttl.count() * 1000;
  auto batch = db.write([&](transaction& tx) {
    std::vector<message> out;
    auto rows = tx.exec(
        "UPDATE casecore_outbox SET claimed_by = $1, claimed_until = casecore_now_us() + $2, attempts = attempts + 1 "
        "WHERE id IN (SELECT id FROM casecore_outbox WHERE topic = $3 AND available_at <= casecore_now_us() "
        "AND (claimed_until IS NULL OR claimed_until < casecore_now_us()) ORDER BY id LIMIT $4" +
            std::string(tx.sql().for_update_skip_locked) +
            ") RETURNING id, msg_key, payload, attempts",
        claimer, ttl_us, topic, static_cast<std::int64_t>(options.batch));
    for (auto r : rows) out.push_back({r.get<std::int64_t>(0), std::string(topic), r.get<std::string>(1), r.get<std::string>(2), r.get<int>(3)});
    std::sort(out.begin(), out.end(), [](const message& a, const message& b) { return a.id < b.id; });
    return out;
  });
  std::size_t delivered = 0;
  for (const auto& m : batch) {
    try {
      handler(m);
      db.write([&](transaction& tx) { tx.exec("DELETE FROM casecore_outbox WHERE id = $1 AND claimed_by = $2", m.id, claimer); });
      ++delivered;
    } catch (const std::exception& e) {
      const std::int64_t delay_us = options.retry_delay.count() * 1000 * (std::int64_t{1} << std::min(m.attempts - 1, 16));
      db.write([&](transaction& tx) {
        tx.exec("UPDATE casecore_outbox SET claimed_by = NULL, claimed_until = NULL, available_at = casecore_now_us() + $1, "
                "last_error = $2 WHERE id = $3 AND claimed_by = $4",
                delay_us, std::string(e.what()).substr(0, 2000), m.id, claimer);
      });
    }
  }
  return delivered;
}

std::int64_t pending(database& db, std::string_view topic) {
  check_topic(topic);
  return db.read([&](transaction& tx) { return tx.query_one<std::int64_t>("SELECT count(*) FROM casecore_outbox WHERE topic = $1", topic); });
}

} // namespace outbox
} // namespace casecore
