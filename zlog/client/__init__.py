"""zmq-native clients of a zlog cluster.

- ``AsyncClient`` (connection.py): request/reply with the routers.
- ``AsyncProducer`` (producer.py): batching, sequencing, retries and idempotence; the one
  produce path, which the HTTP gateway uses too.
- ``Producer`` (blocking.py): the same from any thread, blocking or with futures.

Usage and semantics: docs/producers.md.
"""

from zlog.client.blocking import Producer
from zlog.client.connection import AsyncClient, nack_error
from zlog.client.producer import SPOOLABLE, AsyncProducer, Share, SpoolHook

__all__ = ["SPOOLABLE", "AsyncClient", "AsyncProducer", "Producer", "Share", "SpoolHook", "nack_error"]
