"""``python -m crm_admin.cluster up|down|destroy|status|drill …`` (what ``scripts/cluster.sh`` runs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
    drill = sub.add_parser("drill", help="failure drills under load (see crm_admin/cluster/drill.py)")
    drill.add_argument("which", nargs="?", default="all",
                       choices=["all", "writer-kill", "app-kill", "restart-all", "backup", "scale"])
    drill.add_argument("--users", type=int, default=100, help="simulated users (default 100)")
    drill.add_argument("--before", type=float, default=60, help="seconds of load before the failure")
    drill.add_argument("--after", type=float, default=60, help="seconds of load after the repair")
    drill.add_argument("--seconds", type=float, default=60, help="scale: seconds per step")
    drill.add_argument("--think", type=float, nargs=2, default=(3.0, 7.0), metavar=("MIN", "MAX"))
    drill.add_argument("--data-scale", type=float, default=0.02,
                       help="crm-admin generate --scale for the load's users and customers (once)")
    drill.add_argument("--out", type=Path, default=None, help="report folder (default <cluster dir>/drills)")
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
        elif args.command == "drill":
            from crm_admin.cluster import drill as drills

            return drills.main(args.which, users=args.users, before=args.before, after=args.after,
                               scale_data=args.data_scale, out=args.out, think=tuple(args.think),
                               seconds=args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
