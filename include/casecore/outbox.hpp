// casecore/outbox.hpp — a durable outbox: messages written in the business transaction, delivered
// at least once afterwards.
//
// publish() inserts a row in the caller's transaction, so the message exists if and only if the
// business write committed (an upload-after-commit, a notification, a cache purge that must survive
// a crash). drain() claims a batch (SKIP LOCKED on PostgreSQL), calls the handler outside any
// transaction, deletes delivered messages and reschedules failed ones with backoff. A drainer that
// dies leaves its claim to expire, after which another drainer delivers the message again: handlers
// must be idempotent. Thread safety: all functions are thread-safe; drain from as many threads or
// processes as you like.
#pragma once

#include <casecore/database.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include <casecore/export.hpp>

CASECORE_API_BEGIN

namespace casecore::outbox {

/// A message as the handler sees it.
struct message {
  std::int64_t id = 0;     ///< outbox row id
  std::string topic;       ///< routing topic
  std::string key;         ///< optional key (e.g. an object name)
  std::string payload;     ///< opaque payload
  int attempts = 0;        ///< delivery attempts so far, this one included
};

/// Knobs of drain().
struct drain_options {
  std::size_t batch = 100;                          ///< messages claimed per call
  std::chrono::milliseconds claim_ttl{30000};       ///< how long a claim protects a message
  std::chrono::milliseconds retry_delay{1000};      ///< first redelivery delay, doubled per attempt
};

/// Write a message in the caller's transaction; returns its id.
std::int64_t publish(transaction& tx, std::string_view topic, std::string_view payload, std::string_view key = {});

/// Deliver up to `batch` ready messages of `topic`; returns how many the handler accepted.
std::size_t drain(database& db, std::string_view topic, const std::function<void(const message&)>& handler,
                  const drain_options& options = {});

/// Messages of `topic` not yet delivered.
std::int64_t pending(database& db, std::string_view topic);

} // namespace casecore::outbox

CASECORE_API_END
