"""Process checks for the Ray tests: which processes a test started, that they listen on 127.0.0.1 only, and
that they are gone after shutdown (by pid)."""

from __future__ import annotations

import time

import psutil

LOOPBACK = ("127.0.0.1", "::ffff:127.0.0.1", "::1")


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pids: set[int], timeout: float = 20.0) -> set[int]:
    """The pids still alive after up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {p for p in alive if not _gone(p)}
        if alive:
            time.sleep(0.2)
    return alive


def descendants(pid: int) -> set[int]:
    """Every live process below `pid`."""
    try:
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def not_on_loopback(pids: set[int]) -> list[str]:
    """Listening sockets of `pids` bound anywhere but the loopback interface."""
    bad = []
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        bad += [f"{pid} {c.laddr}" for c in conns if c.status == psutil.CONN_LISTEN and c.laddr.ip not in LOOPBACK]
    return bad
