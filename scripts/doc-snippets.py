#!/usr/bin/env python3
"""Extract every ```cpp block of README.md and docs/*.md (and every @code block of a header's ///
comments) into a translation unit of its own, so the examples are compiled and can never drift.

Usage: scripts/doc-snippets.py --out DIR [--with-postgres] [--include-dir DIR] FILE.md|FILE.hpp...

Every ```cpp block must be preceded (directly, on the line before the fence) by an HTML comment that
says how to compile it, invisible on GitHub:

    <!-- snippet: body(casecore::database& db, const std::string& sku)
    struct pdf {};                       <- optional hidden prelude: declarations the text assumes
    pdf render_pdf(const std::string&);
    -->

In a header the marker is a /// line too (`/// <!-- snippet: body() -->` before `/// @code`); Doxygen
drops HTML comments from its output.

Modes:
  file               the block is a whole translation unit (its own #includes), compiled as written
  body(PARAMS)       the block is the body of `void f(PARAMS)` (`body(PARAMS) -> T`: of `T f(PARAMS)`); its leading #include lines stay at file
                     scope; every public casecore header is included first and
                     `using namespace std::chrono_literals;` is in effect
  skip: REASON       not compiled (say why: e.g. an outline of a third-party adapter)
A word `postgres` after the mode marks a block that needs the PostgreSQL backend (dropped when the
build has CASECORE_WITH_POSTGRES=OFF). The hidden prelude goes after the includes, before the block.

A block without a marker is an error: a new snippet can never silently escape the build. #line
directives make the compiler's messages point at the Markdown file and line.
Writes DIR/<file>_<line>.cpp for each compiled block and DIR/snippets.cmake listing them.
"""
import argparse
import os
import re
import sys

MARK = re.compile(r"^<!--\s*snippet:\s*(file|body\((?P<params>[^)]*)\)(\s*->\s*(?P<ret>[\w:]+))?|skip:\s*(?P<reason>.+?))(?P<flags>(\s+postgres)*)\s*$")


def blocks(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    if path.endswith(".hpp"):  # a header's @code blocks in its /// comments
        def doc(l):
            l = l.strip()
            if not l.startswith("///"):
                return ""
            l = l[4:] if l.startswith("/// ") else l[3:]
            return {"@code": "```cpp", "@endcode": "```"}.get(l.strip(), l)
        lines = [doc(l) for l in lines]
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```cpp":
            start = i + 1
            end = start
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            # the marker: an HTML comment ending on the line before the fence
            marker, prelude = None, []
            j = i - 1
            if j >= 0 and lines[j].rstrip().endswith("-->"):
                k = j
                while k >= 0 and not lines[k].lstrip().startswith("<!--"):
                    k -= 1
                if k >= 0:
                    first = lines[k].strip()
                    body = lines[k + 1:j + 1]
                    if first.endswith("-->") and k == j:
                        first = first[:-3].rstrip()
                        body = []
                    else:
                        body[-1] = body[-1].rstrip()[:-3]
                    marker, prelude = first, body
            yield start + 1, lines[start:end], marker, prelude  # 1-based line of the first code line
            i = end + 1
        else:
            i += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--with-postgres", action="store_true")
    ap.add_argument("--include-dir", action="append", default=[])
    ap.add_argument("--root", default=".")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()

    headers = []
    for inc in a.include_dir:
        for sub in ("casecore", "casecore/ports", "casecore/sqlite") + (("casecore/postgres",) if a.with_postgres else ()):
            d = os.path.join(inc, sub)
            if os.path.isdir(d):
                headers += sorted(f"{sub}/{f}" for f in os.listdir(d) if f.endswith(".hpp"))

    os.makedirs(a.out, exist_ok=True)
    errors, outputs, skipped = [], [], 0
    for md in a.files:
        rel = os.path.relpath(md, a.root)
        stem = re.sub(r"[^A-Za-z0-9]+", "_", os.path.splitext(rel)[0])
        for line, code, marker, prelude in blocks(md):
            m = MARK.match(marker) if marker else None
            if not m:
                errors.append(f"{rel}:{line - 1}: ```cpp block without a <!-- snippet: file|body(...)|skip: why --> marker"
                              + (f" (found: {marker!r})" if marker else ""))
                continue
            if m.group("reason"):
                skipped += 1
                continue
            if "postgres" in m.group("flags") and not a.with_postgres:
                skipped += 1
                continue
            out = [f"// Generated by scripts/doc-snippets.py from {rel}:{line}. Do not edit."]
            if m.group(1) == "file":
                out += [f'#line {line - len(prelude) - 1} "{rel}"'] + prelude + [f'#line {line} "{rel}"'] + code
            else:
                includes = []
                while code and (code[0].startswith("#include") or not code[0].strip()):
                    includes.append(code.pop(0))
                first = line + len(includes)
                out += [f"#include <{h}>" for h in headers]
                out += [f'#line {line} "{rel}"'] + includes
                out += ["using namespace std::chrono_literals;"]
                out += [f'#line {line - len(prelude) - 1} "{rel}"'] + prelude
                ret = m.group("ret") or "void"
                out += [f"[[maybe_unused]] static {ret} casecore_doc_snippet({m.group('params')}) {{",
                        f'#line {first} "{rel}"'] + code + ([] if ret == "void" else ["return {};"]) + ["}"]
            name = f"{stem}_{line}.cpp"
            path = os.path.join(a.out, name)
            text = "\n".join(out) + "\n"
            if not os.path.exists(path) or open(path, encoding="utf-8").read() != text:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
            outputs.append(path)
    for e in errors:
        print(e, file=sys.stderr)
    with open(os.path.join(a.out, "snippets.cmake"), "w", encoding="utf-8") as f:
        f.write("set(casecore_doc_snippet_sources\n" + "".join(f'  "{p}"\n' for p in outputs) + ")\n")
    print(f"doc-snippets: {len(outputs)} to compile, {skipped} skipped, {len(errors)} unmarked")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
