"""Salted, slow hashes of secrets (tokens and passwords) and their constant-time check.

A hash is the text ``scrypt$<log2 n>$<r>$<p>$<salt b64>$<digest b64>``, so its parameters
travel with it and can be raised later without invalidating stored credentials.

Invariants:
- Pure apart from ``os.urandom`` for salts and secrets; no files, no clocks.
- A secret is never compared byte by byte: both sides are scrypt digests of the same
  parameters and salt, compared with ``hmac.compare_digest``.
- ``verify`` returns False (never raises) on a malformed stored hash, so one damaged entry
  denies only itself.
- Parameters are bounded on read (n <= 2**20, r <= 16, p <= 4), so a crafted file cannot make a
  check take seconds or gigabytes.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os

# Tokens are 256 random bits: the hash only keeps a stolen file from being a list of live
# tokens, and n=2**14 (~45 ms of CPU, 16 MiB) is plenty. Passwords are chosen by people:
# n=2**15 (~100 ms, 32 MiB) makes guessing from a stolen file slower (docs/security.md).
TOKEN_LOG2_N = 14
PASSWORD_LOG2_N = 15
R, P = 8, 1
SALT_BYTES = 16
DIGEST_BYTES = 32
_MAX_LOG2_N, _MAX_R, _MAX_P = 20, 16, 4


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(secret: bytes, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=DIGEST_BYTES,
                          maxmem=129 * n * r * p + (1 << 20))


def hash_secret(secret: str, log2_n: int = TOKEN_LOG2_N, *, salt: bytes | None = None) -> str:
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = _scrypt(secret.encode("utf-8", "surrogatepass"), salt, log2_n, R, P)
    return f"scrypt${log2_n}${R}${P}${_b64(salt)}${_b64(digest)}"


def verify(secret: str, stored: str) -> bool:
    """True when ``secret`` hashes to ``stored``; the comparison takes the same time either way."""
    try:
        scheme, n_s, r_s, p_s, salt_s, digest_s = stored.split("$")
        log2_n, r, p = int(n_s), int(r_s), int(p_s)
        salt, want = _unb64(salt_s), _unb64(digest_s)
    except ValueError:
        return False
    if scheme != "scrypt" or not (1 <= log2_n <= _MAX_LOG2_N and 1 <= r <= _MAX_R and 1 <= p <= _MAX_P):
        return False
    got = _scrypt(secret.encode("utf-8", "surrogatepass"), salt, log2_n, r, p)
    return hmac.compare_digest(got, want)


def new_secret(nbytes: int = 32) -> str:
    return _b64(os.urandom(nbytes))


@functools.cache
def dummy_hash(log2_n: int) -> str:
    """A stored hash no real secret matches: checked when a user is unknown, so that answering
    "no such user" takes as long as "wrong password"."""
    return hash_secret(new_secret(), log2_n)
