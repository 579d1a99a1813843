// work_orders: Awning (seed 004) rebuilt on casecore.
//
// Shop staff create customers, work orders and repair orders with gapless numbers (some creations
// roll back on purpose), move inventory with bounded deltas, reorder the cleaning queue, link repair
// orders to work orders, and attach photos whose upload goes through the outbox (published in the
// business transaction, uploaded by a drainer to a blob store afterwards). Meanwhile a signed cron
// trigger retrains the shared ML model, which readers use through an atomically published snapshot.
//
//   work_orders [--db URL] [--fresh] [--keep] [--users N] [--rounds N] [--items N] [--retrains N]
//               [--secret S] [--no-progress]
#include "../common/args.hpp"
#include "../common/progress.hpp"
#include "../common/setup.hpp"

#include <casecore/counter.hpp>
#include <casecore/migration.hpp>
#include <casecore/outbox.hpp>
#include <casecore/ports/blob_store.hpp>
#include <casecore/links.hpp>
#include <casecore/ordered_list.hpp>
#include <casecore/repository.hpp>
#include <casecore/snapshot.hpp>
#include <casecore/trigger.hpp>

#include <algorithm>
#include <atomic>
#include <ctime>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

using namespace std::chrono_literals;
using casecore::transaction;

namespace {

struct item {
  std::string sku;
  std::int64_t qty = 0;
};

const casecore::repository<item> inventory({"inventory", "id", {casecore::column("sku", &item::sku), casecore::column("qty", &item::qty)}});

std::vector<casecore::migration> schema() {
  return {inventory.create_table_migration("work_orders", 1),
          {"work_orders", 2, "customers, work orders, repair orders, issued numbers",
           "CREATE TABLE customers(id {{id}}, number TEXT NOT NULL UNIQUE, name TEXT NOT NULL);"
           "CREATE TABLE work_orders(id {{id}}, number TEXT NOT NULL UNIQUE, customer_id BIGINT NOT NULL, photo_key TEXT NOT NULL);"
           "CREATE TABLE repair_orders(id {{id}}, number TEXT NOT NULL UNIQUE);"
           "CREATE TABLE issued_numbers(kind TEXT NOT NULL, n BIGINT NOT NULL, number TEXT NOT NULL, PRIMARY KEY(kind, n))",
           "", ""}};
}

constexpr const char* queue_name = "cleaning_queue";
constexpr const char* queue_key = "shop-1";
constexpr const char* link_kind = "repair_of";
constexpr const char* upload_topic = "photo-upload";

struct simulated_rollback : std::runtime_error {
  simulated_rollback() : std::runtime_error("simulated failure after the number was allocated") {}
};

std::string issue(transaction& tx, const std::string& kind, const std::string& pattern) {
  const auto n = casecore::counter::next(tx, kind);
  auto number = casecore::counter::format_number(pattern, "", n);
  tx.exec("INSERT INTO issued_numbers(kind, n, number) VALUES($1, $2, $3)", kind, n, number);
  return number;
}

struct figures {
  std::atomic<int> customers{0}, work_orders{0}, repair_orders{0}, rolled_back{0};
  std::atomic<int> deltas{0}, deltas_refused{0};
  std::atomic<int> reorders{0}, reorder_conflicts{0};
  std::atomic<int> links{0}, links_refused{0};
  std::mutex mutex;
  std::set<std::string> rolled_back_attempts; // attempt ids of work orders that rolled back
  std::map<std::int64_t, std::int64_t> applied; // item id -> sum of committed deltas
};

class shop {
public:
  shop(casecore::database& db, std::vector<std::int64_t> items) : db_(db), items_(std::move(items)) {}

  void new_customer(std::mt19937& rng, figures& fig) {
    guarded(fig, [&](transaction& tx) {
      tx.exec("INSERT INTO customers(number, name) VALUES($1, $2)", issue(tx, "customer", "C-{n:05}"), "customer " + std::to_string(rng() % 1000));
      if (rng() % 10 == 0) throw simulated_rollback();
      tx.after_commit([&] { ++fig.customers; });
    });
  }

