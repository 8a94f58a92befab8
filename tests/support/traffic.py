"""Steady traffic to a live route during a deploy, for the zero-downtime tests.

Each client is a thread sending GET to one URL in a loop with its own session, recording every
answer with the time it came: the JSON body of a 200, or a string naming the failure. Ordering
questions ("no v1 after v2") are asked per client, since only one client's answers are in order.
"""

from __future__ import annotations

import threading
import time

import requests

from tests.support.processes import wait_until

Answer = object  # the JSON body of a 200, or a ``str`` saying what failed


class Traffic:
    """``with Traffic(url, clients=4) as traffic: ...``: ``clients`` threads GETting ``url`` until the block ends."""

    def __init__(self, url: str, clients: int = 1, *, pause: float = 0.02, timeout: float = 30.0):
        self.url = url
        self.pause = pause
        self.timeout = timeout
        self.stop = threading.Event()
        self.answers: list[list[tuple[float, Answer]]] = [[] for _ in range(clients)]
        self.threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(clients)]

    def _loop(self, i: int) -> None:
        with requests.Session() as session:
            while not self.stop.is_set():
                try:
                    resp = session.get(self.url, timeout=self.timeout)
                    answer: Answer = resp.json() if resp.status_code == 200 else f"HTTP {resp.status_code}"
                except (requests.RequestException, ValueError) as exc:
                    answer = f"{type(exc).__name__}: {exc}"
                self.answers[i].append((time.monotonic(), answer))
                if self.pause:
                    time.sleep(self.pause)

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    @property
    def total(self) -> int:
        return sum(len(answers) for answers in self.answers)

    @property
    def failures(self) -> list[str]:
        """Every answer that was not a 200 with a JSON body, from all clients."""
        return [a for answers in self.answers for _, a in answers if isinstance(a, str)]

    def versions(self, client: int = 0) -> list[str]:
        """The ``version`` of each good answer one client got, in order."""
        return [a["version"] for _, a in self.answers[client] if isinstance(a, dict)]

    def wait_for_answers(self, more: int, timeout: float = 120.0) -> None:
        """Wait until ``more`` answers beyond those already in have come (the traffic is really flowing)."""
        target = self.total + more
        wait_until(lambda: self.total >= target, timeout, f"{more} more answers from {self.url}")
