"""The embedded in-process store (mongomock), made to behave like MongoDB and to keep time limits.

mongomock runs every query in Python, in the calling thread, and ignores ``maxTimeMS``. Three
things keep a hostile query from stalling the process here, as ``maxTimeMS`` and per-stage memory
limits do on a real server:

- Callers' patterns (``$regex``) are evaluated by the ``regex`` module with the call's remaining
  time as its timeout and without holding the interpreter lock, so no pattern blocks other
  threads and none runs past the deadline.
- Scans and pipelines run through :func:`spaceone_job.cpu.run`: one at a time, each waiting
  for its turn within its own time, and interrupted by a watchdog at its deadline (mongomock is
  pure Python, so the interruption lands at the next bytecode).
- ``$unwind`` is run here, sharing rather than deep-copying the rest of each row, and refuses
  to produce more than :data:`~spaceone_job.store.stages.MAX_ROWS` rows.

The filters and pipelines are the same standard MongoDB documents a real server receives; only
how they are evaluated differs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import regex
from bson import Regex
from pymongo.errors import OperationFailure

from spaceone_job import cpu
from spaceone_job.kinds import JOB, DocumentKind
from spaceone_job.store import stages
from spaceone_job.store.documents import (
    ChangesUnavailable,
    Document,
    DuplicateJobId,
    QueryRefused,
    copied,
    without_id,
    without_object_ids,
)
from spaceone_job.store.mongo import MongoStore
from spaceone_job.store.mongomock_internals import (
    PIPELINE_HANDLERS,
    by_object_id,
    filter_applies,
    index_by_object_id,
    stored_documents,
)

T = TypeVar("T")
LOG = logging.getLogger(__name__)
_REFUSALS = (
    OperationFailure,
    TypeError,
    ValueError,
    AttributeError,
    ArithmeticError,
    NotImplementedError,
)
_FLAGS = {"i": regex.IGNORECASE, "m": regex.MULTILINE, "s": regex.DOTALL, "x": regex.VERBOSE}


class _BoundedPattern(Regex[str]):
    """A ``$regex`` that mongomock evaluates (through ``try_compile``) with the ``regex`` module,
    under the call's deadline and without the interpreter lock."""

    def __init__(self, pattern: str, options: str, deadline: float) -> None:
        flags = 0
        for option in options:
            flags |= _FLAGS.get(option, 0)
        super().__init__(pattern, flags)
        self._compiled = regex.compile(pattern, flags)
        self._deadline = deadline

    def try_compile(self) -> _BoundedPattern:  # type: ignore[override]
        """What mongomock asks of a BSON regex: something with ``search``."""
        return self

    def search(self, text: str) -> Any:
        """The first match in ``text``; :class:`_Interrupted` once the deadline has passed."""
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise cpu.Interrupted
        try:
            return self._compiled.search(text, timeout=left, concurrent=True)
        except TimeoutError:
            raise cpu.Interrupted from None


_REGEX_KEYS = ("$regex", "$options")


def bounded(spec: Any, deadline: float) -> Any:
    """A filter with every ``{"$regex", "$options"}`` made a :class:`_BoundedPattern`."""
    if isinstance(spec, dict):
        pattern = spec.get("$regex")
        if isinstance(pattern, str):
            rest = {k: bounded(v, deadline) for k, v in spec.items() if k not in _REGEX_KEYS}
            return {"$regex": _BoundedPattern(pattern, spec.get("$options", ""), deadline), **rest}
        return {key: bounded(value, deadline) for key, value in spec.items()}
    if isinstance(spec, list):
        return [bounded(item, deadline) for item in spec]
    return spec


