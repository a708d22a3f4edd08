"""The HTTP protocol the server runs: uvicorn's, with Nagle's algorithm switched off on every connection.

With several worker processes uvicorn binds the listening socket itself as ``socket.socket(AF_INET)``,
whose protocol number is 0; asyncio then does not recognise the accepted connections as TCP and leaves
Nagle's algorithm on. A response written in two parts (headers, then a small body) waits for the
client's delayed acknowledgement: 40 ms added to every small page and JSON answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol


class NoDelayH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
