#!/usr/bin/env bash
# Creates .venv with Python >= 3.12 (pyenv's 3.12 when the system python3 is older) and installs
# crm-admin into it (editable: the shipped seed/, policies/ and rbac_model.conf are read in place).
# Usage: scripts/install.sh [--test]   (--test also installs the test tools: pytest, Playwright, ruff, mypy)
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
if [ "${1:-}" = "--test" ]; then extras="[test]"; fi

is_new_enough() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; }

if [ -x .venv/bin/python ] && ! is_new_enough .venv/bin/python; then
  echo "现有 .venv 的 Python 版本低于 3.12,重新创建。" >&2
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  py=""
  candidates=(python3.13 python3.12 python3)
  if command -v pyenv >/dev/null 2>&1; then
    candidates+=("$(pyenv which python3.12 2>/dev/null || true)" "$(pyenv which python3.13 2>/dev/null || true)")
    for dir in "$(pyenv root)"/versions/3.1[2-9]*; do [ -x "$dir/bin/python3" ] && candidates+=("$dir/bin/python3"); done
  fi
  for cand in "${candidates[@]}"; do
    if [ -n "$cand" ] && command -v "$cand" >/dev/null 2>&1 && is_new_enough "$cand"; then
      py="$(command -v "$cand")"; break
    fi
  done
  if [ -z "$py" ]; then
    echo "需要 Python 3.12 或更高版本(例如 apt install python3.12 python3.12-venv,或 pyenv install 3.12)。" >&2
    exit 1
  fi
  echo "使用 $("$py" --version 2>&1)($py)创建 .venv"
  "$py" -m venv .venv
fi
# pip's output (build back-end deprecation notices and the like) is shown only when something fails.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip \
       && .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "安装依赖失败(见上方 pip 输出)。" >&2
  exit 1
fi
echo "已安装 crm-admin 到 .venv($(.venv/bin/python --version 2>&1))"