  // A work order with a photo: the upload is a message published in the same transaction.
  void new_work_order(std::mt19937& rng, figures& fig) {
    const auto attempt = example::random_hex(16);
    const bool fail = rng() % 7 == 0;
    try {
      db_.write([&](transaction& tx) {
        const auto customer = tx.query_optional<std::int64_t>("SELECT min(id) FROM customers");
        const auto number = issue(tx, "work_order", "WO-{n:06}");
        const auto key = number + "-photo.jpg";
        const auto id = tx.query_one<std::int64_t>(
            "INSERT INTO work_orders(number, customer_id, photo_key) VALUES($1, $2, $3) RETURNING id", number,
            customer.value_or(0), key);
        casecore::outbox::publish(tx, upload_topic, "JPEG bytes of " + number + " attempt " + attempt, key);
        casecore::ordered_list::append(tx, queue_name, queue_key, id);
        if (fail) throw simulated_rollback();
        tx.after_commit([this, &fig, id] {
          ++fig.work_orders;
          std::lock_guard lock(mutex_);
          work_orders_.push_back(id);
        });
      });
    } catch (const simulated_rollback&) {
      ++fig.rolled_back;
      std::lock_guard lock(fig.mutex);
      fig.rolled_back_attempts.insert(attempt);
    }
  }

  void new_repair_order(std::mt19937& rng, figures& fig) {
    guarded(fig, [&](transaction& tx) {
      const auto id = tx.query_one<std::int64_t>("INSERT INTO repair_orders(number) VALUES($1) RETURNING id",
                                                 issue(tx, "repair_order", "RO-{n:06}"));
      if (rng() % 10 == 0) throw simulated_rollback();
      tx.after_commit([this, &fig, id] {
        ++fig.repair_orders;
        std::lock_guard lock(mutex_);
        repairs_.push_back(id);
      });
    });
  }

  // One atomic `qty = qty + delta` bounded at zero: no read-modify-write, no lost update.
  void move_stock(std::mt19937& rng, figures& fig) {
    const auto id = items_[rng() % items_.size()];
    const std::int64_t delta = static_cast<std::int64_t>(rng() % 11) - 6; // -6..+4: shortages happen
    if (delta == 0) return;
    try {
      db_.write([&](transaction& tx) {
        inventory.add(tx, id, "qty", delta, {.min = 0, .max = std::nullopt});
        tx.after_commit([&fig, id, delta] {
          ++fig.deltas;
          std::lock_guard lock(fig.mutex);
          fig.applied[id] += delta;
        });
      });
    } catch (const casecore::error& e) {
      if (e.code() != casecore::errc::constraint_violation) throw;
      ++fig.deltas_refused;
    }
  }

  // The user drags one work order to the front of the queue they see; a stale view is refused.
  void reorder_queue(std::mt19937& rng, figures& fig) {
    const auto seen = db_.read([](transaction& tx) { return casecore::ordered_list::read(tx, queue_name, queue_key); });
    if (seen.items.size() < 2) return;
    auto order = seen.items;
    std::rotate(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(rng() % order.size()), order.end());
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 300));
    try {
      db_.write([&](transaction& tx) { casecore::ordered_list::reorder(tx, queue_name, queue_key, seen.version, order); });
      ++fig.reorders;
    } catch (const casecore::version_conflict&) {
      ++fig.reorder_conflicts;
    }
  }

  // A repair order belongs to at most one work order: a second, different link is refused.
  void link_repair(std::mt19937& rng, figures& fig) {
    std::int64_t repair = 0, wo = 0;
    {
      std::lock_guard lock(mutex_);
      if (repairs_.empty() || work_orders_.empty()) return;
      repair = repairs_[rng() % repairs_.size()];
      wo = work_orders_[rng() % work_orders_.size()];
    }
    try {
      const bool created = db_.write([&](transaction& tx) {
        return casecore::links::link(tx, link_kind, repair, wo, casecore::link_cardinality::many_to_one);
      });
      fig.links += created;
    } catch (const casecore::already_exists&) {
      ++fig.links_refused;
    }
  }

  std::vector<std::int64_t> work_orders() {
    std::lock_guard lock(mutex_);
    return work_orders_;
  }

private:
  template <class F> void guarded(figures& fig, F&& f) {
    try {
      db_.write(f);
    } catch (const simulated_rollback&) {
      ++fig.rolled_back;
    }
  }

  casecore::database& db_;
  std::vector<std::int64_t> items_;
  std::mutex mutex_;
  std::vector<std::int64_t> work_orders_, repairs_;
};

// --- the ML model -------------------------------------------------------------------------------

struct model {
  std::uint64_t generation = 0;
  std::vector<double> weights; // every weight equals the generation: a torn model would mix them
};

struct model_figures {
  std::atomic<std::int64_t> predictions{0}, torn{0}, went_back{0};
  std::atomic<int> accepted{0};
  std::map<std::string, std::string> refused; // what was tried -> verdict
};

