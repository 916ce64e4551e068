"""Test hosts made of Linux network namespaces: several machines' networks on one machine.

``Lab`` builds a switch namespace holding a bridge, and one namespace per host joined to it by
a veth pair (``eth0`` inside the host, its peer on the bridge). Every address lives inside those
namespaces, so no traffic can leave them: the root namespace gets no address and no route.

Invariants:
- Names are unique per lab (prefix from the pid and a counter), at most 15 characters per
  interface as the kernel requires, so labs of concurrent test runs never meet.
- ``close`` always runs (context manager): every process still inside a lab namespace is killed,
  then every namespace is deleted, which deletes its interfaces too.
- ``cut(host)`` takes the host's link down on the switch side (the host sees its peer vanish,
  as when a cable is pulled); ``restore(host)`` brings it back.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field

_counter = itertools.count()
SUBNET = "10.231"  # 10.231.<lab>.<host>/24, only ever inside the lab's namespaces


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["ip", *(("-n", ns) if ns else ()), *args]
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=30)


def available() -> str | None:
    """None when namespaces can be made here, else the kernel's reason in one line."""
    name = f"zlprobe{os.getpid() % 100000}"
    try:
        out = _ip("netns", "add", name, check=False)
    except FileNotFoundError:
        return "the ip command (iproute2) is missing"
    if out.returncode != 0:
        return f"ip netns add refused: {out.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


@dataclass
class Lab:
    hosts: int
    lab: int = field(default_factory=lambda: (os.getpid() * 7 + next(_counter)) % 250 + 1)
    created: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.prefix = f"zl{os.getpid() % 10000}x{self.lab}"
        self.switch = f"{self.prefix}sw"

    def ns(self, host: int) -> str:
        return f"{self.prefix}h{host}"

    def addr(self, host: int) -> str:
        return f"{SUBNET}.{self.lab}.{host + 1}"

    def _peer(self, host: int) -> str:
        return f"v{self.prefix}{host}"[:15]

    def __enter__(self) -> Lab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        _ip("netns", "add", self.switch)
        self.created.append(self.switch)
        _ip("link", "add", "br0", "type", "bridge", ns=self.switch)
        _ip("link", "set", "br0", "up", ns=self.switch)
        _ip("link", "set", "lo", "up", ns=self.switch)
        for h in range(self.hosts):
            ns = self.ns(h)
            _ip("netns", "add", ns)
            self.created.append(ns)
            _ip("link", "set", "lo", "up", ns=ns)
            peer = self._peer(h)
            _ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", peer, "netns", self.switch,
                ns=self.switch)
            _ip("link", "set", peer, "master", "br0", ns=self.switch)
            _ip("link", "set", peer, "up", ns=self.switch)
            _ip("addr", "add", f"{self.addr(h)}/24", "dev", "eth0", ns=ns)
            _ip("link", "set", "eth0", "up", ns=ns)

    def wrap(self, host: int, argv: list[str]) -> list[str]:
        """``argv`` run inside host ``host``'s network namespace."""
        return ["ip", "netns", "exec", self.ns(host), *argv]

    def run(self, host: int, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.wrap(host, argv), capture_output=True, text=True, timeout=timeout)

    def cut(self, host: int) -> None:
        _ip("link", "set", self._peer(host), "down", ns=self.switch)

    def restore(self, host: int) -> None:
        _ip("link", "set", self._peer(host), "up", ns=self.switch)

    def close(self) -> None:
        for ns in reversed(self.created):
            pids = _ip("netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        deadline = time.monotonic() + 10
        for ns in reversed(self.created):
            while _ip("netns", "pids", ns, check=False).stdout.strip() and time.monotonic() < deadline:
                time.sleep(0.05)
            _ip("netns", "del", ns, check=False)
        self.created.clear()