class EmbeddedStore:
    """The in-process mongomock store (development and tests), made to behave like MongoDB.

    Inserts, updates and the few reads mongomock serves well go through the driver calls of
    :class:`MongoStore`, made over the mongomock collection; scans, paging and pipelines run here
    (see the module doc). mongomock has no indexes: it scans every document for every query and
    checks uniqueness by scanning on every insert. An id map (``job_id``, ``job_task_id``) stands
    in for MongoDB's unique index: it keeps ids unique, and a query that pins one id (get,
    cancel) looks at that one document, matched by mongomock's own filter code. mongomock also
    applies a conditional update as read-then-write; serialising writes makes it atomic, as a
    real server does.
    """

    in_memory = True

    def __init__(self, collection: Any, description: str, *, kind: DocumentKind = JOB) -> None:
        self._collection = collection
        self._driver = MongoStore(collection, description, kind=kind)
        self.description = description
        self.kind = kind
        self.key, self.internal, self.fields = (
            self._driver.key,
            self._driver.internal,
            self._driver.fields,
        )
        self.listeners = self._driver.listeners
        self._lock = threading.RLock()
        # MongoDB's unique indexes: each unique field's stored values -> the document's _id. As
        # a sparse index does, a document without the field is not in it.
        self._unique: dict[str, dict[Any, Any]] = {
            spec["fields"][0][0]: {} for spec in self._driver.indexes if spec.get("unique")
        }
        index_by_object_id(collection)

    def sibling(self, kind: DocumentKind) -> EmbeddedStore:
        """The store of another kind's collection in the same in-memory database."""
        return EmbeddedStore(
            self._collection.database[kind.model._meta["collection"]], self.description, kind=kind
        )

    def ensure_indexes(self) -> list[str]:
        """Nothing to create: mongomock's indexes only slow inserts; see the class doc."""
        return []

    def expire_finished(self, seconds: int) -> str:
        """Nothing: mongomock expires nothing; the sweeper applies retention here."""
        return ""

    def ping(self, timeout: float | None = None) -> bool:
        """Always: the documents are in this process."""
        return True

    def changed_ids(
        self, opened: Callable[[], None] = lambda: None
    ) -> Iterator[tuple[str, str] | None]:
        """None here: one process holds the data, and its writes notify watchers directly."""
        raise ChangesUnavailable("the embedded store notifies watchers in-process")

    def insert(self, documents: Sequence[Document], timeout: float | None = None) -> None:
        """Insert documents; a unique value already stored raises :class:`DuplicateJobId`,
        and then nothing is inserted."""
        with self._lock:
            for field, stored in self._unique.items():
                batch = [value for doc in documents if (value := _value(doc, field)) is not None]
                clash = next((value for value in batch if value in stored), None)
                if clash is None and len(set(batch)) != len(batch):
                    clash = next(value for value in batch if batch.count(value) > 1)
                if clash is not None:
                    raise DuplicateJobId(f"{field} {clash} is already stored")
            self._driver.insert(documents, timeout)
            for field, stored in self._unique.items():
                stored.update(
                    (value, doc["_id"])
                    for doc in documents
                    if (value := _value(doc, field)) is not None
                )

    def _stored(self) -> list[Document]:
        # A snapshot: mongomock holds a reader lock while its generator is open.
        with self._lock:
            return list(stored_documents(self._collection))

    def _matches(self, filter: Document, deadline: float) -> Iterator[Document]:
        spec = bounded(filter, deadline)
        return (doc for doc in self._stored() if filter_applies(spec, doc))

    def _pinned(self, filter: Document) -> tuple[bool, Document | None]:
        """Whether ``filter`` pins one unique value, and then the stored document if it
        matches."""
        pinned = next(
            (
                (values, value)
                for field, values in self._unique.items()
                if (value := _pinned_id(filter, field)) is not None
            ),
            None,
        )
        if pinned is None:
            return False, None
        values, value = pinned
        stored = by_object_id(self._collection, values.get(value))
        if stored is None:
            return True, None
        matches = _equal_strings(filter, stored)
        if matches is None:
            matches = filter_applies(filter, stored)
        return True, stored if matches else None

    def find_one(
        self,
        filter: Document,
        projection: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Document | None:
        """The first document matching ``filter``, or None."""
        # Under the lock: mongomock changes a stored document in place, field by field.
        with self._lock:
            pinned, found = self._pinned(filter)
            if pinned and found is None:
                return None
            if found is not None and projection is None:
                return without_id(found, self.internal)
            if found is not None:
                filter = {"_id": found["_id"]}  # matched above; mongomock projects it
            return self._driver.find_one(filter, projection, timeout)

    def update_one(
        self,
        filter: Document,
        changes: Document,
        projection: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Document | None:
        """Apply ``changes`` to one match, atomically; the new document."""
        with self._lock:
            pinned, found = self._pinned(filter)
            if pinned and found is None:
                return None
            if found is not None:
                filter = {"_id": found["_id"]}  # matched above
            return self._driver.update_one(filter, changes, projection, timeout)

    def update_many(self, filter: Document, changes: Document, timeout: float | None = None) -> int:
        """Apply ``changes`` to every match; how many changed."""
        return self._each_match(
            filter, lambda match: self._driver.update_many(match, changes, timeout)
        )

    def delete_many(self, filter: Document, timeout: float | None = None) -> int:
        """Remove every match; how many were removed."""

        def delete(match: Document) -> int:
            stored = by_object_id(self._collection, match["_id"])
            for field, values in self._unique.items():
                values.pop(_value(stored or {}, field), None)
            return self._driver.delete_many(match, timeout)

        return self._each_match(filter, delete)

    def _each_match(self, filter: Document, apply: Callable[[Document], int]) -> int:
        """``apply({"_id": ...})`` to each document matching ``filter``; the sum of what it
        returned. As on MongoDB, each document changes atomically, the whole does not: the lock
        is held for one document at a time, never for the scan, so that a lookup never waits
        for one."""
        done = 0
        for match in [doc["_id"] for doc in self._stored() if filter_applies(filter, doc)]:
            with self._lock:
                stored = by_object_id(self._collection, match)
                if stored is not None and filter_applies(filter, stored):
                    done += apply({"_id": match})
        return done

    def count(self, filter: Document, *, timeout: float) -> int:
        """How many documents match ``filter``, within ``timeout``."""
        return cpu.run(timeout, lambda deadline: sum(1 for _ in self._matches(filter, deadline)))

    def find(
        self,
        filter: Document,
        *,
        projection: Mapping[str, Any] | None,
        sort: Sequence[tuple[str, int]],
        skip: int,
        limit: int,
        timeout: float,
    ) -> list[Document]:
        """Documents matching ``filter``, sorted and paged, within ``timeout``."""
        docs, _ = self.page(
            filter,
            projection=projection,
            sort=sort,
            skip=skip,
            limit=limit,
            count_only=False,
            timeout=timeout,
        )
        return docs

    def page(
        self,
        filter: Document,
        *,
        projection: Mapping[str, Any] | None,
        sort: Sequence[tuple[str, int]],
        skip: int,
        limit: int,
        count_only: bool,
        timeout: float,
    ) -> tuple[list[Document], int]:
        """One page of the documents matching ``filter`` and how many match, from one scan.

        mongomock copies every match and sorts with a slow BSON comparator before it pages. Here
        the matches are sorted on scalar keys in BSON order without copying, and only the page is
        copied (projected by mongomock when asked); sort values that are not plain scalars take
        mongomock's own path.
        """

        def work(deadline: float) -> tuple[list[Document], int]:
            matches = list(self._matches(filter, deadline))
            if count_only or skip >= len(matches):
                return [], len(matches)
            try:
                for path, direction in reversed(sort):
                    matches.sort(key=stages.sort_key(path), reverse=direction < 0)
            except stages.NotRanked:
                docs = self._driver.find(
                    bounded(filter, deadline),
                    projection=projection,
                    sort=sort,
                    skip=skip,
                    limit=limit,
                    timeout=max(deadline - time.monotonic(), 0.001),
                )
                return docs, len(matches)
            shown = matches[skip : skip + limit if limit else None]
            return self._shown(shown, projection), len(matches)

        return cpu.run(timeout, work)

    def _shown(self, page: list[Document], projection: Mapping[str, Any] | None) -> list[Document]:
        """Copies of ``page``, projected by mongomock when asked."""
        if not projection:
            with self._lock:  # see find_one
                return [without_id(doc, self.internal) for doc in page]
        ids = [doc["_id"] for doc in page]
        shown = {**projection, "_id": 1}
        found = {d["_id"]: d for d in self._collection.find({"_id": {"$in": ids}}, shown)}
        return [without_id(found[i]) for i in ids]

    def aggregate(self, pipeline: Sequence[Document], *, timeout: float) -> list[Document]:
        """Run an aggregation pipeline within ``timeout``; see :meth:`_through` for how."""
        return cpu.run(timeout, lambda deadline: self._finished(self._through(pipeline, deadline)))

    def page_pipeline(
        self,
        rows: Sequence[Document],
        page: Sequence[Document],
        *,
        skip: int,
        count_only: bool,
        timeout: float,
    ) -> tuple[list[Document], int]:
        """The count and the page of :meth:`MongoStore.page_pipeline`, from one pass of ``rows``."""

        def work(deadline: float) -> tuple[list[Document], int]:
            found = self._through(rows, deadline)
            if count_only or skip >= len(found):
                return [], len(found)
            return self._finished(self._through(page, deadline, found, len(rows))), len(found)

        return cpu.run(timeout, work)

    def _through(
        self,
        pipeline: Sequence[Document],
        deadline: float,
        rows: list[Document] | None = None,
        first: int = 0,
    ) -> list[Document]:
        """The rows out of ``pipeline`` (stage numbers counted from ``first``), from ``rows``
        (copies, the output of earlier stages) or from the stored documents.

        Leading ``$match`` stages read the stored documents in place; only the rows they let
        through are copied for the stages after them, one level deep (the stages here build new
        rows rather than change nested values; a dotted ``$addFields`` would, so then the rows
        are copied whole), under the lock (see find_one).
        """
        shared = rows is None
        if rows is None:
            rows = self._stored()
        copy = copied if any(_writes_nested(stage) for stage in pipeline) else dict
        for index, stage in enumerate(pipeline, first):
            if shared and "$match" not in stage:
                with self._lock:
                    rows = [copy(row) for row in rows]
                shared = False
            try:
                rows = self._stage(rows, stage, deadline)
            except _REFUSALS as exc:
                # Where MongoDB refuses values that do not fit an expression, mongomock
                # fails in Python; either way it is the caller's query against these values.
                LOG.info("stage %d refused by the embedded store: %r", index, exc)
                raise QueryRefused(f"{type(exc).__name__}: {exc}", stage=index) from exc
        return rows

    def _finished(self, rows: list[Document]) -> list[Document]:
        """Rows as a pipeline answers them: ObjectIds as strings, without the service's own
        fields (MongoDB's pipelines drop them after their leading matches)."""
        return [
            without_object_ids({k: v for k, v in row.items() if k not in self.internal})
            for row in rows
        ]

    def _stage(self, rows: list[Document], stage: Document, deadline: float) -> list[Document]:
        ((operator, options),) = stage.items()
        if operator == "$match":
            spec = bounded(options, deadline)
            return [row for row in rows if filter_applies(spec, row)]
        if operator in _OWN_STAGES:
            return _OWN_STAGES[operator](rows, options)
        if operator == "$project":
            return self._project(rows, options)
        handler = PIPELINE_HANDLERS[operator]
        return list(handler(rows, self._collection.database, options))

    def _project(self, rows: list[Document], options: Document) -> list[Document]:
        """``$project``, with the ``{"$sum": "$path"}`` fields evaluated here as MongoDB does
        (mongomock fails on null and scalars, and answers 0 for a wrapped array)."""
        sums = {
            name: spec["$sum"][1:].split(".")
            for name, spec in options.items()
            if isinstance(spec, dict) and isinstance(spec.get("$sum"), str) and len(spec) == 1
        }
        rest = {name: spec for name, spec in options.items() if name not in sums}
        if not sums or any(name != "_id" for name in rest):
            out = list(PIPELINE_HANDLERS["$project"](rows, self._collection.database, rest))
        else:  # only computed sums: mongomock would read what is left, {"_id": 0}, as exclusion
            keep_id = rest.get("_id", 1) != 0
            out = [{"_id": row["_id"]} if keep_id and "_id" in row else {} for row in rows]
        for row, projected in zip(rows, out, strict=True):
            for name, parts in sums.items():
                projected[name] = stages.mongo_sum(stages.value_at(row, parts))
        return out

    def drop(self) -> None:
        """Remove every job."""
        with self._lock:
            self._driver.drop()
            for values in self._unique.values():
                values.clear()


# Stages evaluated here rather than by mongomock (see stages.py for why).
_OWN_STAGES: dict[str, Callable[[list[Document], Any], list[Document]]] = {
    "$unwind": stages.unwind,
    "$group": stages.group,
}


def _writes_nested(stage: Document) -> bool:
    """Whether a stage sets a field inside a nested document (mongomock does that in place)."""
    ((operator, options),) = stage.items()
    return operator in ("$addFields", "$set") and any("." in name for name in options)


def _equal_strings(filter: Document, stored: Document) -> bool | None:
    """Whether ``stored`` matches a filter of top-level ``field == string`` clauses (a get's
    scope and id), read straight off the document; None for any other filter or stored value
    (lists, for one, match by element), which mongomock's own matching then decides."""
    clauses = filter["$and"] if len(filter) == 1 and "$and" in filter else (filter,)
    matches = True
    for clause in clauses:
        for name, wanted in clause.items():
            if not isinstance(wanted, str) or "." in name or name.startswith("$"):
                return None
            value = stored.get(name, _MISSING)
            if value is _MISSING:
                matches = False
            elif isinstance(value, str):
                matches = matches and value == wanted
            else:
                return None
    return matches


_MISSING = object()


def _value(doc: Document, path: str) -> Any:
    """The value at a dotted ``path`` of a document, or None."""
    return stages.value_at(doc, path.split("."))


def _pinned_id(filter: Document, key: str) -> str | None:
    """The id a filter requires: a top-level conjunct that says ``key == x``."""
    for clause in (filter, *filter.get("$and", ())):
        value = clause.get(key)
        if isinstance(value, str):
            return value
    return None
