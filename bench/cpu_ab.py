"""Server CPU per request before and after a change, measured side by side so that both see the same load.

Start two single-worker servers on the same database, the code before the change on one port and the
code after it on another (for example the older commit unpacked with ``git archive`` and run with
``PYTHONPATH`` pointing at it), then:

    .venv/bin/python bench/cpu_ab.py 8822 8821 4 20 mgr001:/admin/customer/list lead01:/admin/

For each page, ``rounds`` rounds (AB, BA, AB, …) of ``n`` requests on each server after two warm-up
requests; the CPU of each server's process from ``/proc/<pid>/stat`` before and after a round, divided by
``n``. Prints the least and the median per side, the median wall time and the machine's 1-minute load.
The users sign in with the generated data's password (``crm-admin generate``).
"""

import os
import statistics
import subprocess
import sys
import time

from crm_admin.perf.bench import server_cpu_seconds
from crm_admin.perf.client import login


def pid_of(port: str) -> int:
    return int(subprocess.check_output(["pgrep", "-f", f"port {port} --workers"]).split()[0])


def main() -> None:
    port_a, port_b, rounds, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    servers = {"A": (port_a, pid_of(port_a)), "B": (port_b, pid_of(port_b))}
    clients = {}
    for spec in sys.argv[5:]:
        user, path = spec.split(":", 1)
        cpu: dict[str, list[float]] = {"A": [], "B": []}
        wall: dict[str, list[float]] = {"A": [], "B": []}
        for r in range(rounds):
            for side in "AB" if r % 2 == 0 else "BA":
                port, pid = servers[side]
                if (side, user) not in clients:
                    clients[(side, user)] = login(f"http://127.0.0.1:{port}", user)[0]
                client = clients[(side, user)]
                for _ in range(2):
                    assert client.get(path).status_code == 200, (side, path)
                cpu0, t0 = server_cpu_seconds(pid), time.perf_counter()
                for _ in range(n):
                    assert client.get(path).status_code == 200, (side, path)
                wall[side].append((time.perf_counter() - t0) * 1000 / n)
                cpu[side].append((server_cpu_seconds(pid) - cpu0) * 1000 / n)
        a, b = min(cpu["A"]), min(cpu["B"])
        print(f"{user:9s} {path[:48]:48s} CPU ms/req min A {a:6.2f} B {b:6.2f} ({(b - a) / a * 100:+.0f}%)  "
              f"median A {statistics.median(cpu['A']):6.2f} B {statistics.median(cpu['B']):6.2f}  "
              f"wall med A {statistics.median(wall['A']):6.1f} B {statistics.median(wall['B']):6.1f}  "
              f"load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
