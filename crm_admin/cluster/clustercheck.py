"""HTTP health check of one Galera node for HAProxy: 200 when the node is Synced, else 503.

A TCP check (or HAProxy's ``mysql-check``) passes for a node that is still joining, is a blocked SST
donor, or sits in a non-primary component after a network split — every one of them refuses or
stalls the app's queries. This responder asks the node itself (``wsrep_local_state`` = 4 Synced,
``wsrep_ready`` = ON, ``wsrep_cluster_status`` = Primary; with ``--available-when-donor`` also
2 Donor, which IST and mariabackup SST do not block) on every check. Run one beside every
database server::

    python -m crm_admin.cluster.clustercheck --socket /run/mysqld/mysqld.sock --port 9200

and point HAProxy at it (``option httpchk`` + ``server … check port 9200``). The account is the
local root over the Unix socket (``unix_socket`` authentication) unless ``--user``/``--password``
are given.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pymysql


class NodeProbe:
    """One reused connection to the node; reconnects after any failure."""

    def __init__(self, *, socket: str | None, host: str, port: int, user: str, password: str) -> None:
        self._params: dict[str, Any] = {"user": user, "password": password, "connect_timeout": 2,
                                        "read_timeout": 2, "write_timeout": 2}
        if socket:
            self._params["unix_socket"] = socket
        else:
            self._params.update(host=host, port=port)
        self._conn: Any = None
        self._lock = threading.Lock()

    def state(self) -> dict[str, str]:
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = pymysql.connect(**self._params)
                with self._conn.cursor() as cur:
                    cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN "
                                "('wsrep_local_state', 'wsrep_local_state_comment', 'wsrep_ready', "
                                "'wsrep_cluster_status', 'wsrep_cluster_size')")
                    return {str(k): str(v) for k, v in cur.fetchall()}
            except Exception as exc:
                self.close()
                return {"error": type(exc).__name__}

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # the connection is gone either way
                self._conn.close()
            self._conn = None


def is_available(state: dict[str, str], *, when_donor: bool = False) -> bool:
    """Synced, ready and in the primary component; with ``when_donor`` also while it serves a state
    transfer (2 Donor/Desynced) — right for IST and for mariabackup SST, which do not block the donor,
    wrong for rsync SST, which holds a global read lock."""
    states = ("4", "2") if when_donor else ("4",)
    return (state.get("wsrep_local_state") in states and state.get("wsrep_ready") == "ON"
            and state.get("wsrep_cluster_status") == "Primary")


def make_handler(probe: NodeProbe, *, when_donor: bool = False) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state = probe.state()
            ok = is_available(state, when_donor=when_donor)
            body = (("Galera node is synced.\n" if ok else "Galera node is not synced.\n")
                    + "".join(f"{k}={v}\n" for k, v in sorted(state.items()))).encode()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        do_HEAD = do_GET

        def log_message(self, format: str, *args: Any) -> None:
            return  # one check a second: not worth a log line

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--socket", default=None, help="the node's Unix socket")
    parser.add_argument("--host", default="127.0.0.1", help="the node's address (when no --socket)")
    parser.add_argument("--db-port", type=int, default=3306)
    parser.add_argument("--user", default="root")
    parser.add_argument("--password", default="")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--available-when-donor", action="store_true",
                        help="a donor stays in the pool (only with mariabackup SST: rsync SST blocks the donor)")
    args = parser.parse_args(argv)
    probe = NodeProbe(socket=args.socket, host=args.host, port=args.db_port, user=args.user,
                      password=args.password)
    server = ThreadingHTTPServer((args.bind, args.port), make_handler(probe, when_donor=args.available_when_donor))
    server.daemon_threads = True
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        probe.close()


if __name__ == "__main__":
    main()
