"""The HTTP protocol the server runs: uvicorn's, with Nagle's algorithm switched off on every connection.

With several worker processes uvicorn binds the listening socket itself as ``socket.socket(AF_INET)``,
whose protocol number is 0; asyncio then does not recognise the accepted connections as TCP and leaves
Nagle's algorithm on. A response written in two parts (headers, then a small body) waits for the
client's delayed acknowledgement: 40 ms added to every small page and JSON answer.

The request parser is httptools (C) when it is installed, as it is with the project's dependencies;
uvicorn's pure-Python h11 parser is the fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol


def _no_delay(transport: asyncio.Transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        _no_delay(transport)
        super().connection_made(transport)


HAS_HTTPTOOLS = importlib.util.find_spec("httptools") is not None

if HAS_HTTPTOOLS:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class NoDelayHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            _no_delay(transport)
            super().connection_made(transport)


def protocol_path(choice: str = "auto") -> str:
    """uvicorn's ``http`` option: ``auto`` (httptools when installed), ``httptools`` or ``h11``."""
    if choice == "h11" or not HAS_HTTPTOOLS:
        return "crm_admin.web.protocol:NoDelayH11Protocol"
    return "crm_admin.web.protocol:NoDelayHttpToolsProtocol"
