"""A complete high-availability set-up on one machine, for trying it out, drills and CI.

Three MariaDB Galera nodes (own data directories, sockets and loopback ports), one health responder
per node (``clustercheck``), HAProxy with a MySQL front that sends every connection to one writer
(the other two are backups) and an HTTP front that spreads requests over two or three
``crm-admin serve`` nodes. Everything lives under one directory (``.cluster/`` in the repository,
or ``CRM_CLUSTER_DIR``); ``down`` stops it and keeps the data, ``destroy`` removes it.

Ports (all on 127.0.0.1): HTTP front 8800, app nodes 8801–8803, MySQL front 3310, database nodes
3311–3313, Galera group 4561–4563, IST 4571–4573, SST 4581–4583, health responders 9201–9203,
HAProxy statistics 8899.

Restarting a stopped cluster follows Galera's rules: if a node left last in an orderly way
(``safe_to_bootstrap: 1`` in its ``grastate.dat``) it starts the new cluster; after a crash of every
node each one is asked for its last committed position (``mariadbd --wsrep-recover``) and the most
advanced one bootstraps. The others join it and catch up (IST from the gcache, or a full SST).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import secrets
import shutil
import signal
import subprocess  # nosec B404 - this module starts and stops the local cluster's processes
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql

REPO = Path(__file__).resolve().parents[2]
MARIADBD = os.environ.get("CRM_CLUSTER_MARIADBD", "/usr/sbin/mariadbd")
GALERA = os.environ.get("CRM_CLUSTER_GALERA", "/usr/lib/galera/libgalera_smm.so")
HOST = "127.0.0.1"
DB_NAME = "crm"
DB_USER = "crm"
HTTP_FRONT, MYSQL_FRONT, STATS_PORT = 8800, 3310, 8899
BOOT_TIMEOUT = 180.0


def _random_secret(nbytes: int) -> str:
    """A random secret that the password rules accept (letters and digits both present: a plain
    random string lacks one now and then, and the admin password would be refused at seeding)."""
    while True:
        value = secrets.token_urlsafe(nbytes)
        if any(c.isdigit() for c in value) and any(c.isalpha() for c in value):
            return value


class ClusterError(RuntimeError):
    """Something the operator has to look at (the message says what and where)."""


@dataclass(frozen=True)
class DbNode:
    n: int

    @property
    def name(self) -> str:
        return f"node{self.n}"

    @property
    def port(self) -> int:
        return 3310 + self.n

    @property
    def group_port(self) -> int:
        return 4560 + self.n

    @property
    def ist_port(self) -> int:
        return 4570 + self.n

    @property
    def sst_port(self) -> int:
        return 4580 + self.n

    @property
    def check_port(self) -> int:
        return 9200 + self.n


@dataclass(frozen=True)
class AppNode:
    n: int

    @property
    def name(self) -> str:
        return f"app{self.n}"

    @property
    def port(self) -> int:
        return 8800 + self.n


DB_NODES = [DbNode(1), DbNode(2), DbNode(3)]


def cluster_dir() -> Path:
    return Path(os.environ.get("CRM_CLUSTER_DIR") or REPO / ".cluster").resolve()


def app_count() -> int:
    return max(1, min(3, int(os.environ.get("CRM_CLUSTER_APPS", "2"))))


def app_nodes(count: int | None = None) -> list[AppNode]:
    return [AppNode(i) for i in range(1, (count or app_count()) + 1)]


def say(message: str) -> None:
    print(message, flush=True)


# ----- files and processes -----------------------------------------------------------------------

class Paths:
    def __init__(self, root: Path) -> None:
        self.root = root

    def node(self, node: DbNode) -> Path:
        return self.root / node.name

    def datadir(self, node: DbNode) -> Path:
        return self.node(node) / "data"

    def socket(self, node: DbNode) -> Path:
        return self.node(node) / "mysqld.sock"

    def pidfile(self, node: DbNode) -> Path:
        return self.node(node) / "mysqld.pid"

    def cnf(self, node: DbNode) -> Path:
        return self.node(node) / "my.cnf"

    def errlog(self, node: DbNode) -> Path:
        return self.node(node) / "error.log"

    def check_pid(self, node: DbNode) -> Path:
        return self.node(node) / "clustercheck.pid"

    def app(self, app: AppNode) -> Path:
        return self.root / app.name

    def app_pid(self, app: AppNode) -> Path:
        return self.app(app) / "serve.pid"

    def app_log(self, app: AppNode) -> Path:
        return self.app(app) / "serve.log"

    @property
    def haproxy_cfg(self) -> Path:
        return self.root / "haproxy" / "haproxy.cfg"

    @property
    def haproxy_pid(self) -> Path:
        return self.root / "haproxy" / "haproxy.pid"

    @property
    def haproxy_sock(self) -> Path:
        return self.root / "haproxy" / "admin.sock"

    def secret(self, name: str) -> str:
        """A generated secret kept in the cluster directory (mode 0600), made on first use."""
        path = self.root / name
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(_random_secret(48 if name == "secret_key" else 24))
        return path.read_text().strip()


def read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our own child not yet reaped) is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def spawn(argv: list[str], *, log: Path, pidfile: Path | None = None, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> int:
    """Start a process detached from this one (own session, output to ``log``); returns its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,  # nosec B603
                                env=env, cwd=cwd, start_new_session=True)
    if pidfile is not None:
        pidfile.write_text(str(proc.pid))
    return proc.pid


