#!/usr/bin/env bash
# One command on a new machine: install into .venv, migrate, seed, and start crm-admin on the embedded
# SQLite database (data/ in this folder). Extra arguments go to `crm-admin serve` (e.g. --port 8080).
# Set CRM_DATABASE_URL (or a .env file) to use MySQL/MariaDB instead.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
exec .venv/bin/crm-admin serve "$@"
