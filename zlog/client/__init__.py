"""zmq-native clients of a zlog cluster.

- ``AsyncClient`` (connection.py): request/reply with the routers.
- ``AsyncProducer`` (producer.py): batching, sequencing, retries and idempotence; the one
  produce path, which the HTTP gateway uses too. ``sender.py`` is how one attempt travels (alone,
  or with the other batches for the same worker); ``batch.py`` what a batch is; ``sequences.py``
  its producer id and sequence; ``retry.py`` how it is retried; ``leaders.py`` etcd's leaders.
- ``Producer`` (blocking.py): the same from any thread, blocking or with futures.

Usage and semantics: docs/producers.md.
"""

from zlog.client.batch import SPOOLABLE, Share, SpoolHook
from zlog.client.blocking import Producer
from zlog.client.connection import AsyncClient, nack_error
from zlog.client.producer import AsyncProducer

__all__ = ["SPOOLABLE", "AsyncClient", "AsyncProducer", "Producer", "Share", "SpoolHook", "nack_error"]
