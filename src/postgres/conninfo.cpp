#include "conninfo.hpp"

#include <casecore/error.hpp>

#include <map>

namespace casecore::postgres::internal {

std::string quote_conninfo(const std::string& value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\\' || c == '\'') out += '\\';
    out += c;
  }
  out += '\'';
  return out;
}

std::string libpq_conninfo(const database_url& url, target which) {
  if (url.scheme != "postgresql") raise(errc::bad_url, "not a postgresql URL: " + url.masked);
  std::vector<url_host> hosts = url.hosts;
  if (which == target::replicas) {
    const auto it = url.casecore.find("replicas");
    if (it == url.casecore.end()) raise(errc::invalid_argument, "the URL names no replicas");
    hosts = parse_url("postgresql://" + it->second + "/").hosts;
  }
  std::map<std::string, std::string> kv;
  std::string host_list, port_list;
  bool any_port = false;
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    if (i) {
      host_list += ',';
      port_list += ',';
    }
    host_list += hosts[i].host;
    port_list += hosts[i].port;
    any_port = any_port || !hosts[i].port.empty();
  }
  if (!host_list.empty() && host_list.find_first_not_of(',') != std::string::npos) kv["host"] = host_list;
  if (any_port) kv["port"] = port_list;
  if (!url.user.empty()) kv["user"] = url.user;
  if (!url.password.empty()) kv["password"] = url.password;
  if (!url.dbname.empty()) kv["dbname"] = url.dbname;
  for (const auto& [k, v] : url.driver) kv[k] = v; // explicit query parameters win, as in libpq
  if (which == target::replicas) {
    kv["target_session_attrs"] = "prefer-standby";
    for (auto k : {"host", "hostaddr", "port"})
      if (url.driver.count(k) && k != std::string("host")) kv.erase(k);
    kv["host"] = host_list;
    if (any_port) kv["port"] = port_list;
    else kv.erase("port");
  } else if (hosts.size() > 1 && !kv.count("target_session_attrs")) {
    kv["target_session_attrs"] = "read-write"; // after a failover, only the new primary takes writes
  }
  if (!kv.count("connect_timeout")) kv["connect_timeout"] = "5";
  if (!kv.count("application_name")) kv["application_name"] = "casecore";
  std::string out;
  for (const auto& [k, v] : kv) {
    if (!out.empty()) out += ' ';
    out += k + "=" + quote_conninfo(v);
  }
  return out;
}

} // namespace casecore::postgres::internal
