"""What a page costs the database whatever the machine's load: the rows MariaDB reads for it.

    CRM_DATABASE_URL='mysql+pymysql://root@127.0.0.1:3306/crm_bench?charset=utf8mb4' \
        .venv/bin/python bench/page_rows.py lead01 /admin/care/workbench /admin/pipeline

Signs in as the user (the generated data's password) through the test client (no server), opens each
page 15 times and prints the median page time, CPU and SQL time (these depend on the load), the number
of statements, and the rows the engine read (the sum of ``Handler_read_*`` while replaying the last
request's SELECTs one by one on a connection of its own: the same on an idle and a busy machine).
TOP=n prints the n statements that read most.
"""

import os
import statistics
import sys
import time

from sqlalchemy import event
from starlette.testclient import TestClient

from crm_admin import db
from crm_admin.perf.client import find_token
from crm_admin.perf.generate import BENCH_PASSWORD
from crm_admin.web.app import create_app

app = create_app()
db.configure() if db._engine is None else None
stmts = []
hooked = set()


def hook(engine):
    if id(engine) in hooked:
        return
    hooked.add(id(engine))

    @event.listens_for(engine, "before_cursor_execute")
    def _b(conn, cursor, statement, params, context, executemany):
        conn.info["t0"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _a(conn, cursor, statement, params, context, executemany):
        stmts.append(((time.perf_counter() - conn.info["t0"]) * 1000, statement, params))


def handler_reads(cur):
    cur.execute("SHOW SESSION STATUS LIKE 'Handler_read%'")
    return sum(int(v) for k, v in cur.fetchall())


def main(user, paths, n=15):
    with TestClient(app, base_url="http://localhost") as client:
        hook(db.get_engine())
        page = client.get("/admin/login")
        r = client.post(
            "/admin/login",
            data={"username": user, "password": BENCH_PASSWORD, "csrf_token": find_token(page.text)},
            follow_redirects=False,
        )
        assert r.status_code == 302, r.status_code
        for path in paths:
            client.get(path)
            runs = []
            for _ in range(n):
                stmts.clear()
                t0 = time.perf_counter()
                c0 = time.process_time()
                r = client.get(path)
                runs.append(
                    (
                        (time.perf_counter() - t0) * 1000,
                        (time.process_time() - c0) * 1000,
                        sum(s[0] for s in stmts),
                        list(stmts),
                    )
                )
                assert r.status_code == 200, (r.status_code, path)
            last = runs[-1][3]
            raw = db.get_engine().raw_connection()
            cur = raw.cursor()
            base = handler_reads(cur)
            cur.execute("SELECT 1")
            cur.fetchall()
            empty = handler_reads(cur) - base
            reads = []
            for _ms, st, params in last:
                if not st.lstrip().upper().startswith("SELECT"):
                    reads.append(0)
                    continue
                b = handler_reads(cur)
                cur.execute(st, params)
                cur.fetchall()
                reads.append(max(0, handler_reads(cur) - b - empty))
            raw.close()
            print(
                f"== {user} {path}: page p50 {statistics.median(r[0] for r in runs):.1f} ms, CPU {statistics.median(r[1] for r in runs):.1f} ms, SQL {statistics.median(r[2] for r in runs):.1f} ms, {len(last)} statements, rows read {sum(reads)}, {len(r.content) // 1024} KB"
            )
            for (ms, st, _p), rr in sorted(zip(last, reads, strict=True), key=lambda x: -x[1])[: int(os.environ.get("TOP", "4"))]:
                print(f"   {ms:7.2f} ms read={rr:7d} {' '.join(st.split())[:260]}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
