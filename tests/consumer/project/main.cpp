#include <casecore/migration.hpp>
#include <casecore/open.hpp>

#include <cstdio>

int main() {
  auto db = casecore::open("sqlite::memory:");
  casecore::migrate(db);
  const auto n = db.write([](casecore::transaction& tx) { return tx.query_one<int>("SELECT $1 + 1", 41); });
  std::printf("consumer: %d\n", n);
  return n == 42 ? 0 : 1;
}
