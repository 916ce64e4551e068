"""Which role a request needs: a pure table of (method, path) -> ``write`` | ``read`` | ``admin``.

Invariants:
- ``admin`` may do everything; ``write`` only sends records (the intake endpoints); ``read``
  only reads (every GET/HEAD, and the POST forms of Loki's query endpoints).
- ``any`` (every valid credential): the Elasticsearch handshake a shipper makes before its first
  bulk (license, cluster health, templates, ILM and pipeline probes, the product check on ``/``),
  the viewer's static files (they answer fixed bodies and hold no data) and signing a browser in
  (``POST /v1/session``).
- Anything not named here needs ``admin``: an endpoint added later is closed until it is placed.
"""

from __future__ import annotations

# Endpoints that store records (POST): zlog's own, Loki push, OTLP/HTTP logs, Elasticsearch bulk.
WRITE_PATHS = frozenset(("/v1/logs", "/loki/api/v1/push", "/api/prom/push", "/otlp/v1/logs", "/v1/otlp/logs",
                         "/_bulk"))
WRITE_SUFFIXES = ("/_bulk",)
# Loki's query API also accepts POST with a form body; those requests only read.
READ_POST_PREFIXES = ("/loki/api/v1/", "/api/prom/")
READ_METHODS = frozenset(("GET", "HEAD"))
ES_HANDSHAKE_PREFIXES = ("/_license", "/_xpack", "/_cat/templates", "/_index_template", "/_ilm/", "/_ingest/",
                         "/_cluster/health")
# Static files: the viewer's page and scripts (its data comes from the API, which checks the role),
# and ``GET /``, which is also Elasticsearch's product check that a shipper makes with a write key.
STATIC_PATHS = frozenset(("/",))
STATIC_PREFIXES = ("/ui/",)
# A browser signs in with its token here (zlog.gateway.session); any valid credential may.
SESSION_PATH = "/v1/session"


def is_static(path: str) -> bool:
    return path in STATIC_PATHS or path.startswith(STATIC_PREFIXES)


def required_role(method: str, path: str) -> str:
    method = method.upper()
    if method == "POST" and (path in WRITE_PATHS or path.endswith(WRITE_SUFFIXES)):
        return "write"
    if method == "PUT" and path.endswith(WRITE_SUFFIXES):  # Elasticsearch's bulk takes PUT as well
        return "write"
    if method in ("GET", "HEAD", "PUT") and path.startswith(ES_HANDSHAKE_PREFIXES):
        return "any"
    if method in READ_METHODS and is_static(path):
        return "any"
    if method in ("POST", "GET", "HEAD") and path == SESSION_PATH:  # signing in checks the credential only
        return "any"
    if method in READ_METHODS:
        return "read"
    if method == "POST" and path.startswith(READ_POST_PREFIXES):
        return "read"
    return "admin"


def allows(role: str, needed: str) -> bool:
    return role == "admin" or needed == "any" or role == needed
