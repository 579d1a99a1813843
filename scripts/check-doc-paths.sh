#!/usr/bin/env bash
# Fails when a doc page points outside the repository (../shared/..., /work/...) or at a temporary
# path (/tmp/...): a reader's checkout has neither. Usage: scripts/check-doc-paths.sh [REPO_ROOT]
# Checks docs/*.md and README.md (CASECORE_DOC_PATHS_README=0 leaves README.md out).
set -euo pipefail
root=${1:-$(git -C "$(dirname "$0")" rev-parse --show-toplevel)}
files=("$root"/docs/*.md)
[[ ${CASECORE_DOC_PATHS_README:-1} == 1 ]] && files+=("$root/README.md")
# ../shared (out of the tree), /work/ (a development machine), /tmp/ not inside a longer path
pattern='(\.\./)+shared|(^|[^A-Za-z0-9_.~-])/work/|(^|[^A-Za-z0-9_.~-])/tmp/'
if grep -nE "$pattern" "${files[@]}"; then
  echo "check-doc-paths: the lines above point outside the repository or at a temporary path" >&2
  exit 1
fi
echo "check-doc-paths: ${#files[@]} pages clean"
