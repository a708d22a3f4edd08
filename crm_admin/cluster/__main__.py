"""``python -m crm_admin.cluster up|down|destroy|status|drill …`` (what ``scripts/cluster.sh`` runs)."""

from __future__ import annotations

import argparse
import sys

from crm_admin.cluster import local


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/cluster.sh", description=local.__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start (or complete) the cluster and print the URL")
    up.add_argument("--apps", type=int, default=None, help="app nodes (1-3; default CRM_CLUSTER_APPS or 2)")
    sub.add_parser("down", help="stop everything, keep the data")
    sub.add_parser("destroy", help="stop everything and remove the cluster directory")
    status = sub.add_parser("status", help="nodes, Galera state, the writer, app nodes")
    status.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with local._errors():
        if args.command == "up":
            local.up(args.apps)
        elif args.command == "down":
            local.down()
        elif args.command == "destroy":
            local.destroy()
        elif args.command == "status":
            return local.status(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
