"""zlog's storage engine: a Kafka-style partition log of JSON lines (files only, no sockets).

``PartitionLog`` (partition.py) is the entry point; segment.py, index.py, batches.py,
producers.py, recovery.py and scan.py are its parts, each stating its invariants.
"""

from zlog.storage.partition import AppendResult, PartitionLog
from zlog.storage.producers import ProducerBatch
from zlog.storage.scan import ScanResult

__all__ = ["AppendResult", "PartitionLog", "ProducerBatch", "ScanResult"]
