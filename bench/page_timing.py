"""Median time of a few heavy pages through the test client (no server), against CRM_DATABASE_URL.

    CRM_DATABASE_URL=mysql+pymysql://root@127.0.0.1:3306/crm_bench nice -n 5 .venv/bin/python bench/page_timing.py 2

The first argument is the number of timed requests per page (after one warm-up); further arguments keep only
the pages whose "user/path" contains one of them.
"""

import re
import statistics
import sys
import time

from starlette.testclient import TestClient

from crm_admin.perf.generate import BENCH_PASSWORD
from crm_admin.web.app import create_app

PAGES = [("admin01", "/admin/"), ("mgr001", "/admin/"), ("lead01", "/admin/"),
         ("mgr001", "/admin/pipeline"), ("admin01", "/admin/pipeline"), ("mgr001", "/admin/care/workbench")]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    only = sys.argv[2:]
    app = create_app()
    clients: dict[str, TestClient] = {}
    for user, path in PAGES:
        if only and not any(o in f"{user}{path}" for o in only):
            continue
        c = clients.get(user)
        if c is None:
            c = clients[user] = TestClient(app, base_url="http://localhost")
            token = re.search(r'name="csrf_token" value="([^"]*)"', c.get("/admin/login").text)
            r = c.post("/admin/login", data={"username": user, "password": BENCH_PASSWORD,
                                             "csrf_token": token.group(1) if token else ""}, follow_redirects=False)
            assert r.status_code in (302, 303), (user, r.status_code)
        times = []
        for i in range(n + 1):
            start = time.perf_counter()
            r = c.get(path)
            elapsed = time.perf_counter() - start
            assert r.status_code == 200, (path, r.status_code)
            if i:
                times.append(elapsed)
        print(f"{user:8s} {path:24s} median {statistics.median(times) * 1000:8.0f} ms  "
              f"min {min(times) * 1000:8.0f} ms", flush=True)


if __name__ == "__main__":
    main()
