"""A second node of the cluster: the app served by uvicorn in a process of its own, on the test
database, with the same signing key. Whatever it knows about sessions, permissions or sign-in counts
it can only have learnt from the database (or Redis), never from this process's memory."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
OTHER_NODE_IP_LIMIT = 4  # the other node's CRM_LOGIN_IP_MAX_PER_MINUTE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    base_url: str
    log_path: Path

    def client(self, *, ip: str, cookie: str | None = None) -> httpx.Client:
        """A browser on this node, seen (through the load balancer's X-Forwarded-For) as ``ip``."""
        c = httpx.Client(base_url=self.base_url, headers={"X-Forwarded-For": ip}, timeout=30,
                         follow_redirects=False)
        if cookie:
            c.cookies.set("crm_session", cookie)
        return c

    def login(self, client: httpx.Client, username: str, password: str) -> httpx.Response:
        page = client.get("/admin/login")
        match = re.search(r'name="csrf_token" value="([^"]*)"', page.text)
        return client.post("/admin/login", data={"username": username, "password": password,
                                                 "csrf_token": match.group(1) if match else ""})


@pytest.fixture(scope="module")
def other_node(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("other-node") / "server.log"
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": str(ROOT),
        "CRM_SCHEDULER_ENABLED": "false",
        "CRM_LOGIN_IP_MAX_PER_MINUTE": str(OTHER_NODE_IP_LIMIT),
        "CRM_LOG_LEVEL": "WARNING",
    })
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "crm_admin.web.app:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(port), "--proxy-headers",
             "--forwarded-allow-ips", "127.0.0.1", "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    node = Node(f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{node.base_url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the second node did not start:\n" + log_path.read_text(errors="replace")[-3000:])
            time.sleep(0.2)
        yield node
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