std::int64_t unix_now() { return static_cast<std::int64_t>(std::time(nullptr)); }

// The cron job signs its requests; the endpoint verifies them (nonces remembered in the database,
// so a replay is refused by every process) and retrains on success.
void retraining(casecore::database& db, const std::string& secret, int retrains, casecore::snapshot<model>& shared,
                model_figures& mf) {
  casecore::trigger::signer cron(secret);
  casecore::trigger::verifier endpoint(secret, std::make_shared<casecore::trigger::database_nonce_store>(db));
  const auto retrain = [&](const std::string& body, const std::string& header, std::int64_t now) {
    const auto v = endpoint.check("POST", "/ml/retrain", body, header, now);
    if (v != casecore::trigger::verdict::ok) return v;
    shared.update([](const model* cur) {
      std::this_thread::sleep_for(20ms); // training
      const auto g = cur->generation + 1;
      return model{g, std::vector<double>(cur->weights.size(), static_cast<double>(g))};
    });
    ++mf.accepted;
    return v;
  };
  const std::string body = R"({"reason":"nightly"})";
  const auto first = cron.sign("POST", "/ml/retrain", body);
  retrain(body, first, unix_now());
  mf.refused["tampered body"] = casecore::trigger::to_string(retrain(R"({"reason":"nightly","drop":"all"})", first, unix_now()));
  mf.refused["replayed request"] = casecore::trigger::to_string(retrain(body, first, unix_now()));
  const auto old = cron.sign("POST", "/ml/retrain", body, unix_now() - 3600, example::random_hex(32));
  mf.refused["hour-old request"] = casecore::trigger::to_string(retrain(body, old, unix_now()));
  casecore::trigger::signer intruder(example::random_hex(64));
  mf.refused["wrong key"] = casecore::trigger::to_string(retrain(body, intruder.sign("POST", "/ml/retrain", body), unix_now()));
  for (int i = 1; i < retrains; ++i) retrain(body, cron.sign("POST", "/ml/retrain", body), unix_now());
}

void predictions(casecore::snapshot<model>& shared, std::atomic<bool>& stop, model_figures& mf) {
  std::uint64_t last = 0;
  while (!stop.load()) {
    const auto m = shared.load();
    const auto g = static_cast<double>(m.value->generation);
    if (std::any_of(m.value->weights.begin(), m.value->weights.end(), [g](double w) { return w != g; })) ++mf.torn;
    if (m.version < last) ++mf.went_back;
    last = m.version;
    ++mf.predictions;
  }
}

} // namespace

