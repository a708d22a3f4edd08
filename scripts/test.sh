#!/usr/bin/env bash
# One command to install crm-admin with its test tools into .venv and run ruff, mypy and the whole
# test suite (SQLite by default; set CRM_TEST_DATABASE_URL=mysql+pymysql://... for MariaDB/MySQL).
# Usage: scripts/test.sh [--no-lint] [pytest arguments...]
# A lint failure does not stop the tests (you see everything at once) but fails the run at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
lint=1
if [ "${1:-}" = "--no-lint" ]; then lint=0; shift; fi

./scripts/install.sh --test
lint_failed=0
if [ "$lint" = 1 ]; then
  echo "== ruff"
  .venv/bin/ruff check crm_admin tests || lint_failed=1
  echo "== mypy"
  .venv/bin/mypy || lint_failed=1
  echo "== import-linter (layering)"
  .venv/bin/lint-imports --no-cache || lint_failed=1
  echo "== bandit (medium and higher)"
  .venv/bin/bandit -q -c pyproject.toml -r crm_admin --severity-level medium || lint_failed=1
fi
echo "== pytest (${CRM_TEST_DATABASE_URL:-SQLite})"
status=0
# the whole suite runs on every core (each worker has a database of its own); a chosen test runs alone
parallel=()
if [ "$#" = 0 ]; then parallel=(-n auto); fi
.venv/bin/python -m pytest "${parallel[@]}" "$@" || status=$?
if [ "$status" = 0 ] && [ "$lint_failed" = 1 ]; then
  echo "ruff/mypy 检查未通过(见上方输出)" >&2
  status=1
fi
exit "$status"
