"""Talking to a running server from outside, as the benchmarks do: sign in, read a page's CSRF token,
and read the server's memory (the supervisor and its workers) from ``/proc``."""

from __future__ import annotations

import os
import re

import httpx

from crm_admin.perf.generate import BENCH_PASSWORD


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (uvicorn's workers are children of the supervisor)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def server_rss_mb(root: int) -> float:
    total = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


_TOKEN_RE = (re.compile(r'name="csrf_token" value="([^"]+)"'),
             re.compile(r'<meta name="csrf-token" content="([^"]+)"'))


def find_token(html: str) -> str:
    for pattern in _TOKEN_RE:
        match = pattern.search(html)
        if match:
            return match.group(1)
    return ""


def login(base_url: str, username: str, password: str = BENCH_PASSWORD) -> tuple[httpx.Client, str]:
    """A logged-in client and its CSRF token."""
    client = httpx.Client(base_url=base_url, timeout=900, follow_redirects=False)
    page = client.get("/admin/login")
    reply = client.post("/admin/login", data={"username": username, "password": password,
                                              "csrf_token": find_token(page.text)})
    if reply.status_code != 302 or "login" in reply.headers.get("location", "").rsplit("/", 1)[-1]:
        raise RuntimeError(f"login as {username} failed ({reply.status_code})")
    token = find_token(client.get("/admin/account/password").text) or find_token(client.get("/admin/").text)
    return client, token
