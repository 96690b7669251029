"""Every part of mongomock the embedded store uses beyond its public client, in one place.

mongomock's pipeline handlers, expression evaluator, filter matching and BSON ordering are not
a public API, and neither is the way a collection holds its documents. The embedded store
builds on them (see :mod:`.embedded` and :mod:`.stages`), so they are named here only, and this
module refuses to load a mongomock outside the versions they were tested with: the start stops
with one line saying which version is installed and which are tested.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from importlib.metadata import version
from typing import Any

from bson import ObjectId

from spaceone_job.store.documents import Document, StoreUnusable

# The versions the embedded store is tested with; pyproject.toml pins the same range.
TESTED = ((4, 3, 0), (4, 4))
TESTED_TEXT = "mongomock>=4.3.0,<4.4"


def _release(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split("."):
        digits = "".join(c for c in part if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def check_version(installed: str) -> None:
    """Refuse a mongomock outside :data:`TESTED` with :class:`StoreUnusable`."""
    low, high = TESTED
    if not low <= _release(installed) < high:
        raise StoreUnusable(
            f"the embedded store needs {TESTED_TEXT} (tested), but mongomock {installed} "
            f"is installed: pip install '{TESTED_TEXT}'"
        )


check_version(version("mongomock"))

# Imported after the check: an untested mongomock may not have these names at all.
from mongomock.aggregate import (  # noqa: E402
    _PIPELINE_HANDLERS as PIPELINE_HANDLERS,
)
from mongomock.aggregate import (  # noqa: E402
    _accumulate_group as accumulate_group,
)
from mongomock.aggregate import (  # noqa: E402
    _parse_expression as parse_expression,
)
from mongomock.filtering import (  # noqa: E402
    SORTING_OPERATOR_MAP,
    BsonComparable,
    bson_compare,
    filter_applies,
)
from mongomock.filtering import (  # noqa: E402
    _get_compare_type as _compare_type,
)
from mongomock.helpers import get_value_by_dot, mongodb_to_bool  # noqa: E402

__all__ = [
    "PIPELINE_HANDLERS",
    "SORTING_OPERATOR_MAP",
    "BsonComparable",
    "accumulate_group",
    "bson_compare",
    "filter_applies",
    "get_value_by_dot",
    "mongodb_to_bool",
    "parse_expression",
]

# mongomock's BSON type codes for the types the embedded store orders itself, read from
# mongomock's own comparator so that they cannot drift from it.
TYPE_CODES: dict[type, int] = {
    kind: _compare_type(sample)
    for kind, sample in (
        (type(None), None),
        (int, 0),
        (float, 0.0),
        (str, ""),
        (ObjectId, ObjectId()),
        (bool, True),
        (datetime, datetime(2000, 1, 1)),
    )
}
OBJECT_CODE, ARRAY_CODE = _compare_type({}), _compare_type([])


def stored_documents(collection: Any) -> Iterator[Document]:
    """The documents a collection holds, in place (mongomock holds a reader lock while the
    iterator is open)."""
    documents: Iterator[Document] = collection._store.documents
    return documents


def by_object_id(collection: Any, object_id: Any) -> Document | None:
    """The stored document with this ``_id``, or None: a plain dict read (atomic under the
    interpreter lock); mongomock's own item access takes a reader lock and checks expiry
    indexes, which cost more than the lookup (no TTL here)."""
    found: Document | None = collection._store._documents.get(object_id)
    return found


def index_by_object_id(collection: Any) -> None:
    """Let mongomock find a document by ``{"_id": ...}`` without scanning the collection.

    Every mongomock read and write selects documents through ``_iter_documents``, a scan; a
    conditional update of one job (cancel, producers) selects by ``_id`` three times over, so
    on a large collection it cost three scans. MongoDB answers these from its ``_id`` index.
    """
    scan = collection._iter_documents
    if getattr(scan, "by_object_id", False):
        return

    def iter_documents(filter: Any) -> Any:
        wanted = filter.get("_id") if isinstance(filter, dict) and len(filter) == 1 else None
        if isinstance(wanted, ObjectId):
            found = by_object_id(collection, wanted)
            return iter(() if found is None else (found,))
        return scan(filter)

    iter_documents.by_object_id = True  # type: ignore[attr-defined]
    collection._iter_documents = iter_documents
