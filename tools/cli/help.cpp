// What the `casecore` command line says about itself, generated from its own command table (the
// CLI11 App tree), so help, completion and the manual page can never disagree with the commands:
// `casecore completion bash`, `casecore man`, and the "unknown command" message (tools/cli/cli.hpp).
#include "cli.hpp"

#include <algorithm>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>

namespace casecore::cli {
namespace {

std::vector<const CLI::App*> subcommands(const CLI::App& app) {
  return app.get_subcommands([](const CLI::App* a) { return !a->get_group().empty(); }); // hidden: group ""
}

const CLI::App* find_subcommand(const CLI::App& app, std::string_view name) {
  for (const auto* s : subcommands(app))
    if (s->get_name() == name) return s;
  return nullptr;
}

/// The option `name` ("--db", "-x") as `app` or a parent (fallthrough) knows it.
const CLI::Option* find_option(const CLI::App* app, const std::string& name) {
  for (; app; app = app->get_parent())
    if (const auto* o = app->get_option_no_throw(name)) return o;
  return nullptr;
}

/// "--scope" names of the visible, named options of `app` (positionals excluded).
std::vector<std::string> option_names(const CLI::App& app) {
  std::vector<std::string> out;
  for (const auto* o : app.get_options([](const CLI::Option* o) { return !o->get_group().empty(); })) {
    for (const auto& l : o->get_lnames()) out.push_back("--" + l);
    for (const auto& s : o->get_snames()) out.push_back("-" + s);
  }
  return out;
}

std::string join(const std::vector<std::string>& v, const char* sep = " ") {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

/// One bash `case` arm per command path: what may follow it.
void bash_arms(const CLI::App& app, const std::string& path, std::ostringstream& out) {
  std::vector<std::string> words;
  for (const auto* s : subcommands(app)) words.push_back(s->get_name());
  for (auto& o : option_names(app)) words.push_back(o);
  // Options of the parents fall through (--db, --json may follow any command).
  for (const auto* p = app.get_parent(); p; p = p->get_parent())
    for (auto& o : option_names(*p)) words.push_back(o);
  std::vector<std::string> unique;
  for (auto& w : words)
    if (std::find(unique.begin(), unique.end(), w) == unique.end()) unique.push_back(w);
  out << "    \"" << path << "\") words=\"" << join(unique) << "\" ;;\n";
  for (const auto* s : subcommands(app)) bash_arms(*s, path.empty() ? s->get_name() : path + " " + s->get_name(), out);
}

/// False for flags (CLI11 marks them expected(0)).
bool takes_value(const CLI::Option& o) { return o.get_expected_max() != 0; }

/// What an option's value is called in a synopsis ("TEXT", "INT", ...).
std::string value_name(const CLI::Option& o) {
  if (!o.get_option_text().empty()) return o.get_option_text();
  const auto t = o.get_type_name();
  return t.empty() ? "VALUE" : t;
}

/// troff text: a backslash doubled, a leading '.' or '\'' escaped, '-' as \- (a real minus).
std::string roff(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\') out += "\\e";
    else if (c == '-') out += "\\-";
    else out += c;
  }
  if (!out.empty() && (out[0] == '.' || out[0] == '\'')) out.insert(0, "\\&");
  return out;
}

std::string usage_of(const CLI::App& app, const std::string& path) {
  std::string u = path;
  for (const auto* o : app.get_options([](const CLI::Option* o) { return !o->get_group().empty(); })) {
    if (o->get_name() == "--help" || o->get_name().empty()) continue;
    if (o->get_positional()) {
      const auto n = o->get_name(true);
      u += o->get_required() ? " " + n : " [" + n + "]";
    } else {
      const auto n = o->get_lnames().empty() ? "-" + o->get_snames().at(0) : "--" + o->get_lnames().at(0);
      const auto v = !takes_value(*o) ? n : n + " " + value_name(*o);
      u += o->get_required() ? " " + v : " [" + v + "]";
    }
  }
  if (!subcommands(app).empty()) u += " COMMAND";
  return u;
}

void man_commands(const CLI::App& app, const std::string& path, std::ostringstream& out) {
  for (const auto* s : subcommands(app)) {
    const auto p = path.empty() ? s->get_name() : path + " " + s->get_name();
    if (subcommands(*s).empty() || !s->get_options([](const CLI::Option* o) { return !o->get_group().empty() && o->get_name() != "--help"; }).empty()) {
      out << ".TP\n.B " << roff(usage_of(*s, p)) << "\n" << roff(s->get_description()) << "\n";
      for (const auto* o : s->get_options([](const CLI::Option* o) { return !o->get_group().empty() && !o->get_positional(); })) {
        if (o->get_name() == "--help") continue;
        out << ".RS\n.TP\n.B " << roff(o->get_name(false, true)) << "\n" << roff(o->get_description()) << "\n.RE\n";
      }
    }
    man_commands(*s, p, out);
  }
}

} // namespace

std::optional<std::string> unknown_command(const CLI::App& app, int argc, const char* const* argv) {
  const CLI::App* cur = &app;
  std::string path = "casecore";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--") break;
    if (a.size() > 1 && a[0] == '-') {
      // An option that takes a value consumes the next word unless written --opt=value.
      const auto eq = a.find('=');
      const auto* o = find_option(cur, a.substr(0, eq));
      if (o && takes_value(*o) && eq == std::string::npos) ++i;
      continue;
    }
    if (const auto* s = find_subcommand(*cur, a)) {
      cur = s;
      path += " " + a;
      continue;
    }
    if (subcommands(*cur).empty()) return std::nullopt; // a positional argument of a command
    std::vector<std::string> known;
    for (const auto* s : subcommands(*cur)) known.push_back(s->get_name());
    return "unknown command '" + a + "'" + (cur == &app ? "" : " for '" + path + "'") + "; commands: " + join(known, ", ") +
           " (see " + path + " --help)";
  }
  return std::nullopt;
}

