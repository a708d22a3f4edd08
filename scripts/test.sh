#!/usr/bin/env bash
# Installs the project with its test tools into .venv (Python 3.12 via pyenv when available) and runs
# the linters and the whole test suite. Extra arguments after --no-lint go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
lint=1
if [ "${1:-}" = "--no-lint" ]; then lint=0; shift; fi

if [ ! -x .venv/bin/python ]; then
  py=""
  for cand in python3.13 python3.12 "$(command -v pyenv >/dev/null 2>&1 && pyenv which python3.12 2>/dev/null || true)"; do
    if [ -n "$cand" ] && command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
      py="$cand"; break
    fi
  done
  if [ -z "$py" ]; then echo "需要 Python 3.12 或更高版本" >&2; exit 1; fi
  "$py" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

if [ "$lint" = 1 ]; then
  .venv/bin/ruff check crm_admin tests
  .venv/bin/mypy
fi
.venv/bin/python -m pytest "$@"
