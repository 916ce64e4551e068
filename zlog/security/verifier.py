"""Checking a presented credential against the credentials, with a bounded cache of results.

A scrypt check costs tens of milliseconds of CPU, far more than the request it guards, so a
verified credential is remembered for ``cache_s``: the key is an HMAC-SHA256 of the credential
under a key made at start-up and never written anywhere, so the cache holds no secret and a
lookup reveals nothing about how close a guess was. Failures are remembered too (briefly), so a
client retrying a wrong token costs one check, not one per request.

Invariants:
- ``replace`` (a reload) empties both caches at once and bumps the generation; a check that
  started before it never stores its (stale) result after it, so a revoked token stops
  working at the next request after the reload.
- Both caches are bounded (``MAX_CACHED``); the oldest entry goes first.
- Pure apart from the clock (an argument) and ``os.urandom`` for the cache key.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zlog.security import hashes
from zlog.security.credentials import Credentials, Principal, split_token, valid_user

MAX_CACHED = 10_000
NEGATIVE_S = 5.0
MAX_AUTH_HEADER = 4096


@dataclass(frozen=True, slots=True)
class Presented:
    """A credential as the request carried it: ``scheme`` is ``bearer`` or ``basic``."""

    scheme: str
    value: str  # the token, or "user:password"


def parse_authorization(header: str | None) -> Presented | None:
    """The credential in an Authorization header, or None when there is none worth checking."""
    if not header or len(header) > MAX_AUTH_HEADER:
        return None
    scheme, _, rest = header.strip().partition(" ")
    rest = rest.strip()
    if scheme.lower() == "bearer" and rest:
        return Presented("bearer", rest)
    if scheme.lower() == "basic" and rest:
        try:
            decoded = base64.b64decode(rest, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if ":" not in decoded:
            return None
        return Presented("basic", decoded)
    return None


class Verifier:
    def __init__(self, creds: Credentials, cache_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.creds = creds
        self.cache_s = cache_s
        self.clock = clock
        self.generation = 0
        self._key = os.urandom(32)
        self._good: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()
        self._bad: OrderedDict[bytes, float] = OrderedDict()

    def replace(self, creds: Credentials) -> None:
        self.creds = creds
        self.generation += 1
        self._good.clear()
        self._bad.clear()

    def _digest(self, p: Presented) -> bytes:
        return hmac.digest(self._key, f"{p.scheme}\0{p.value}".encode("utf-8", "surrogatepass"), "sha256")

    def cached(self, p: Presented) -> Principal | bool | None:
        """The cached answer: a Principal, False (recently failed), or None (not known: check it).

        Never True: the bool is only ever False."""
        d = self._digest(p)
        now = self.clock()
        hit = self._good.get(d)
        if hit is not None:
            principal, expires = hit
            if now < expires:
                return principal
            del self._good[d]
        bad = self._bad.get(d)
        if bad is not None:
            if now < bad:
                return False
            del self._bad[d]
        return None

    def needs_hashing(self, p: Presented) -> bool:
        """False when the answer is no without any hashing (malformed, or an unknown token id)."""
        if p.scheme == "bearer":
            parts = split_token(p.value)
            return parts is not None and parts[0] in self.creds.tokens
        return True  # basic: an unknown user is checked against a dummy hash, as long as a known one

    def check(self, p: Presented, generation: int | None = None) -> Principal | None:
        """Verify (slow: a scrypt hash) and remember the answer unless a reload happened meanwhile."""
        generation = self.generation if generation is None else generation
        principal = self._verify(p)
        if generation == self.generation:
            d = self._digest(p)
            now = self.clock()
            if principal is not None:
                self._good[d] = (principal, now + self.cache_s)
                _bound(self._good)
            else:
                self._bad[d] = now + NEGATIVE_S
                _bound(self._bad)
        return principal

    def _verify(self, p: Presented) -> Principal | None:
        creds = self.creds
        if p.scheme == "bearer":
            parts = split_token(p.value)
            if parts is None:
                return None
            tid, secret = parts
            entry = creds.tokens.get(tid)
            if entry is None or not hashes.verify(secret, entry.hash):
                return None
            return Principal(entry.tenant, entry.role, f"token:{tid}")
        user, _, password = p.value.partition(":")
        entry = creds.users.get(user) if valid_user(user) else None
        if entry is None:
            hashes.verify(password, hashes.dummy_hash(hashes.PASSWORD_LOG2_N))
            return None
        if not hashes.verify(password, entry.hash):
            return None
        return Principal(entry.tenant, entry.role, f"user:{user}")


def _bound(cache: OrderedDict[bytes, Any]) -> None:
    while len(cache) > MAX_CACHED:
        cache.popitem(last=False)