int main(int argc, char** argv) {
  example::args a(argc, argv, "work_orders: Awning's numbers, inventory, queue, links, model, trigger and uploads on casecore");
  const auto url = a.text("--db", "", "database URL (default: SQLite file in a scratch folder)");
  const bool fresh = a.flag("--fresh", "PostgreSQL: run in a new private schema; SQLite: delete the --db file first");
  const bool keep = a.flag("--keep", "keep the scratch folder (and schema) afterwards");
  const int users = static_cast<int>(a.number("--users", 8, 1, 64, "concurrent shop users"));
  const int rounds = static_cast<int>(a.number("--rounds", 60, 1, 100000, "actions per user"));
  const int items = static_cast<int>(a.number("--items", 5, 1, 1000, "inventory items"));
  const int retrains = static_cast<int>(a.number("--retrains", 5, 1, 1000, "signed retraining requests"));
  auto secret = a.text("--secret", "", "shared secret of the retraining trigger (default: a random one)");
  const bool show = !a.flag("--no-progress", "no progress bars");
  a.finish();
  const bool secret_given = !secret.empty();

  try {
    casecore::trigger::check_secret("your-secret-key");
    std::fprintf(stderr, "the seed's default secret was accepted\n");
    return 1;
  } catch (const casecore::invalid_argument&) {
  }
  if (secret.empty()) {
    secret = example::random_hex(64);
  } else {
    try {
      casecore::trigger::check_secret(secret);
    } catch (const casecore::invalid_argument& e) {
      std::fprintf(stderr, "work_orders: --secret refused: %s\n", e.what());
      return 2;
    }
  }

  try {
    example::environment env("work_orders", url, fresh, keep);
    auto& db = env.db();
    const auto steps = schema();
    casecore::migrate(db, steps);
    if (example::scalar(db, "SELECT count(*) FROM issued_numbers") + example::scalar(db, "SELECT count(*) FROM inventory") > 0) {
      std::fprintf(stderr, "work_orders: %s already holds a previous run; use --fresh\n", db.describe().c_str());
      return 2;
    }
    std::printf("work_orders on %s: %d users x %d actions, %d inventory items\n", db.describe().c_str(), users, rounds, items);
    std::printf("trigger secret: %s (the seed's default \"your-secret-key\" is refused)\n",
                secret_given ? "from --secret" : "generated, 64 hex digits");

    std::vector<std::int64_t> item_ids;
    std::map<std::int64_t, std::int64_t> initial;
    db.write([&](transaction& tx) {
      for (int i = 0; i < items; ++i) {
        const auto r = inventory.insert(tx, {"SKU-" + std::to_string(100 + i), 10});
        item_ids.push_back(r.id);
        initial[r.id] = 10;
      }
    });
    auto photos = casecore::make_local_blob_store(env.dir() / "photos", {.fsync = false});
    shop s(db, item_ids);
    figures fig;

    // The drainer uploads photos of committed work orders while the shop is busy.
    std::atomic<bool> shop_closed{false};
    std::atomic<int> uploads{0};
    std::thread drainer([&] {
      for (;;) {
        const auto n = casecore::outbox::drain(db, upload_topic, [&](const casecore::outbox::message& m) {
          photos->put(m.key, m.payload); // idempotent: a redelivery finds the key and keeps it
          ++uploads;
        });
        if (n == 0) {
          if (shop_closed.load() && casecore::outbox::pending(db, upload_topic) == 0) return;
          std::this_thread::sleep_for(10ms);
        }
      }
    });

    const auto t0 = std::chrono::steady_clock::now();
    {
      example::progress bar("shop floor", static_cast<std::int64_t>(users) * rounds, show);
      std::vector<std::thread> staff;
      for (int u = 0; u < users; ++u) {
        staff.emplace_back([&, u] {
          std::mt19937 rng(static_cast<unsigned>(u) * 15485863u + 3);
          for (int i = 0; i < rounds; ++i) {
            switch (i < 3 ? i : rng() % 8) {
            case 0: s.new_customer(rng, fig); break;
            case 1: s.new_work_order(rng, fig); break;
            case 2: s.new_repair_order(rng, fig); break;
            case 3: case 4: s.move_stock(rng, fig); break;
            case 5: s.reorder_queue(rng, fig); break;
            case 6: s.link_repair(rng, fig); break;
            default: s.new_work_order(rng, fig); break;
            }
            bar.add();
          }
        });
      }
      for (auto& t : staff) t.join();
    }
    shop_closed = true;
    drainer.join();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    std::printf("created: %d customers, %d work orders, %d repair orders; %d creations rolled back on purpose (%lld ms)\n",
                fig.customers.load(), fig.work_orders.load(), fig.repair_orders.load(), fig.rolled_back.load(), static_cast<long long>(ms));
    std::printf("inventory: %d deltas applied, %d refused (would go below zero)\n", fig.deltas.load(), fig.deltas_refused.load());
    std::printf("queue: %d reorders applied, %d refused as stale\n", fig.reorders.load(), fig.reorder_conflicts.load());
    std::printf("links: %d repair->work order links, %d conflicting links refused\n", fig.links.load(), fig.links_refused.load());
    std::printf("uploads: %d photos uploaded after commit\n", uploads.load());

    // The model: readers predict while signed triggers retrain it.
    casecore::snapshot<model> shared(std::make_shared<const model>(model{1, std::vector<double>(4096, 1.0)}));
    model_figures mf;
    std::atomic<bool> stop{false};
    std::vector<std::thread> readers;
    for (int r = 0; r < std::min(users, 4); ++r) readers.emplace_back([&] { predictions(shared, stop, mf); });
    retraining(db, secret, retrains, shared, mf);
    stop = true;
    for (auto& t : readers) t.join();
    std::printf("model: %d signed retrains accepted, now version %llu; %lld predictions during retraining\n",
                mf.accepted.load(), static_cast<unsigned long long>(shared.version()), static_cast<long long>(mf.predictions.load()));
    for (const auto& [what, verdict] : mf.refused) std::printf("  trigger %-18s -> %s\n", what.c_str(), verdict.c_str());

    // --- invariants ---------------------------------------------------------------------------------
    example::invariant_report rep;
    db.read([&](transaction& tx) {
      for (auto row : tx.exec("SELECT kind, count(*), count(DISTINCT number), max(n) FROM issued_numbers GROUP BY kind ORDER BY kind")) {
        const auto kind = row.get<std::string>(0);
        const auto count = row.get<std::int64_t>(1), distinct = row.get<std::int64_t>(2), max = row.get<std::int64_t>(3);
        const auto current = casecore::counter::current(tx, kind);
        rep.check("numbers unique and gapless: " + kind, count == distinct && count == max && max == current,
                  std::to_string(count) + " issued, max " + std::to_string(max) + ", counter " + std::to_string(current));
      }
    });
    const auto committed = example::scalar(db, "SELECT count(*) FROM issued_numbers");
    rep.check("rolled-back creations left no number", committed == fig.customers + fig.work_orders + fig.repair_orders,
              example::eq(committed, fig.customers + fig.work_orders + fig.repair_orders) + " committed creations");
    std::int64_t wrong = 0, negative = 0;
    db.read([&](transaction& tx) {
      for (const auto& r : inventory.all(tx)) {
        wrong += r.data.qty != initial[r.id] + fig.applied[r.id];
        negative += r.data.qty < 0;
      }
    });
    rep.check("inventory: no lost update, never negative", wrong == 0 && negative == 0,
              std::to_string(wrong) + " items off their applied deltas, " + std::to_string(negative) + " negative");
    auto expected_queue = s.work_orders();
    std::sort(expected_queue.begin(), expected_queue.end());
    auto queue = db.read([](transaction& tx) { return casecore::ordered_list::read(tx, queue_name, queue_key); }).items;
    std::sort(queue.begin(), queue.end());
    const auto dense = example::scalar(db, "SELECT CASE WHEN count(*) = 0 OR (min(pos) = 0 AND max(pos) = count(*) - 1 AND count(DISTINCT pos) = count(*))"
                                           " THEN 1 ELSE 0 END FROM casecore_list_items WHERE name = 'cleaning_queue'");
    rep.check("queue is always a permutation of work orders", queue == expected_queue && dense == 1,
              std::to_string(queue.size()) + " items, positions " + (dense ? "dense" : "BROKEN"));
    const auto doubly = example::scalar(db, "SELECT count(*) FROM (SELECT from_id FROM casecore_links WHERE kind = 'repair_of' GROUP BY from_id HAVING count(*) > 1) d");
    const auto link_rows = example::scalar(db, "SELECT count(*) FROM casecore_links WHERE kind = 'repair_of'");
    rep.check("links unique, one work order per repair", doubly == 0 && link_rows == fig.links,
              std::to_string(link_rows) + " links, " + std::to_string(doubly) + " repairs linked twice");
    std::int64_t missing = 0, ghost = 0;
    db.read([&](transaction& tx) {
      for (auto row : tx.exec("SELECT photo_key FROM work_orders")) missing += !photos->exists(row.get<std::string>(0));
    });
    for (const auto& b : photos->list()) {
      const auto content = photos->get(b.key);
      const auto attempt = content.substr(content.rfind(' ') + 1);
      std::lock_guard lock(fig.mutex);
      ghost += fig.rolled_back_attempts.count(attempt);
    }
    const auto pending = casecore::outbox::pending(db, upload_topic);
    rep.check("every committed photo uploaded, none of a rollback",
              missing == 0 && ghost == 0 && pending == 0 && static_cast<int>(photos->list().size()) == fig.work_orders,
              std::to_string(photos->list().size()) + " uploads for " + std::to_string(fig.work_orders.load()) + " work orders, " +
                  std::to_string(ghost) + " from rolled-back attempts, " + std::to_string(pending) + " pending");
    rep.check("model: readers never saw a torn or older model", mf.torn == 0 && mf.went_back == 0,
              std::to_string(mf.torn.load()) + " torn, " + std::to_string(mf.went_back.load()) + " went back");
    rep.check("model: one version per accepted trigger", shared.version() == static_cast<std::uint64_t>(mf.accepted + 1),
              example::eq(static_cast<long long>(shared.version()), mf.accepted + 1));
    const bool all_refused = std::all_of(mf.refused.begin(), mf.refused.end(), [](const auto& kv) { return kv.second != "ok"; });
    rep.check("trigger: tampered, replayed, expired, wrong-key refused", all_refused && mf.accepted == retrains,
              std::to_string(mf.refused.size()) + " forgeries refused, " + std::to_string(mf.accepted.load()) + " of " +
                  std::to_string(retrains) + " genuine accepted");
    rep.print();
    return rep.exit_code();
  } catch (const casecore::error& e) {
    std::fprintf(stderr, "work_orders: %s\n", e.what());
    return 2;
  }
}
