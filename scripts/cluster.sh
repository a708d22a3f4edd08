#!/usr/bin/env bash
# The high-availability set-up on one machine: three MariaDB Galera nodes, HAProxy in front of them
# and of two or three `crm-admin serve` nodes. State in .cluster/ (or $CRM_CLUSTER_DIR).
#   scripts/cluster.sh up [--apps N]   start (or complete) it and print the URL
#   scripts/cluster.sh status          nodes, Galera state, which node takes the writes, app nodes
#   scripts/cluster.sh down            stop everything, keep the data (the next `up` restarts it)
#   scripts/cluster.sh destroy         stop and remove everything
#   scripts/cluster.sh drill [writer-kill|app-kill|restart-all|backup|all]   failure drills under load
# Needs galera-4, rsync and haproxy (installed here with apt-get when missing and run as root).
set -euo pipefail
cd "$(dirname "$0")/.."

py=${CRM_PYTHON:-}
if [ -z "$py" ]; then
  for candidate in .venv/bin/python ../main/.venv/bin/python python3; do
    if [ -x "$candidate" ] || command -v "$candidate" >/dev/null 2>&1; then py=$candidate; break; fi
  done
fi

case "${1:-}" in
  up|drill)
    need=()
    command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
    [ -e /usr/lib/galera/libgalera_smm.so ] || need+=(galera-4)
    command -v rsync >/dev/null 2>&1 || need+=(rsync)
    if [ "${1:-}" = drill ]; then command -v mariadb-backup >/dev/null 2>&1 || need+=(mariadb-backup); fi
    if [ ${#need[@]} -gt 0 ]; then
      if [ "$(id -u)" != 0 ]; then echo "missing packages: ${need[*]} (apt-get install -y ${need[*]})" >&2; exit 1; fi
      echo "installing: ${need[*]}"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
    fi
    ;;
esac

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" -m crm_admin.cluster "$@"
