#include <casecore/snapshot.hpp>
#include <casecore/testing/race.hpp>
#include <doctest/doctest.h>

#include <atomic>
#include <numeric>
#include <vector>

using namespace casecore;

namespace {
// A "model" whose invariant is easy to check: every weight equals the generation, and the checksum
// is their sum. A torn read (half old, half new) breaks it.
struct model {
  std::uint64_t generation = 0;
  std::vector<std::uint64_t> weights;
  std::uint64_t checksum = 0;
};

model make_model(std::uint64_t g) {
  model m;
  m.generation = g;
  m.weights.assign(256, g);
  m.checksum = std::accumulate(m.weights.begin(), m.weights.end(), std::uint64_t{0});
  return m;
}

bool consistent(const model& m) {
  for (auto w : m.weights)
    if (w != m.generation) return false;
  return m.checksum == m.generation * m.weights.size();
}
} // namespace

TEST_CASE("snapshot: empty until published, then versions count up with their publication time") {
  snapshot<model> s;
  CHECK(s.get() == nullptr);
  CHECK(s.version() == 0);
  const auto before = std::chrono::system_clock::now();
  CHECK(s.publish(make_model(1)) == 1);
  CHECK(s.publish(make_model(2)) == 2);
  const auto v = s.load();
  CHECK(v.version == 2);
  CHECK(v.value->generation == 2);
  CHECK(v.published_at >= before);
  CHECK_THROWS_AS(s.publish(std::shared_ptr<const model>{}), invalid_argument);
  CHECK(s.version() == 2);
}

TEST_CASE("snapshot: a reader keeps its version while newer ones are published") {
  snapshot<model> s(std::make_shared<const model>(make_model(1)));
  auto held = s.get();
  s.publish(make_model(2));
  CHECK(held->generation == 1);
  CHECK(consistent(*held));
  CHECK(s.get()->generation == 2);
}

TEST_CASE("snapshot: readers never observe a torn state while writers publish") {
  snapshot<model> s(std::make_shared<const model>(make_model(1)));
  std::atomic<bool> torn{false}, backwards{false};
  std::atomic<int> writers_done{0};
  constexpr int writers = 2, publishes = 300;
  casecore::testing::race(8, [&](std::size_t i) {
    if (i < writers) {
      for (int k = 0; k < publishes; ++k) s.update([](const model* cur) { return make_model(cur->generation + 1); });
      ++writers_done;
      return;
    }
    std::uint64_t last_version = 0;
    while (writers_done < writers) {
      const auto v = s.load();
      if (!consistent(*v.value) || v.value->generation != v.version) torn = true;
      if (v.version < last_version) backwards = true;
      last_version = v.version;
    }
  });
  CHECK_FALSE(torn);
  CHECK_FALSE(backwards);
  // update() serialises publishers: no update was lost.
  CHECK(s.version() == 1 + writers * publishes);
  CHECK(s.get()->generation == 1 + writers * publishes);
}

TEST_CASE("snapshot: a throwing update publishes nothing") {
  snapshot<model> s(std::make_shared<const model>(make_model(1)));
  CHECK_THROWS_AS(s.update([](const model*) -> model { throw std::runtime_error("training failed"); }), std::runtime_error);
  CHECK(s.version() == 1);
  CHECK(s.update([](const model* cur) { return std::make_shared<const model>(make_model(cur->generation + 1)); }) == 2);
}