def stop_pid(pid: int | None, *, timeout: float, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig`` and wait for the process to end (SIGKILL after ``timeout``); True if it ran."""
    if pid is None or not alive(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        _reap()
        time.sleep(0.2)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while alive(pid):
            _reap()
            time.sleep(0.1)
    return True


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def wait_for(what: str, check: Any, timeout: float, *, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except ClusterError:
            raise
        except Exception:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}")
        _reap()
        time.sleep(interval)


# ----- database nodes ----------------------------------------------------------------------------

def sst_method() -> str:
    """mariabackup when installed (the donor keeps serving), else rsync (the donor is read-locked)."""
    default = "mariabackup" if shutil.which("mariadb-backup") and shutil.which("socat") else "rsync"
    return os.environ.get("CRM_CLUSTER_SST", default)


def db_user() -> str | None:
    """The account mariadbd runs as when started by root: ``mysql``, as a packaged server does (rsync's
    SST daemon, started by the server, cannot write the data directory as root: it drops to nobody)."""
    if os.geteuid() != 0:
        return None
    try:
        import pwd

        pwd.getpwnam("mysql")
    except KeyError:
        return "root"
    return "mysql"


def run_as() -> str:
    user = db_user()
    return f"user={user}\n" if user else ""


def give_to_db_user(path: Path) -> None:
    user = db_user()
    if user and user != "root":
        shutil.chown(path, user, user)
        for sub in path.rglob("*"):
            shutil.chown(sub, user, user)


def write_cnf(paths: Paths, node: DbNode) -> None:
    members = ",".join(f"{HOST}:{n.group_port}" for n in DB_NODES)
    (paths.node(node) / "tmp").mkdir(parents=True, exist_ok=True)  # own tmpdir: temporary tables of one server only
    options = ";".join([
        f"gmcast.listen_addr=tcp://{HOST}:{node.group_port}",
        f"ist.recv_addr={HOST}:{node.ist_port}",
        "gcache.size=256M",
        "pc.recovery=TRUE",
        "gcache.recover=yes",  # after a crash the gcache still serves IST to the nodes that rejoin
        "evs.suspect_timeout=PT3S", "evs.inactive_timeout=PT6S", "evs.install_timeout=PT6S",
    ])
    sst_auth = f"wsrep_sst_auth=root:{paths.secret('db_root_password')}\n" if sst_method() == "mariabackup" else ""
    paths.cnf(node).write_text(f"""# Galera node {node.n} of the local crm-admin cluster (written by scripts/cluster.sh)
[mysqld]
{run_as()}datadir={paths.datadir(node)}
socket={paths.socket(node)}
pid-file={paths.pidfile(node)}
log-error={paths.errlog(node)}
bind-address={HOST}
port={node.port}
skip-name-resolve
character-set-server=utf8mb4
collation-server=utf8mb4_unicode_ci
innodb_buffer_pool_size=64M
innodb_log_file_size=48M
default_storage_engine=InnoDB
tmpdir={paths.node(node) / "tmp"}
binlog_format=ROW
innodb_autoinc_lock_mode=2
max_connections=300
local_infile=1

wsrep_on=ON
wsrep_provider={GALERA}
wsrep_cluster_name=crm_local
wsrep_cluster_address=gcomm://{members}
wsrep_node_name={node.name}
wsrep_node_address={HOST}:{node.group_port}
wsrep_node_incoming_address={HOST}:{node.port}
wsrep_provider_options="{options}"
wsrep_sst_method={sst_method()}
wsrep_sst_receive_address={HOST}:{node.sst_port}
{sst_auth}wsrep_slave_threads=2
""")


def mysql(paths: Paths, node: DbNode, sql: str, *, timeout: int = 5) -> list[tuple[Any, ...]]:
    """Run ``sql`` on ``node`` as its local root (over the node's Unix socket)."""
    conn = pymysql.connect(unix_socket=str(paths.socket(node)), user="root", connect_timeout=timeout,
                           read_timeout=timeout, write_timeout=timeout, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def wsrep_status(paths: Paths, node: DbNode) -> dict[str, str]:
    """The node's wsrep status variables, or {} when it does not answer."""
    try:
        rows = mysql(paths, node, "SHOW GLOBAL STATUS LIKE 'wsrep%'", timeout=2)
    except Exception:
        return {}
    return {str(k): str(v) for k, v in rows}


def synced(paths: Paths, node: DbNode) -> bool:
    s = wsrep_status(paths, node)
    return s.get("wsrep_local_state_comment") == "Synced" and s.get("wsrep_cluster_status") == "Primary"


def node_pid(paths: Paths, node: DbNode) -> int | None:
    return read_pid(paths.pidfile(node))


def grastate(paths: Paths, node: DbNode) -> dict[str, str]:
    path = paths.datadir(node) / "grastate.dat"
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        if ":" in line and not line.startswith("#"):
            key, value = line.split(":", 1)
            out[key.strip()] = value.strip()
    return out


def set_safe_to_bootstrap(paths: Paths, node: DbNode) -> None:
    path = paths.datadir(node) / "grastate.dat"
    text = path.read_text()
    path.write_text(re.sub(r"safe_to_bootstrap:\s*\d", "safe_to_bootstrap: 1", text))


def recovered_position(paths: Paths, node: DbNode) -> tuple[str, int]:
    """The last committed position (uuid, seqno) of a stopped node: from ``grastate.dat`` after an
    orderly shutdown, else from InnoDB (``mariadbd --wsrep-recover``, what ``galera_recovery`` does)."""
    state = grastate(paths, node)
    seqno = int(state.get("seqno", "-1") or -1)
    if seqno >= 0:
        return state.get("uuid", ""), seqno
    log = paths.node(node) / "recover.log"
    log.unlink(missing_ok=True)
    give_to_db_user(paths.node(node))
    subprocess.run([MARIADBD, f"--defaults-file={paths.cnf(node)}", "--wsrep-recover",  # nosec B603
                    f"--log-error={log}"], check=False, timeout=120,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    found = re.findall(r"Recovered position: ([0-9a-f-]+):(-?\d+)", log.read_text() if log.exists() else "")
    return (found[-1][0], int(found[-1][1])) if found else ("", -1)


def initialized(paths: Paths, node: DbNode) -> bool:
    return (paths.datadir(node) / "mysql").is_dir()


def install_db(paths: Paths, node: DbNode) -> None:
    datadir = paths.datadir(node)
    datadir.mkdir(parents=True, exist_ok=True)
    say(f"  {node.name}: initialising {datadir}")
    give_to_db_user(paths.node(node))
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={datadir}", f"--user={db_user() or getpass.getuser()}",  # nosec B603
                    "--skip-test-db", "--auth-root-authentication-method=socket"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_db(paths: Paths, node: DbNode, *, bootstrap: bool = False, position: tuple[str, int] | None = None) -> None:
    """Start ``node`` (the first node of a new cluster with ``bootstrap``) and wait until it is Synced.

    ``position``: the node's recovered position after a crash, passed on as ``--wsrep-start-position``
    so that it bootstraps with, or joins from, what it really has (IST instead of a full copy)."""
    if node_pid(paths, node) is not None:
        return
    paths.node(node).mkdir(parents=True, exist_ok=True)
    paths.datadir(node).mkdir(parents=True, exist_ok=True)
    write_cnf(paths, node)
    give_to_db_user(paths.node(node))
    argv = [MARIADBD, f"--defaults-file={paths.cnf(node)}"]
    if bootstrap:
        argv.append("--wsrep-new-cluster")
    if position and position[0] and position[1] >= 0:
        argv.append(f"--wsrep-start-position={position[0]}:{position[1]}")
    say(f"  {node.name}: starting mariadbd on {HOST}:{node.port}" + (" (bootstrapping the cluster)" if bootstrap else ""))
    pid = spawn(argv, log=paths.node(node) / "mariadbd.out")
    wait_for(f"{node.name} to be Synced (see {paths.errlog(node)})",
             lambda: (alive(pid) or _died(paths, node)) and synced(paths, node), BOOT_TIMEOUT)


def _died(paths: Paths, node: DbNode) -> bool:
    tail = paths.errlog(node).read_text(errors="replace")[-1500:] if paths.errlog(node).exists() else ""
    raise ClusterError(f"{node.name}: mariadbd exited; last lines of {paths.errlog(node)}:\n{tail}")


def stop_db(paths: Paths, node: DbNode) -> bool:
    """An orderly shutdown (the node records its position; the last one out may bootstrap)."""
    pid = node_pid(paths, node)
    if pid is None:
        return False
    say(f"  {node.name}: stopping mariadbd (pid {pid})")
    return stop_pid(pid, timeout=120)


def running_primary(paths: Paths) -> DbNode | None:
    for node in DB_NODES:
        if node_pid(paths, node) is not None and wsrep_status(paths, node).get("wsrep_cluster_status") == "Primary":
            return node
    return None


def choose_bootstrap(paths: Paths) -> tuple[DbNode, dict[DbNode, tuple[str, int]]]:
    """The node a stopped cluster restarts from: the one marked safe, else the most advanced one;
    and every node's recovered position after a crash."""
    states = {node: grastate(paths, node) for node in DB_NODES if initialized(paths, node)}
    safe = [node for node, st in states.items() if st.get("safe_to_bootstrap") == "1"]
    if safe:
        say(f"  {safe[0].name} left the cluster last (safe_to_bootstrap: 1): it starts the cluster")
        return safe[0], {}
    positions = {node: recovered_position(paths, node) for node in states}
    say("  no node marked safe_to_bootstrap (the cluster stopped abruptly); recovered positions: "
        + ", ".join(f"{n.name}={p[1]}" for n, p in positions.items()))
    best = max(positions, key=lambda n: (positions[n][1], -n.n))
    set_safe_to_bootstrap(paths, best)
    say(f"  {best.name} is the most advanced: it starts the cluster")
    return best, positions


def start_databases(paths: Paths) -> None:
    fresh = not any(initialized(paths, node) for node in DB_NODES)
    primary = running_primary(paths)
    positions: dict[DbNode, tuple[str, int]] = {}
    if primary is None:
        if fresh:
            first = DB_NODES[0]
            install_db(paths, first)
        else:
            first, positions = choose_bootstrap(paths)
        start_db(paths, first, bootstrap=True, position=positions.get(first))
        if fresh:
            create_accounts(paths, first)
    for node in DB_NODES:
        start_db(paths, node, position=positions.get(node))
    wait_for("a cluster of 3 synced nodes",
             lambda: all(wsrep_status(paths, n).get("wsrep_cluster_size") == "3" and synced(paths, n)
                         for n in DB_NODES), BOOT_TIMEOUT)


def create_accounts(paths: Paths, node: DbNode) -> None:
    """The app's database and account (replicated to every node), and a root password for backups."""
    password = paths.secret("db_password")
    root_password = paths.secret("db_root_password")
    for statement in (
        f"CREATE DATABASE IF NOT EXISTS `{DB_NAME}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        f"CREATE USER IF NOT EXISTS '{DB_USER}'@'{HOST}' IDENTIFIED BY '{password}'",
        f"CREATE USER IF NOT EXISTS '{DB_USER}'@'localhost' IDENTIFIED BY '{password}'",
        f"GRANT ALL ON `{DB_NAME}`.* TO '{DB_USER}'@'{HOST}'",
        f"GRANT ALL ON `{DB_NAME}`.* TO '{DB_USER}'@'localhost'",
        f"GRANT ALL ON `{DB_NAME}\\_\\_%`.* TO '{DB_USER}'@'{HOST}'",
        f"ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password "
        f"USING PASSWORD('{root_password}')",
    ):
        mysql(paths, node, statement)


def database_url(paths: Paths, *, port: int = MYSQL_FRONT) -> str:
    return f"mysql+pymysql://{DB_USER}:{paths.secret('db_password')}@{HOST}:{port}/{DB_NAME}?charset=utf8mb4"


# ----- health responders and HAProxy -------------------------------------------------------------

def start_check(paths: Paths, node: DbNode) -> None:
    if read_pid(paths.check_pid(node)) is not None:
        return
    donor = ["--available-when-donor"] if sst_method() == "mariabackup" else []
    spawn([sys.executable, "-m", "crm_admin.cluster.clustercheck", "--socket", str(paths.socket(node)),
           "--port", str(node.check_port), *donor], log=paths.node(node) / "clustercheck.log",
          pidfile=paths.check_pid(node), env=_python_env(), cwd=paths.node(node))


def haproxy_config(paths: Paths, apps: list[AppNode]) -> str:
    db_servers = "\n".join(
        f"    server {n.name} {HOST}:{n.port} check port {n.check_port}"
        + (" on-marked-up shutdown-backup-sessions" if i == 0 else " backup")
        for i, n in enumerate(DB_NODES))
    app_servers = "\n".join(f"    server {a.name} {HOST}:{a.port} check" for a in apps)
    return f"""# The local crm-admin cluster's load balancer (written by scripts/cluster.sh)
global
    maxconn 4000
    pidfile {paths.haproxy_pid}
    stats socket {paths.haproxy_sock} mode 600 level admin

defaults
    timeout connect 2s
    retries 3
    option redispatch

# The database: every connection goes to one writer, the others are hot stand-bys. A node counts as
# up only while its health responder says Synced (a joining node, a blocked donor or a node cut off
# from the majority is out); when the writer goes down its connections are cut at once
# (shutdown-sessions) so the app reconnects to the next one instead of waiting on a dead socket.
# When the first node is back, the stand-by's connections are cut as well (shutdown-backup-sessions):
# new connections go to the first node again, and a pooled connection left on the stand-by would
# make a second writer (Galera aborts one of two conflicting transactions: error 1213). A stick
# table did not prevent that here (HAProxy 2.6: the table named the stand-by, new connections still
# went to the first node once it was up).
listen mysql
    bind {HOST}:{MYSQL_FRONT}
    mode tcp
    timeout client 8h
    timeout server 8h
    option httpchk GET /
    http-check expect status 200
    default-server inter 1s fastinter 500ms downinter 2s fall 2 rise 3 on-marked-down shutdown-sessions
{db_servers}

# The app: stateless nodes (the session is a signed cookie, scheduled jobs take database leases).
# Only a refused connection is retried, and on another node at once (redispatch on every retry);
# a request that reached a node is never sent twice (a form post might have been saved).
listen app
    bind {HOST}:{HTTP_FRONT}
    mode http
    balance roundrobin
    option forwardfor
    option httpchk GET /healthz
    http-check expect status 200
    retry-on conn-failure
    option redispatch 1
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 10s
    default-server inter 1s fastinter 500ms fall 2 rise 2
{app_servers}

listen stats
    bind {HOST}:{STATS_PORT}
    mode http
    timeout client 30s
    timeout server 30s
    stats enable
    stats uri /
    stats refresh 2s
"""


def haproxy_bin() -> str:
    found = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    if found is None:
        raise ClusterError("HAProxy is not installed (Debian: apt-get install -y haproxy; "
                           "scripts/cluster.sh installs it when run as root)")
    return found


def start_haproxy(paths: Paths, apps: list[AppNode]) -> None:
    paths.haproxy_cfg.parent.mkdir(parents=True, exist_ok=True)
    paths.haproxy_cfg.write_text(haproxy_config(paths, apps))
    subprocess.run([haproxy_bin(), "-c", "-q", "-f", str(paths.haproxy_cfg)], check=True)  # nosec B603
    pid = read_pid(paths.haproxy_pid)
    if pid is not None:  # reload with the new configuration, keeping established connections
        subprocess.run([haproxy_bin(), "-D", "-f", str(paths.haproxy_cfg),  # nosec B603
                        "-sf", str(pid)], check=True)
        return
    say(f"  haproxy: MySQL front {HOST}:{MYSQL_FRONT}, HTTP front {HOST}:{HTTP_FRONT}, "
        f"statistics http://{HOST}:{STATS_PORT}/")
    subprocess.run([haproxy_bin(), "-D", "-f", str(paths.haproxy_cfg)],  # nosec B603
                   check=True)
    # servers count as up before their first check: wait for the checks themselves
    wait_for("haproxy to check the database nodes", lambda: all(
        r["check_status"] == "L7OK" for r in haproxy_stats(paths)
        if r["pxname"] == "mysql" and r["svname"].startswith("node")), 30)


def haproxy_stats(paths: Paths) -> list[dict[str, str]]:
    """HAProxy's per-server state (``show stat`` on the admin socket)."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        sock.connect(str(paths.haproxy_sock))
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    return [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]


def current_writer(paths: Paths) -> DbNode | None:
    """The database node that takes the writes: the one up with the app's connections, else the one
    HAProxy would choose (the first node, else the first backup up)."""
    try:
        rows = [r for r in haproxy_stats(paths) if r["pxname"] == "mysql" and r["svname"].startswith("node")]
    except Exception:
        return None
    up = {r["svname"]: r for r in rows if r["status"].startswith("UP")}
    busiest = max(up.values(), key=lambda r: int(r["scur"] or 0), default=None)
    if busiest is not None and int(busiest["scur"] or 0) > 0:
        return DbNode(int(busiest["svname"][4:]))
    for r in rows:
        if r["svname"] in up and r["bck"] == "0":
            return DbNode(int(r["svname"][4:]))
    for r in rows:
        if r["svname"] in up:
            return DbNode(int(r["svname"][4:]))
    return None


def haproxy_command(paths: Paths, command: str) -> str:
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        sock.connect(str(paths.haproxy_sock))
        sock.sendall(command.encode() + b"\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.decode()


# ----- app nodes ---------------------------------------------------------------------------------

def _python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def app_env(paths: Paths, app: AppNode | None = None) -> dict[str, str]:
    """What every app node shares: the database (through HAProxy) and the session signing key."""
    env = _python_env()
    for key in ("CRM_ENV", "CRM_TLS_CERTFILE", "CRM_TLS_KEYFILE"):
        env.pop(key, None)
    env.update({
        "CRM_DATABASE_URL": database_url(paths),
        "CRM_SECRET_KEY": paths.secret("secret_key"),
        "CRM_ADMIN_PASSWORD": paths.secret("admin_password"),
        "CRM_DATA_DIR": str(paths.app(app) if app else paths.root / "cli"),
        "CRM_LOG_LEVEL": env.get("CRM_LOG_LEVEL", "WARNING"),
        # every simulated user of the drills signs in from 127.0.0.1 through the load balancer
        "CRM_LOGIN_IP_MAX_PER_MINUTE": env.get("CRM_LOGIN_IP_MAX_PER_MINUTE", "10000"),
    })
    return env


def crm_admin(paths: Paths, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a ``crm-admin`` command against the cluster (through the MySQL front)."""
    (paths.root / "cli").mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "-m", "crm_admin.cli", *args], env=app_env(paths),  # nosec B603
                          cwd=paths.root / "cli", check=check, text=True, capture_output=True)


def app_ready(app: AppNode) -> bool:
    with urllib.request.urlopen(f"http://{HOST}:{app.port}/healthz", timeout=2) as reply:  # nosec B310
        return bool(reply.status == 200)


def start_app(paths: Paths, app: AppNode) -> None:
    if read_pid(paths.app_pid(app)) is not None:
        return
    paths.app(app).mkdir(parents=True, exist_ok=True)
    say(f"  {app.name}: crm-admin serve on {HOST}:{app.port}")
    spawn([sys.executable, "-m", "crm_admin.cli", "serve", "--host", HOST, "--port", str(app.port)],
          log=paths.app_log(app), pidfile=paths.app_pid(app), env=app_env(paths, app), cwd=paths.app(app))


def wait_app(paths: Paths, app: AppNode) -> None:
    pid = read_pid(paths.app_pid(app))

    def ready() -> bool:
        if pid is None or not alive(pid):
            tail = paths.app_log(app).read_text(errors="replace")[-1500:]
            raise ClusterError(f"{app.name} exited; last lines of {paths.app_log(app)}:\n{tail}")
        return app_ready(app)

    deadline = time.monotonic() + BOOT_TIMEOUT
    while True:
        try:
            if ready():
                return
        except ClusterError:
            raise
        except Exception:  # nosec B110 - not listening yet
            pass
        if time.monotonic() > deadline:
            raise ClusterError(f"{app.name} did not answer /healthz (see {paths.app_log(app)})")
        _reap()
        time.sleep(0.5)


def stop_app(paths: Paths, app: AppNode) -> bool:
    pid = read_pid(paths.app_pid(app))
    if pid is None:
        return False
    say(f"  {app.name}: stopping (pid {pid})")
    return stop_pid(pid, timeout=30)


# ----- commands ----------------------------------------------------------------------------------

def up(apps: int | None = None) -> None:
    paths = Paths(cluster_dir())
    paths.root.mkdir(parents=True, exist_ok=True)
    if db_user() not in (None, "root"):  # the server's account must reach its data directory (mktemp -d is 0700)
        paths.root.chmod(paths.root.stat().st_mode | 0o711)
    nodes = app_nodes(apps)
    (paths.root / "apps").write_text(str(len(nodes)))
    say(f"Starting the crm-admin cluster in {paths.root}")
    start_databases(paths)
    for node in DB_NODES:
        start_check(paths, node)
    start_haproxy(paths, nodes)
    first_time = not (paths.root / "cli" / "prepared").exists()
    say("  database: migrating and seeding (crm-admin migrate, crm-admin seed)")
    for attempt in range(5):  # the front may still be settling right after the nodes joined
        done = crm_admin(paths, "migrate", check=attempt == 4)
        if done.returncode == 0:
            break
        time.sleep(2)
    crm_admin(paths, "seed")
    (paths.root / "cli" / "prepared").write_text("1")
    for app in nodes:
        start_app(paths, app)
    for app in nodes:
        wait_app(paths, app)
    wait_for("haproxy to see the app nodes", lambda: len(app_states(paths)) == len(nodes)
             and all(s.startswith("UP") for s in app_states(paths).values()), 30)
    say("")
    say(f"客户信息管理系统(集群)已启动:http://{HOST}:{HTTP_FRONT}/admin/")
    say(f"  数据库写入节点:{(current_writer(paths) or DB_NODES[0]).name};HAProxy 统计:http://{HOST}:{STATS_PORT}/")
    say("  管理员:admin")
    say(f"  密码:  {paths.secret('admin_password')}" + ("(首次登录后须修改)" if first_time else
                                                        "(首次启动时设置;已修改过则用新密码)"))
    say("  停止:scripts/cluster.sh down;状态:scripts/cluster.sh status")


def app_states(paths: Paths) -> dict[str, str]:
    try:
        return {r["svname"]: r["status"] for r in haproxy_stats(paths)
                if r["pxname"] == "app" and r["svname"].startswith("app")}
    except Exception:
        return {}


def down() -> None:
    paths = Paths(cluster_dir())
    say(f"Stopping the crm-admin cluster in {paths.root}")
    for app in app_nodes(3):
        stop_app(paths, app)
    pid = read_pid(paths.haproxy_pid)
    if pid is not None:
        say(f"  haproxy: stopping (pid {pid})")
        stop_pid(pid, timeout=10)
    for node in DB_NODES:
        stop_pid(read_pid(paths.check_pid(node)), timeout=5)
    # one at a time: the last one out records safe_to_bootstrap and starts the next `up`
    for node in reversed(DB_NODES):
        stop_db(paths, node)
    say("Stopped; the data stays for the next `up` (`destroy` removes it).")


def destroy() -> None:
    paths = Paths(cluster_dir())
    down()
    if paths.root.exists():
        shutil.rmtree(paths.root)
        say(f"Removed {paths.root}")


def configured_apps(paths: Paths) -> int:
    """How many app nodes the last ``up`` (or scale drill) put behind the balancer."""
    try:
        return int((paths.root / "apps").read_text())
    except (OSError, ValueError):
        return app_count()


def status_data() -> dict[str, Any]:
    paths = Paths(cluster_dir())
    writer = current_writer(paths) if read_pid(paths.haproxy_pid) else None
    nodes = []
    for node in DB_NODES:
        s = wsrep_status(paths, node) if node_pid(paths, node) else {}
        nodes.append({
            "node": node.name, "port": node.port, "pid": node_pid(paths, node),
            "state": s.get("wsrep_local_state_comment", "down"), "cluster_size": s.get("wsrep_cluster_size"),
            "cluster_status": s.get("wsrep_cluster_status"), "last_committed": s.get("wsrep_last_committed"),
            "writer": writer == node,
        })
    states = app_states(paths)
    apps = [{"app": a.name, "port": a.port, "pid": read_pid(paths.app_pid(a)), "lb": states.get(a.name, "-")}
            for a in app_nodes(configured_apps(paths)) if paths.app(a).exists()]
    return {"dir": str(paths.root), "haproxy": read_pid(paths.haproxy_pid), "writer": writer.name if writer else None,
            "nodes": nodes, "apps": apps, "url": f"http://{HOST}:{HTTP_FRONT}/admin/"}


def status(as_json: bool = False) -> int:
    data = status_data()
    if as_json:
        print(json.dumps(data, indent=2))
        return 0
    say(f"cluster directory: {data['dir']}")
    say(f"haproxy: {'running, pid ' + str(data['haproxy']) if data['haproxy'] else 'stopped'}; "
        f"database writer: {data['writer'] or '-'}; URL {data['url']}")
    for n in data["nodes"]:
        say(f"  {n['node']} :{n['port']}  {n['state']:<8} size={n['cluster_size'] or '-'} "
            f"{n['cluster_status'] or ''} seqno={n['last_committed'] or '-'}{'  <- writer' if n['writer'] else ''}")
    for a in data["apps"]:
        say(f"  {a['app']} :{a['port']}  {'running' if a['pid'] else 'stopped':<8} load balancer: {a['lb']}")
    healthy = all(n["state"] == "Synced" for n in data["nodes"]) and all(a["pid"] for a in data["apps"])
    return 0 if healthy else 1


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except subprocess.CalledProcessError as exc:
        output = "\n".join(str(part)[-3000:] for part in (exc.stdout, exc.stderr) if part)
        print(f"error: {' '.join(map(str, exc.cmd))} failed (exit {exc.returncode})\n{output}", file=sys.stderr)
        sys.exit(1)
