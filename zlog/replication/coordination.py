"""What zlog keeps in etcd, and the client that reads and changes it (over etcd's JSON gateway).

Keys, under ``cluster.etcd_prefix``:
- ``workers/<id>``: ``{"id", "host", "pid", "endpoint", "metrics_port"}``, put under the worker's
  lease, so it disappears when the worker stops renewing it (death, partition, hang).
- ``partitions/<name>``: ``{"replicas", "leader", "isr", "epoch", "target", "adding"}``;
  ``target``, when not empty, is the replica set a reassignment moves to, ``adding`` the
  replicas it adds (``replicas`` then holds the old set plus those, see ``zlog.replication.moves``). ``name`` is the
  partition number as a string; every tenant's partition of that number shares the key (its
  leader, ISR and epoch: ``zlog.replication.logset``), so etcd holds one key per partition.
- ``routers/<id>``: ``{"id", "host", "pid", "front", "back"}``, put under the router's lease
  (``zlog.replication.watch.Registration``): the routers producers and gateways connect to.
- ``drain/<id>``: present while worker ``id`` is being drained (``zlog worker drain``): it leads
  nothing and is never elected while another in-sync replica can be.

Invariants:
- A partition's state changes only by a transaction that compares the key's ``mod_revision``
  with the one the writer read (0: the key must not exist): two writers racing on the same
  state cannot both win, and a loser re-reads before it proposes again.
- Every call is bounded by ``timeout_s`` per endpoint; a failing endpoint is left for the next
  one in the list. Workers use ``call_timeout(ttl)``, a quarter of the lease, so a member that
  hangs (cut off from its peers, it holds reads until it gives up) costs a keepalive less than
  the third of the TTL between a renewal and fencing: the next member renews the lease in time. Failures surface as ``CoordinationError``; nothing here retries forever.
- The client is synchronous and holds no state besides the connection: callers run it off the
  data path (the worker's coordination thread).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import orjson
from etcd3gw.client import Etcd3Client
from etcd3gw.exceptions import Etcd3Exception


class CoordinationError(RuntimeError):
    """etcd could not be reached or refused the request."""


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def prefix_end(prefix: str) -> str:
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return b64(bytes(raw))


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    id: int
    host: str
    pid: int
    endpoint: str  # where its replication socket listens (followers fetch there)
    metrics_port: int = 0

    def to_json(self) -> bytes:
        return orjson.dumps({"id": self.id, "host": self.host, "pid": self.pid, "endpoint": self.endpoint,
                             "metrics_port": self.metrics_port})

    @classmethod
    def from_json(cls, raw: bytes) -> WorkerInfo:
        o = orjson.loads(raw)
        return cls(int(o["id"]), str(o["host"]), int(o["pid"]), str(o["endpoint"]), int(o.get("metrics_port", 0)))


@dataclass(frozen=True, slots=True)
class RouterInfo:
    id: int
    host: str
    pid: int
    front: str  # where producers and gateways connect
    back: str  # where storage workers connect

    def to_json(self) -> bytes:
        return orjson.dumps({"id": self.id, "host": self.host, "pid": self.pid, "front": self.front,
                             "back": self.back})

    @classmethod
    def from_json(cls, raw: bytes) -> RouterInfo:
        o = orjson.loads(raw)
        return cls(int(o["id"]), str(o["host"]), int(o["pid"]), str(o["front"]), str(o["back"]))


@dataclass(frozen=True, slots=True)
class PartitionState:
    replicas: tuple[int, ...]
    leader: int | None
    isr: tuple[int, ...]
    epoch: int
    target: tuple[int, ...] = ()  # a reassignment under way: the replica set it ends with
    adding: tuple[int, ...] = ()  # ... and the replicas it adds (in ``replicas`` already)

    @property
    def removing(self) -> tuple[int, ...]:
        return tuple(r for r in self.replicas if r not in self.target) if self.target else ()

    def to_json(self) -> bytes:
        return orjson.dumps({"replicas": list(self.replicas), "leader": self.leader,
                             "isr": sorted(self.isr), "epoch": self.epoch, "target": list(self.target),
                             "adding": list(self.adding)})

    @classmethod
    def from_json(cls, raw: bytes) -> PartitionState:
        o = orjson.loads(raw)
        leader = o.get("leader")
        return cls(tuple(int(r) for r in o["replicas"]), None if leader is None else int(leader),
                   tuple(sorted(int(r) for r in o["isr"])), int(o["epoch"]),
                   tuple(int(r) for r in o.get("target") or ()), tuple(int(r) for r in o.get("adding") or ()))


@dataclass(frozen=True, slots=True)
class Snapshot:
    revision: int
    workers: dict[int, WorkerInfo]
    partitions: dict[str, tuple[PartitionState, int]]  # name -> (state, mod_revision)
    drains: frozenset[int] = frozenset()
    routers: dict[int, RouterInfo] = field(default_factory=dict)


def call_timeout(lease_ttl_ms: int) -> float:
    """Seconds one etcd call may take on one endpoint for a worker whose lease is ``lease_ttl_ms``."""
    ttl_s = max(1, round(lease_ttl_ms / 1000))  # etcd counts leases in whole seconds
    return min(2.0, ttl_s / 4)


class Coordinator:
    def __init__(self, endpoints: tuple[str, ...], prefix: str, timeout_s: float = 2.0) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoints")
        self.endpoints = endpoints
        self.prefix = prefix.rstrip("/") + "/"
        self.timeout_s = timeout_s
        self._clients: dict[str, Etcd3Client] = {}
        self._current = 0

    def _client(self, endpoint: str) -> Etcd3Client:
        c = self._clients.get(endpoint)
        if c is None:
            scheme, _, rest = endpoint.partition("://")
            host, _, port = rest.rstrip("/").rpartition(":")
            c = self._clients[endpoint] = Etcd3Client(host=host.strip("[]"), port=int(port), protocol=scheme,
                                                      timeout=self.timeout_s, api_path="/v3/")
        return c

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        last: Exception | None = None
        for i in range(len(self.endpoints)):
            endpoint = self.endpoints[(self._current + i) % len(self.endpoints)]
            c = self._client(endpoint)
            try:
                out: dict[str, Any] = c.post(c.get_url(path), json=body)
                self._current = (self._current + i) % len(self.endpoints)
                return out
            except (Etcd3Exception, OSError, ValueError) as exc:
                last = exc
        raise CoordinationError(f"etcd {path}: {last}")

    def key(self, kind: str, name: str | int) -> str:
        return f"{self.prefix}{kind}/{name}"

    # -- leases ---------------------------------------------------------------------------

    def grant(self, ttl_s: int) -> int:
        return int(self._post("/lease/grant", {"TTL": ttl_s, "ID": 0})["ID"])

    def keepalive(self, lease: int) -> int:
        """Renew ``lease``; the TTL etcd now gives it (0: it had already expired)."""
        out = self._post("/lease/keepalive", {"ID": lease})
        return int(out.get("result", {}).get("TTL", 0))

    def revoke(self, lease: int) -> None:
        self._post("/lease/revoke", {"ID": lease})

    def register(self, info: WorkerInfo, lease: int) -> None:
        self.put_leased("workers", info.id, info.to_json(), lease)

    def put_leased(self, kind: str, name: str | int, value: bytes, lease: int) -> None:
        """``kind/name`` = ``value``, deleted by etcd when ``lease`` expires or is revoked."""
        self._post("/kv/put", {"key": b64(self.key(kind, name)), "value": b64(value), "lease": lease})

    # -- state ----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        out = self._post("/kv/range", {"key": b64(self.prefix), "range_end": prefix_end(self.prefix)})
        workers: dict[int, WorkerInfo] = {}
        partitions: dict[str, tuple[PartitionState, int]] = {}
        drains: set[int] = set()
        routers: dict[int, RouterInfo] = {}
        for kv in out.get("kvs", []):
            key = unb64(kv["key"]).decode()[len(self.prefix):]
            kind, _, name = key.partition("/")
            try:
                value = unb64(kv.get("value", ""))
                if kind == "workers":
                    w = WorkerInfo.from_json(value)
                    workers[w.id] = w
                elif kind == "partitions":
                    partitions[name] = (PartitionState.from_json(value), int(kv["mod_revision"]))
                elif kind == "drain":
                    drains.add(int(name))
                elif kind == "routers":
                    r = RouterInfo.from_json(value)
                    routers[r.id] = r
            except (ValueError, KeyError, TypeError):
                continue  # a value we did not write: ignored rather than trusted
        return Snapshot(int(out["header"]["revision"]), workers, partitions, frozenset(drains), routers)

    def set_drain(self, worker: int, on: bool) -> None:
        key = b64(self.key("drain", worker))
        if on:
            self._post("/kv/put", {"key": key, "value": b64(b"{}")})
        else:
            self._post("/kv/deleterange", {"key": key})

    def cas(self, name: str, state: PartitionState, mod_revision: int) -> bool:
        """Write ``state`` if the key still has ``mod_revision`` (0: if it does not exist)."""
        key = b64(self.key("partitions", name))
        cmp: dict[str, Any] = {"key": key, "target": "MOD", "result": "EQUAL", "mod_revision": mod_revision}
        txn = {"compare": [cmp], "success": [{"request_put": {"key": key, "value": b64(state.to_json())}}],
               "failure": []}
        return bool(self._post("/kv/txn", txn).get("succeeded", False))

    def healthy(self) -> bool:
        try:
            self._post("/maintenance/status", {})
            return True
        except CoordinationError:
            return False
