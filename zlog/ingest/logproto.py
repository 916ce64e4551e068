"""Loki's ``logproto.PushRequest`` as a protobuf message class, built from its descriptor in code.

Loki's push.proto (grafana/loki pkg/push/push.proto), the fields zlog reads:
``PushRequest{repeated StreamAdapter streams = 1}``,
``StreamAdapter{string labels = 1; repeated EntryAdapter entries = 2; uint64 hash = 3}``,
``EntryAdapter{google.protobuf.Timestamp timestamp = 1; string line = 2;
repeated LabelPairAdapter structuredMetadata = 3}``, ``LabelPairAdapter{string name = 1; string value = 2}``.
Built here instead of shipping generated code, so the C parser of the ``protobuf`` package (upb)
decodes it: bounds, truncation and UTF-8 of ``string`` fields are its to check.

Invariants:
- Defined once per process, in a pool of its own (no clash with any other ``logproto``).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    timestamp_pb2,
)

_F = descriptor_pb2.FieldDescriptorProto


def _build() -> Any:
    fd = descriptor_pb2.FileDescriptorProto(name="zlog/logproto/push.proto", package="logproto", syntax="proto3",
                                            dependency=["google/protobuf/timestamp.proto"])

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> None:
        m = fd.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            f = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = type_name

    opt, rep = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    message("PushRequest", ("streams", 1, _F.TYPE_MESSAGE, rep, ".logproto.StreamAdapter"))
    message("StreamAdapter", ("labels", 1, _F.TYPE_STRING, opt, ""),
            ("entries", 2, _F.TYPE_MESSAGE, rep, ".logproto.EntryAdapter"),
            ("hash", 3, _F.TYPE_UINT64, opt, ""))
    message("LabelPairAdapter", ("name", 1, _F.TYPE_STRING, opt, ""), ("value", 2, _F.TYPE_STRING, opt, ""))
    message("EntryAdapter", ("timestamp", 1, _F.TYPE_MESSAGE, opt, ".google.protobuf.Timestamp"),
            ("line", 2, _F.TYPE_STRING, opt, ""),
            ("structuredMetadata", 3, _F.TYPE_MESSAGE, rep, ".logproto.LabelPairAdapter"))
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("logproto.PushRequest"))


PushRequest = _build()