std::string bash_completion(const CLI::App& app) {
  std::ostringstream out;
  out << "# bash completion for casecore (generated by `casecore completion bash` from its command table)\n"
         "# Install: casecore completion bash > /etc/bash_completion.d/casecore (or source it from ~/.bashrc).\n"
         "_casecore() {\n"
         "  local cur=${COMP_WORDS[COMP_CWORD]} path=\"\" w i words\n"
         "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
         "    w=${COMP_WORDS[i]}\n"
         "    case $w in\n"
         "      --db) ((i++)) ;;\n"
         "      -*) ;;\n"
         "      *) case \" $(_casecore_words \"$path\") \" in *\" $w \"*) path=${path:+$path }$w ;; esac ;;\n"
         "    esac\n"
         "  done\n"
         "  if [[ ${COMP_WORDS[COMP_CWORD-1]} == --db ]]; then COMPREPLY=($(compgen -f -- \"$cur\")); return; fi\n"
         "  COMPREPLY=($(compgen -W \"$(_casecore_words \"$path\")\" -- \"$cur\"))\n"
         "}\n"
         "_casecore_words() {\n"
         "  local words=\"\"\n"
         "  case $1 in\n";
  bash_arms(app, "", out);
  out << "  esac\n"
         "  echo \"$words\"\n"
         "}\n"
         "complete -F _casecore casecore\n";
  return out.str();
}

std::string man_page(const CLI::App& app) {
  std::ostringstream out;
  out << ".\\\" casecore(1): generated by `casecore man` from the command table; do not edit.\n"
         ".\\\" Regenerate: cmake --build <build> --target casecore_man (the ctest docs.man_page checks it).\n"
         ".TH CASECORE 1 \"\" \"casecore\" \"casecore manual\"\n"
         ".SH NAME\ncasecore \\- " << roff(app.get_description().substr(app.get_description().find(':') + 2)) << "\n"
         ".SH SYNOPSIS\n.B casecore\n[\\-\\-db URL] [\\-\\-json] COMMAND ...\n"
         ".SH DESCRIPTION\nThe operator's command line of the casecore library: see and repair casecore state (counters, files,\n"
         "leases, jobs, the outbox, schema versions) without writing code. Text output is escaped for the terminal;\n"
         "\\-\\-json output is valid UTF\\-8 JSON. See docs/cli.md.\n"
         ".SH OPTIONS\n";
  for (const auto* o : app.get_options([](const CLI::Option* o) { return !o->get_group().empty(); })) {
    out << ".TP\n.B " << roff(o->get_name(false, true)) << (!takes_value(*o) ? "" : " " + roff(value_name(*o)))
        << "\n" << roff(o->get_description()) << (o->get_envname().empty() ? "" : " (environment: " + roff(o->get_envname()) + ")") << "\n";
  }
  out << ".SH COMMANDS\n";
  man_commands(app, "", out);
  out << ".SH EXIT STATUS\n"
         ".TP\n.B 0\nsuccess\n"
         ".TP\n.B 1\nany other error\n"
         ".TP\n.B 2\nbad command line, unknown command, URL, argument or configuration\n"
         ".TP\n.B 3\ndatabase unreachable, busy or timed out\n"
         ".TP\n.B 4\nthe named object does not exist\n"
         ".TP\n.B 5\na concurrent change won (version, state, lease)\n"
         ".SH ERRORS\nErrors are one line on standard error: \"casecore: MESSAGE [CODE]\". With \\-\\-json, standard output\n"
         "also carries one JSON document {\"error\":{\"code\":CODE,\"message\":MESSAGE,\"exit\":STATUS}}.\n"
         ".SH ENVIRONMENT\n.TP\n.B CASECORE_DB\nthe default of \\-\\-db\n"
         ".TP\n.B CASECORE_BLOBS\nthe blob folder of file register when \\-\\-blobs is not given\n"
         ".SH SEE ALSO\nThe casecore documentation: docs/cli.md in the source tree.\n";
  return out.str();
}

void add_help_commands(CLI::App& app, action& run) {
  auto* completion = app.add_subcommand("completion", "Print a shell completion script (bash) made from the command table");
  auto shell = std::make_shared<std::string>();
  completion->add_option("SHELL", *shell, "The shell (bash)")->required()->check(CLI::IsMember({"bash"}));
  app.add_subcommand("man", "Print the manual page casecore(1) as troff (man -l <(casecore man))")
      ->callback([&app, &run] { run = [&app] { std::cout << man_page(app); }; });
  // The callback owns the option's storage (CLI11 only validates it: bash is the one shell).
  completion->callback([&app, &run, shell] { run = [&app] { std::cout << bash_completion(app); }; });
}

} // namespace casecore::cli
