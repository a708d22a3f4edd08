"""Work done every few seconds beside a longer task: the import's progress and heartbeat, the import
benchmark's memory samples.

A ``Ticker`` calls ``tick`` on a daemon thread of its own while its ``with`` block runs; the block never
waits for it, and leaving the block stops the thread (after the tick under way, if any).
"""

from __future__ import annotations

import threading
from typing import Self


class Ticker:
    def __init__(self, interval: float, name: str | None = None) -> None:
        self.interval = interval
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def tick(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self.stop_event.wait(self.interval):
            self.tick()

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join()
