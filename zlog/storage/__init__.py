"""zlog's storage engine: a Kafka-style partition log of JSON lines (files only, no sockets).

``PartitionLog`` (partition.py) is the entry point; segment.py, index.py, batches.py,
producers.py, recovery.py, scan.py, staging.py, writer.py and retention.py are its parts, each stating its invariants.
"""

from zlog.storage.partition import PartitionLog
from zlog.storage.producers import ProducerBatch
from zlog.storage.scan import ScanResult
from zlog.storage.staging import AppendResult

__all__ = ["AppendResult", "PartitionLog", "ProducerBatch", "ScanResult"]
