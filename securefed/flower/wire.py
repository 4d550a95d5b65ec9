"""How securefed's messages ride Flower ``Message``s: one record per message, bytes inside.

Every protocol message already has ``to_bytes`` / ``from_bytes`` (``securefed.secagg``), so a
Flower message carries it as one ``bytes`` value of a ``ConfigRecord`` named ``securefed``,
next to a few plain fields (round index, invited institutions). Only the global adapter,
which the server sends in the clear anyway, travels as an ``ArrayRecord``. Nothing per
client is ever put in a record outside the masked payload.

Message types (``<category>.<action>``, routed by the ClientApp); each protocol stage's is
``train.<stage name>``, one per row of ``secagg.STAGE_TABLE`` (``message_type``):

    query.join               server -> node: resolved run config   node -> server: institution
                                                                   id (or "refused" and why)
    train.advertise_keys     global adapter, round, invited        AdvertiseKeys (or "stopped")
    train.share_keys         KeyDirectory                          ShareKeys
    train.masked_input       ShareDelivery (this node's own)       MaskedInput
    train.consistency_check  SurvivorSet                           SurvivorSignature
    train.unmasking          UnmaskRequest (this node's own)       UnmaskResponse
    evaluate.final           final global adapter                  acknowledgement only
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

from securefed.errors import InvalidMessage
from securefed.secagg import Stage

JOIN = "query.join"
FINAL = "evaluate.final"

_FIELDS = "securefed"
_GLOBAL = "global_adapter"


def message_type(stage: Stage) -> str:
    """The Flower message type of a protocol stage: ``train.<stage name>``."""
    return f"train.{stage.name}"


def content(fields: dict, global_vector: np.ndarray | None = None) -> RecordDict:
    """A message body: ``fields`` (ints, strings, bytes, lists) and optionally the adapter."""
    records: dict = {_FIELDS: ConfigRecord(fields)}
    if global_vector is not None:
        vector = np.ascontiguousarray(global_vector, dtype=np.float32)  # (d,)
        records[_GLOBAL] = ArrayRecord({"vector": Array(vector)})
    return RecordDict(records)


def fields_of(message: Message) -> dict:
    """The plain fields of a message; ``InvalidMessage`` if it has none."""
    if message.has_error() or _FIELDS not in message.content.config_records:
        raise InvalidMessage()
    return dict(message.content.config_records[_FIELDS])


def global_vector_of(message: Message) -> np.ndarray:
    """The global adapter (float32, (d,)) carried by a message."""
    if _GLOBAL not in message.content.array_records:
        raise InvalidMessage()
    vector = message.content.array_records[_GLOBAL]["vector"].numpy()
    if vector.dtype != np.float32 or vector.ndim != 1:
        raise InvalidMessage()
    return vector


def payload_of(message: Message) -> bytes:
    """The protocol message bytes a reply or request carries."""
    payload = fields_of(message).get("payload")
    if not isinstance(payload, bytes):
        raise InvalidMessage()
    return payload


def reply(to: Message, fields: dict) -> Message:
    return Message(content(fields), reply_to=to)


def content_bytes(body: RecordDict) -> int:
    """Bytes of a message body as Flower serializes it (records, arrays and array chunks)."""
    return sum(len(obj.deflate()) for obj in get_all_nested_objects(body).values())
