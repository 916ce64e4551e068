"""Named errors of the produce and read paths, each with one wire NACK code and one HTTP status.

Invariants:
- Every failure a client can see has a name here; the table below is the single mapping from
  name to NACK code, HTTP status and retryability (documented in docs/protocol.md).
- 4xx means the caller's input is at fault; 5xx means ours. A retryable error is never a 4xx
  except 429.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ErrorKind:
    code: str
    http_status: int
    retry: bool
    summary: str


KINDS: dict[str, ErrorKind] = {
    k.code: k
    for k in (
        ErrorKind("INVALID_RECORD", 400, False, "a record failed validation"),
        ErrorKind("RECORD_TOO_LARGE", 413, False, "a record exceeds the maximum record size"),
        ErrorKind("BAD_BODY", 400, False, "a message body does not follow the protocol"),
        ErrorKind("BAD_FRAMES", 400, False, "a message does not have the protocol's frames"),
        ErrorKind("BAD_PROTOCOL", 400, False, "unsupported protocol version"),
        ErrorKind("BAD_COMMAND", 400, False, "unknown command"),
        ErrorKind("BAD_REQUEST_ID", 400, False, "malformed request id"),
        ErrorKind("BAD_ROUTE", 400, False, "malformed route"),
        ErrorKind("BODY_TOO_LARGE", 413, False, "message body too large"),
        ErrorKind("UNKNOWN_PARTITION", 400, False, "no such partition"),
        ErrorKind("UNKNOWN_TENANT", 400, False, "no such tenant"),
        ErrorKind("INVALID_TENANT", 400, False, "not a tenant id (1..150 bytes of 0-9 a-z A-Z ! - _ . * ' ( ))"),
        ErrorKind("UNAUTHORIZED", 401, False, "credentials are missing or not valid"),
        ErrorKind("FORBIDDEN", 403, False, "the credential's role may not do this"),
        ErrorKind("NO_SESSION", 400, False, "only auth.mode = token has browser sessions"),
        ErrorKind("TOO_MANY_TENANTS", 429, False, "the cluster keeps no more tenants"),
        ErrorKind("QUOTA_EXCEEDED", 429, False, "the tenant's storage quota is used up; nothing was stored"),
        ErrorKind("TOO_MANY_SERVICES", 429, False, "the tenant writes to as many services as it may"),
        ErrorKind("NO_OWNER", 503, True, "the partition has no live storage worker"),
        ErrorKind("NOT_OWNER", 503, True, "the worker does not own that partition"),
        ErrorKind("NOT_ENOUGH_REPLICAS", 503, True, "fewer in-sync replicas than storage.min_insync_replicas (acks=all)"),
        ErrorKind("BACKPRESSURE", 503, True, "the cluster is overloaded; retry later"),
        ErrorKind("OUT_OF_ORDER_SEQUENCE", 503, True, "a producer batch arrived out of sequence"),
        ErrorKind("WORKER_LOST", 503, True, "the storage worker died with the request in flight"),
        ErrorKind("ROUTER_LOST", 503, True, "the connection to the router broke with the request in flight"),
        ErrorKind("SHUTTING_DOWN", 503, True, "the process is stopping"),
        ErrorKind("TIMEOUT", 504, True, "storage did not answer within the deadline"),
        ErrorKind("DISK_FULL", 507, True, "the storage worker's disk is full"),
        ErrorKind("STORAGE_ERROR", 503, True, "the storage worker could not write (read-only or failing disk)"),
        ErrorKind("UNSUPPORTED_MEDIA_TYPE", 415, False, "unsupported content type or content encoding"),
        ErrorKind("REQUEST_TIMEOUT", 408, False, "the request body did not arrive within the deadline"),
        ErrorKind("PAYLOAD_TOO_LARGE", 413, False, "the request body exceeds the configured limit"),
        ErrorKind("BAD_PARAMETER", 400, False, "a query parameter is invalid"),
        ErrorKind("NOT_FOUND", 404, False, "no such resource"),
        ErrorKind("METHOD_NOT_ALLOWED", 405, False, "method not allowed"),
        ErrorKind("RATE_LIMITED", 429, True, "too many requests from this client"),
        ErrorKind("TENANT_RATE_LIMITED", 429, True, "the tenant is over its ingest rate"),
        ErrorKind("WAL_FULL", 503, True, "the ingest write-ahead log is full"),
        ErrorKind("CORRUPT_DATA", 500, False, "stored data fails its checksum (zlog verify names the block)"),
        ErrorKind("INTERNAL", 500, True, "internal error"),
    )
}


def kind(code: str) -> ErrorKind:
    return KINDS.get(code) or KINDS["INTERNAL"]


class ZlogError(Exception):
    """An error with a name: the NACK code and the HTTP status follow from ``code``."""

    def __init__(self, code: str, message: str = "", *, partition: int | None = None) -> None:
        super().__init__(message or kind(code).summary)
        self.code = code
        self.message = message or kind(code).summary
        self.partition = partition

    @property
    def http_status(self) -> int:
        return kind(self.code).http_status

    @property
    def retry(self) -> bool:
        return kind(self.code).retry

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"error": self.code, "message": self.message}
        if self.partition is not None:
            out["partition"] = self.partition
        return out


class NoOwner(ZlogError):
    def __init__(self, partition: int) -> None:
        super().__init__("NO_OWNER", f"partition {partition} has no live storage worker", partition=partition)


class Backpressure(ZlogError):
    def __init__(self, message: str = "") -> None:
        super().__init__("BACKPRESSURE", message)


class OverLimit(ZlogError):
    """A refusal that says how long to wait (HTTP 429 + Retry-After; a NACK's ``retry_after``)."""

    def __init__(self, code: str, message: str, retry_after: int, *, partition: int | None = None) -> None:
        super().__init__(code, message, partition=partition)
        self.retry_after = retry_after


class Timeout(ZlogError):
    def __init__(self, message: str = "", partition: int | None = None) -> None:
        super().__init__("TIMEOUT", message, partition=partition)


class InvalidRecord(ZlogError):
    def __init__(self, message: str) -> None:
        super().__init__("INVALID_RECORD", message)


class BadParameter(ZlogError):
    """A query parameter is invalid; ``parameter`` names it (HTTP 400 BAD_PARAMETER)."""

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__("BAD_PARAMETER", f"{parameter}: {problem}")
        self.parameter = parameter

    def to_json(self) -> dict[str, object]:
        out = super().to_json()
        out["parameter"] = self.parameter
        return out
