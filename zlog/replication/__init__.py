"""Replication: R copies of each partition, a leader per partition chosen through etcd.

The pure cores (``epochs``: the leader-epoch cache and KIP-101 truncation; ``isr``: in-sync
replicas and the high watermark) know no sockets and no clock; the shells around them
(coordination through etcd, the leader's and the followers' fetch loops) call them.
"""
