#!/usr/bin/env bash
# One command to install crm-admin with its test tools into .venv and run ruff, mypy and the whole
# test suite (SQLite by default; set CRM_TEST_DATABASE_URL=mysql+pymysql://... for MariaDB/MySQL).
# Usage: scripts/test.sh [--no-lint] [pytest arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
lint=1
if [ "${1:-}" = "--no-lint" ]; then lint=0; shift; fi

./scripts/install.sh --test
if [ "$lint" = 1 ]; then
  echo "== ruff"
  .venv/bin/ruff check crm_admin tests
  echo "== mypy"
  .venv/bin/mypy
fi
echo "== pytest (${CRM_TEST_DATABASE_URL:-SQLite})"
.venv/bin/python -m pytest "$@"
