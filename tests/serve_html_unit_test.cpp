// The HTML escaping of `casecore serve`'s pages (tools/cli/html.hpp).
#include "../tools/cli/html.hpp"

#include <doctest/doctest.h>

using casecore::cli::html;
using casecore::cli::url_component;

TEST_CASE("html: markup and quotes become character references") {
  CHECK(html("") == "");
  CHECK(html("plain text 123") == "plain text 123");
  CHECK(html("<script>alert(1)</script>") == "&lt;script&gt;alert(1)&lt;/script&gt;");
  CHECK(html("a & b") == "a &amp; b");
  CHECK(html("&amp;") == "&amp;amp;"); // escaping is not idempotent on purpose: text stays text
  CHECK(html("\"><img src=x onerror='y'>") == "&quot;&gt;&lt;img src=x onerror=&#39;y&#39;&gt;");
  // Nothing that can open a tag, end an attribute or start an entity survives.
  const std::string all = "<>&\"'";
  for (char c : html(all)) CHECK((c != '<' && c != '>' && c != '"' && c != '\''));
}

TEST_CASE("html: UTF-8 kept, controls and invalid bytes replaced") {
  CHECK(html("Grüße 日本 😀") == "Grüße 日本 😀");
  CHECK(html("tab\there\nline\r") == "tab\there\nline\r");
  const std::string repl = "\xEF\xBF\xBD";
  CHECK(html(std::string("a\0b", 3)) == "a" + repl + "b");
  CHECK(html("\x1b[31m") == repl + "[31m");
  CHECK(html("\x7f") == repl);
  CHECK(html("\xC2\x85") == repl);             // C1 control (NEL)
  CHECK(html("\xC0\xBC") == repl + repl);      // overlong '<'
  CHECK(html("\xE0\x80\xBC") == repl + repl + repl); // overlong '<', three bytes
  CHECK(html("\xED\xA0\x80") == repl + repl + repl); // UTF-16 surrogate
  CHECK(html("\xF4\x90\x80\x80") == repl + repl + repl + repl); // above U+10FFFF
  CHECK(html("ab\xE6\x97") == "ab" + repl + repl); // truncated sequence at the end
}

TEST_CASE("url_component: only unreserved characters stay") {
  CHECK(url_component("alpha-1._~") == "alpha-1._~");
  CHECK(url_component("a b&c=d/<x>\"") == "a%20b%26c%3Dd%2F%3Cx%3E%22");
  CHECK(url_component("ü") == "%C3%BC");
}
