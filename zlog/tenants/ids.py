"""Tenant ids: which strings name a tenant, and which tenant a request without one belongs to.

The rule is Loki's, Mimir's and Pyroscope's, so a client written for them works unchanged: a
tenant id is 1 to 150 bytes of ``0-9 a-z A-Z ! - _ . * ' ( )``, and ``.`` and ``..`` are not ids.

Invariants:
- Pure: no I/O, no configuration; callers pass the default tenant they were configured with.
- A valid id is always safe as one path component: no ``/``, no NUL, no whitespace, not ``.``
  or ``..``, ASCII only. Storage may use it as a directory name as it is.
- Refusals never echo more than a short, escaped prefix of the offending value (it may be a
  header an attacker chose, up to the header size limit).
- ``DEFAULT_TENANT`` is ``default``, not Loki's ``fake``: it names the tenant of every record
  when authentication is off and the request names none, and it is what ``cluster.tenant``
  defaults to, so existing single-tenant data stays where it was.
"""

from __future__ import annotations

import re

from zlog.protocol.errors import ZlogError

DEFAULT_TENANT = "default"
MAX_TENANT_BYTES = 150
# The header a request names its tenant in when authentication is off (Loki's).
TENANT_HEADER = "X-Scope-OrgID"

_ID = re.compile(r"[0-9A-Za-z!\-_.*'()]{1,150}")


class InvalidTenant(ZlogError):
    """A tenant id that breaks the rule; 400 on HTTP, ``INVALID_TENANT`` on the wire."""

    def __init__(self, message: str) -> None:
        super().__init__("INVALID_TENANT", message)


def is_valid(tenant: object) -> bool:
    """True when ``tenant`` is a string that is a tenant id."""
    return (
        isinstance(tenant, str)
        and _ID.fullmatch(tenant) is not None
        and tenant not in (".", "..")
    )


def validate(tenant: object) -> str:
    """Return ``tenant`` when it is a tenant id, else raise ``InvalidTenant`` saying why."""
    if is_valid(tenant):
        return tenant  # type: ignore[return-value]
    if not isinstance(tenant, str):
        raise InvalidTenant("a tenant id must be a string")
    if not tenant:
        raise InvalidTenant("a tenant id must not be empty")
    if tenant in (".", ".."):
        raise InvalidTenant("'.' and '..' are not tenant ids")
    if len(tenant.encode("utf-8", "surrogatepass")) > MAX_TENANT_BYTES:
        raise InvalidTenant(f"a tenant id is at most {MAX_TENANT_BYTES} bytes")
    bad = next(c for c in tenant if not _ID.fullmatch(c))
    raise InvalidTenant(
        f"a tenant id may hold only 0-9 a-z A-Z ! - _ . * ' ( ); found {bad!a} in {_preview(tenant)}"
    )


def from_header(value: str | None, default: str = DEFAULT_TENANT) -> str:
    """The tenant a request names in ``X-Scope-OrgID``; ``default`` when it names none.

    An absent header means the default tenant; a present one must be an id (an empty or
    blank header is refused rather than silently mapped to the default, so a client that
    means to name a tenant and fails to is told).
    """
    if value is None:
        return default
    return validate(value)


def _preview(value: str, limit: int = 32) -> str:
    # ascii() escapes control characters and non-ASCII, so a log line or JSON body stays one line.
    text = ascii(value[:limit])
    return text + ("..." if len(value) > limit else "")
