"""How many bytes a producer's values take in an answer, as protobuf encodes them.

A job's ``options``, ``changed`` and ``synced_accounts`` (a task's ``options`` and ``changed``)
are the caller's; their encoded size bounds what one stored document adds to a page of
``list``. Counted here from the plain values, field by field as ``render`` fills ``JobInfo`` and
``JobTaskInfo`` (every field number below 16, so each tag is one byte); a test holds the count
to the rendered messages' own ``ByteSize``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def varint(number: int) -> int:
    """The bytes of a varint."""
    size = 1
    while number >= 0x80:
        number >>= 7
        size += 1
    return size


def delimited(body: int) -> int:
    """A length-delimited field of ``body`` bytes, with its tag and length."""
    return 1 + varint(body) + body


def text(value: str) -> int:
    """A string field that is set (proto3 leaves an empty one out)."""
    return delimited(len(value.encode())) if value else 0


def value(item: Any) -> int:
    """The body of a ``google.protobuf.Value``."""
    if item is None or isinstance(item, bool):
        return 2  # null_value or bool_value: a tag and one byte
    if isinstance(item, int | float):
        return 9  # number_value: a tag and a double
    if isinstance(item, str):
        return delimited(len(item.encode()))
    if isinstance(item, Mapping):
        return delimited(struct(item))
    return delimited(sum(delimited(value(element)) for element in item))


def struct(fields: Mapping[str, Any]) -> int:
    """The body of a ``google.protobuf.Struct``: one map entry (key, value) per field."""
    return sum(
        delimited(delimited(len(key.encode())) + delimited(value(item)))
        for key, item in fields.items()
    )


def changed(entry: Mapping[str, Any]) -> int:
    """A ``ChangedInfo`` field: start, end, and its filter (rendered even when empty)."""
    body = text(entry.get("start") or "") + text(entry.get("end") or "")
    return delimited(body + delimited(struct(entry.get("filter") or {})))


def job_values(
    options: Mapping[str, Any],
    changes: Sequence[Mapping[str, Any]],
    synced_accounts: Sequence[str],
) -> dict[str, int]:
    """What a job's options, changed and synced_accounts take in its ``JobInfo``, each."""
    return {
        "options": delimited(struct(options)),
        "changed": sum(changed(c) for c in changes),
        "synced_accounts": sum(delimited(text(account)) for account in synced_accounts),
    }


def task_values(options: Mapping[str, Any], change: Mapping[str, Any] | None) -> dict[str, int]:
    """What a task's options and changed take in its ``JobTaskInfo``, each."""
    return {
        "options": delimited(struct(options)),
        "changed": 0 if change is None else changed(change),
    }
