// Hosts for real: worker processes in separate network namespaces (scripts/netns.sh) that share
// nothing but PostgreSQL, reached over veth addresses. Needs root; skips with a message otherwise.
#include <casecore/counter.hpp>
#include <casecore/migration.hpp>
#include <casecore/open.hpp>
#include <casecore/testing/fixture.hpp>
#include <casecore/testing/process.hpp>
#include <doctest/doctest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <list>
#include <set>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

using namespace casecore;

namespace {

// Runs `env_prefix scripts/<script>` through sh; returns its exit status, its stdout in `out`.
int run_script(const std::string& script, std::string* out = nullptr, const std::string& env_prefix = {}) {
  const std::string cmd = env_prefix + " " + std::string(CASECORE_SOURCE_DIR) + "/scripts/" + script + " 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return -1;
  std::array<char, 512> buf{};
  while (std::fgets(buf.data(), buf.size(), p))
    if (out) *out += buf.data();
  const int rc = ::pclose(p);
  if (out)
    while (!out->empty() && out->back() == '\n') out->pop_back();
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

} // namespace

// A host: writes gapless numbers through its own veth address, and shows it cannot reach the
// machine's loopback (where the same server listens too): PostgreSQL over the wire is all it shares.
CASECORE_CHILD(netns_host_worker) {
  const std::string& url = args.at(0);
  const std::string& loopback_url = args.at(1);
  const int rounds = std::stoi(args.at(2));
  const std::string& host = args.at(3);
  try {
    casecore::open(loopback_url + "?connect_timeout=1");
    std::printf("reached loopback\n");
    return 4;
  } catch (const error&) {
  }
  auto db = casecore::open(url);
  for (int i = 0; i < rounds; ++i) {
    const auto n = db.write([&](transaction& tx) {
      const auto number = counter::next(tx, "wo");
      tx.exec("INSERT INTO orders(n, host) VALUES($1, $2)", number, host);
      return number;
    });
    std::printf("%lld\n", static_cast<long long>(n));
  }
  return 0;
}

TEST_CASE("hosts in separate network namespaces share only PostgreSQL: gapless numbers across them") {
  if (::geteuid() != 0) {
    MESSAGE("skipped: network namespaces need root (run the suite as root, as CI does)");
    return;
  }
  const auto tag = std::to_string(::getpid() % 100000);
  const std::string name = "h" + tag;
  const int net = 100 + static_cast<int>(::getpid() % 150);
  std::string hosts;
  const int rc = run_script("netns.sh up " + name + " 2 " + std::to_string(net), &hosts);
  if (rc == 77) {
    MESSAGE("skipped: this machine does not allow network namespaces (scripts/netns.sh exited 77)");
    return;
  }
  REQUIRE(rc == 0);
  const auto dir = testing::temp_root() / ("casecore-hosts-" + tag);
  struct cleanup {
    std::string name;
    std::filesystem::path dir;
    ~cleanup() {
      run_script("pg-cluster.sh stop " + (dir / "pg").string());
      run_script("netns.sh down " + name + " 2");
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } down{name, dir};
  std::filesystem::create_directories(dir);
  const std::array<std::string, 2> gateway{"10." + std::to_string(net) + ".1.1", "10." + std::to_string(net) + ".2.1"};
  std::string url;
  REQUIRE(run_script("pg-cluster.sh start " + (dir / "pg").string(), &url,
                     "CASECORE_PG_LISTEN=127.0.0.1," + gateway[0] + "," + gateway[1]) == 0);
  {
    auto db = casecore::open(url);
    migrate(db);
    db.write([](transaction& tx) { tx.exec_script("CREATE TABLE orders(n BIGINT PRIMARY KEY, host TEXT NOT NULL)"); });
  }
  const auto port = url.substr(url.rfind(':') + 1, url.rfind('/') - url.rfind(':') - 1);
  std::list<testing::child_process> workers;
  for (int k = 0; k < 2; ++k)
    for (int w = 0; w < 2; ++w) {
      testing::child_options o;
      o.netns = name + "-h" + std::to_string(k + 1);
      o.cwd = dir.string();
      workers.emplace_back("netns_host_worker",
                           std::vector<std::string>{"postgresql://postgres@" + gateway[static_cast<std::size_t>(k)] + ":" + port + "/casecore_test",
                                                    url, "60", "host" + std::to_string(k + 1)},
                           o);
    }
  for (auto& w : workers) {
    const auto r = w.wait();
    CHECK(r.exit_code == 0);
  }
  auto db = casecore::open(url);
  const auto rows = db.read([](transaction& tx) {
    std::vector<std::pair<std::int64_t, std::string>> out;
    for (auto r : tx.exec("SELECT n, host FROM orders ORDER BY n")) out.emplace_back(r.get<std::int64_t>(0), r.get<std::string>(1));
    return out;
  });
  REQUIRE(rows.size() == 240);
  std::set<std::string> seen_hosts;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    CHECK(rows[i].first == static_cast<std::int64_t>(i + 1)); // gapless across hosts
    seen_hosts.insert(rows[i].second);
  }
  CHECK(seen_hosts == std::set<std::string>{"host1", "host2"});
  // Every connection came over a veth address, none over loopback.
  CHECK(db.read([](transaction& tx) {
    return tx.query_one<std::int64_t>("SELECT count(*) FROM pg_stat_activity WHERE client_addr IS NOT NULL");
  }) >= 1);
}
