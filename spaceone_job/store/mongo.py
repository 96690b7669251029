"""The MongoDB store: queries, atomic conditional updates, database errors -> ours.

With :mod:`.model` and :mod:`.connect`, the only module that imports MongoEngine or pymongo for
MongoDB (the embedded store runs this one's driver calls over mongomock). Every call takes the
time the caller still has (``timeout`` seconds) and runs under it; queries also carry the
server-side ``maxTimeMS`` limit. Database failures become the store's own :class:`Unreachable`
or :class:`OutOfTime`; nothing else leaks from the driver.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pymongo
from pymongo import ReturnDocument
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from spaceone_job.kinds import JOB, DocumentKind
from spaceone_job.store.documents import (
    ChangesUnavailable,
    Document,
    DuplicateJobId,
    OutOfTime,
    QueryRefused,
    StoreError,
    Unreachable,
    read_projection,
    without_internal,
    without_object_ids,
)

LOG = logging.getLogger(__name__)
# The TTL index of finished documents (jobs and tasks), when retention asks for one.
TTL_INDEX = "finished_ttl"
# Refusals that are the server's configuration, not the query's: Unauthorized, AuthenticationFailed.
_SERVER_SIDE_CODES = frozenset({13, 18})
DUPLICATE_KEY = 11000
# How long one wait on a change stream lasts at most when nothing changes.
CHANGE_WAIT_MS = 1000


class MongoStore:
    """The documents of one model (jobs, or job tasks) in their MongoDB collection."""

    in_memory = False

    def __init__(
        self,
        collection: Any,
        description: str,
        *,
        kind: DocumentKind = JOB,
        reach: Callable[[float], None] | None = None,
        db_timeout_s: float = 5.0,
    ) -> None:
        self._collection = collection
        self.description = description
        self.kind = kind
        # The unique id field (job_id, job_task_id).
        self.key = kind.key
        # The service's own fields, left out of reads that do not name them, and the others.
        self.internal = kind.internal
        self.fields = kind.shown
        self.indexes: tuple[dict[str, Any], ...] = tuple(kind.model._meta["index_specs"])
        self._reach = reach
        self._db_timeout_s = db_timeout_s
        # Called with the job_id of every document a conditional update changed (watchers).
        self.listeners: list[Callable[[str], None]] = []

    def sibling(self, kind: DocumentKind) -> MongoStore:
        """The store of another kind's collection in the same database (tasks beside jobs)."""
        return MongoStore(
            self._collection.database[kind.model._meta["collection"]],
            self.description,
            kind=kind,
            reach=self._reach,
            db_timeout_s=self._db_timeout_s,
        )

    @contextlib.contextmanager
    def _call(self, timeout: float | None) -> Iterator[None]:
        """Run one driver call within ``timeout`` and turn the driver's failures into ours.

        The time is kept by bounds MongoDB and the driver each enforce, not by pymongo's
        ``timeout()``, under which the driver would retry a failed read or write again and again
        until the time is gone, and then report a lost connection as a timeout: finding a server
        waits at most the database timeout (and the call's time), every query carries the
        call's time as ``maxTimeMS``, and a read or write that loses its connection is retried
        once (as the same retryable write: the server applies it at most once), then
        :class:`Unreachable`. The socket timeout backs up a server that accepts a query and
        never answers.
        """
        try:
            if self._reach is not None:
                bound = self._db_timeout_s if timeout is None else min(timeout, self._db_timeout_s)
                self._reach(bound)
            yield
        except ServerSelectionTimeoutError as exc:
            raise Unreachable() from exc
        except ExecutionTimeout as exc:
            raise OutOfTime() from exc
        except ConnectionFailure as exc:
            raise (OutOfTime() if exc.timeout else Unreachable()) from exc
        except DuplicateKeyError as exc:
            raise DuplicateJobId(str(exc.details or exc)) from exc
        except BulkWriteError as exc:  # insert_many reports a duplicate key among its errors
            codes = {error.get("code") for error in exc.details.get("writeErrors", ())}
            if DUPLICATE_KEY in codes:
                raise DuplicateJobId(str(exc.details)) from exc
            raise
        except OperationFailure as exc:
            if exc.code not in _SERVER_SIDE_CODES:
                raise
            # No caller can fix the service's own database user: the operator must.
            LOG.error("the database refuses the service's user (check its roles): %s", exc)
            raise Unreachable() from exc

    def ensure_indexes(self) -> list[str]:
        """Create the model's indexes that are missing; the names of those created.

        An index whose key pattern exists already counts as present, whatever its name (an
        upstream database has ``job_id_1`` and single-field indexes); a refusal (an options
        conflict, missing privileges) is logged and the start goes on.
        """
        with self._call(None):
            present = {_key_pattern(index["key"]) for index in self._collection.list_indexes()}
            created: list[str] = []
            for spec in self.indexes:
                keys = [(field, int(direction)) for field, direction in spec["fields"]]
                if _key_pattern(keys) in present:
                    continue
                options = {key: value for key, value in spec.items() if key != "fields"}
                try:
                    created.append(self._collection.create_index(keys, **options))
                except OperationFailure as exc:
                    LOG.warning("index %s not created: %s", keys, exc)
            return created

    def expire_finished(self, seconds: int) -> str:
        """Keep the TTL index :data:`TTL_INDEX` on ``finished_at`` expiring each document
        ``seconds`` after it finished (one whose ``finished_at`` is null or missing never
        expires), created, changed in place (``collMod``) or dropped (``seconds`` 0) as needed;
        what was done ("" for nothing). A refusal is logged and the start goes on."""
        with self._call(None):
            present = self._collection.index_information().get(TTL_INDEX)
            try:
                if not seconds:
                    if present is None:
                        return ""
                    self._collection.drop_index(TTL_INDEX)
                    return "dropped"
                if present is None:
                    self._collection.create_index(
                        [("finished_at", 1)], name=TTL_INDEX, expireAfterSeconds=seconds
                    )
                    return "created"
                if present.get("expireAfterSeconds") == seconds:
                    return ""
                self._collection.database.command(
                    {
                        "collMod": self._collection.name,
                        "index": {"name": TTL_INDEX, "expireAfterSeconds": seconds},
                    }
                )
                return "changed"
            except OperationFailure as exc:
                LOG.warning("%s of %s not kept: %s", TTL_INDEX, self._collection.name, exc)
                return ""

    def ping(self, timeout: float | None = None) -> bool:
        """Whether the database answers now."""
        try:
            # Under pymongo's timeout: a server that accepts and never answers is down too.
            with self._call(timeout), pymongo.timeout(timeout):
                self._collection.find_one({}, {"_id": 1})
        except StoreError:
            return False
        return True

    def insert(self, documents: Sequence[Document], timeout: float | None = None) -> None:
        """Insert documents; a ``job_id`` already stored raises :class:`DuplicateJobId`."""
        if not documents:
            return
        with self._call(timeout):
            self._collection.insert_many(list(documents), ordered=True)
        self._tell(documents)

    def find_one(
        self,
        filter: Document,
        projection: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Document | None:
        """The first document matching ``filter``, or None."""
        shown = read_projection(projection, self.internal)
        limit = None if timeout is None else _ms(timeout)
        with self._call(timeout):
            doc: Document | None = self._collection.find_one(filter, shown, max_time_ms=limit)
            return doc

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
        """Documents matching ``filter``, sorted and paged in the database."""
        with self._call(timeout), self._refusals():
            cursor = self._collection.find(
                filter,
                read_projection(projection, self.internal),
                sort=list(sort) or None,
                skip=skip,
                limit=limit,
                max_time_ms=_ms(timeout),
            )
            return list(cursor)

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
        """One page of the documents matching ``filter`` (none when ``count_only`` or when the
        page starts past the last match) and how many match in all."""
        total = self.count(filter, timeout=timeout)
        if count_only or skip >= total:
            return [], total
        docs = self.find(
            filter, projection=projection, sort=sort, skip=skip, limit=limit, timeout=timeout
        )
        return docs, total

    def count(self, filter: Document, *, timeout: float) -> int:
        """How many documents match ``filter``."""
        with self._call(timeout), self._refusals():
            return int(self._collection.count_documents(filter, maxTimeMS=_ms(timeout)))

    @contextlib.contextmanager
    def _refusals(self) -> Iterator[None]:
        """A database's refusal of a query is :class:`QueryRefused`.

        Queries are built from callers' requests; when the stored values do not fit one
        (``$size`` of a non-array, say) the database refuses it, and that is the caller's error.
        """
        try:
            yield
        except OperationFailure as exc:
            # ExecutionTimeout is an OperationFailure too: time, not the query, ran out.
            if exc.code in _SERVER_SIDE_CODES or exc.timeout:
                raise
            reason = (exc.details or {}).get("errmsg") or str(exc)
            LOG.info("query refused by the database: %s", reason)
            raise QueryRefused(reason) from exc

    def aggregate(self, pipeline: Sequence[Document], *, timeout: float) -> list[Document]:
        """Run an aggregation pipeline in the database."""
        with self._call(timeout), self._refusals():
            rows = self._collection.aggregate(
                without_internal(pipeline, self.internal), maxTimeMS=_ms(timeout)
            )
            return [without_object_ids(row) for row in rows]

    def page_pipeline(
        self,
        rows: Sequence[Document],
        page: Sequence[Document],
        *,
        skip: int,
        count_only: bool,
        timeout: float,
    ) -> tuple[list[Document], int]:
        """How many rows the pipeline ``rows`` gives, and the ``page`` stages (sort, skip,
        limit, project) applied to them: two pipelines here (a count, then the page, unless it
        starts past the count)."""
        counted = self.aggregate([*rows, {"$count": "total_count"}], timeout=timeout)
        total = int(counted[0]["total_count"]) if counted else 0
        if count_only or skip >= total:
            return [], total
        return self.aggregate([*rows, *page], timeout=timeout), total

    def update_one(
        self,
        filter: Document,
        changes: Document,
        projection: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Document | None:
        """Apply ``changes`` (an update document) to one match, atomically; the new document."""
        # The answer keeps its _id (one ObjectId, then dropped): mongomock finds an updated
        # document whose _id is projected away again by the update's filter, which the update
        # may no longer match.
        shown = {k: v for k, v in read_projection(projection, self.internal).items() if k != "_id"}
        with self._call(timeout):
            doc: Document | None = self._collection.find_one_and_update(
                filter,
                changes,
                projection=shown or None,
                return_document=ReturnDocument.AFTER,
                **_max_time(timeout),
            )
        if doc is None:
            return None
        doc.pop("_id", None)
        self._tell([doc])
        return doc

    def _tell(self, documents: Sequence[Document]) -> None:
        """Tell the listeners which jobs the written documents are (or belong to)."""
        for doc in documents:
            if isinstance(doc.get("job_id"), str):
                for listener in self.listeners:
                    listener(doc["job_id"])

    def changed_ids(
        self, opened: Callable[[], None] = lambda: None
    ) -> Iterator[tuple[str, str] | None]:
        """The ``job_id`` of each document as it changes, with the change's resume token, from
        a change stream (any replica's writes; ``opened`` is called once it is open), and None
        after each wait of at most :data:`CHANGE_WAIT_MS` without a change (so that a reader
        can stop); :class:`ChangesUnavailable` when the deployment has none."""
        watched = [{"$match": {"operationType": {"$in": ["insert", "update", "replace"]}}}]
        try:
            with self._stream(watched) as stream:
                opened()
                while stream.alive:
                    change = stream.try_next()
                    if change is None:
                        yield None
                        continue
                    job_id = (change.get("fullDocument") or {}).get("job_id")
                    if isinstance(job_id, str):
                        yield job_id, str((change.get("_id") or {}).get("_data", ""))
        except (OperationFailure, NotImplementedError) as exc:
            raise ChangesUnavailable(str(exc)) from exc
        except PyMongoError as exc:  # the database went away: the feed ends, watchers re-read
            raise Unreachable() from exc

    def _stream(self, pipeline: Sequence[Document]) -> Any:
        """A change stream of the collection, opened (the database may refuse it)."""
        try:
            return self._collection.watch(
                pipeline, full_document="updateLookup", max_await_time_ms=CHANGE_WAIT_MS
            )
        except TypeError as exc:  # a mongomock collection, which has no watch at all
            raise ChangesUnavailable(str(exc)) from exc

    def update_many(self, filter: Document, changes: Document, timeout: float | None = None) -> int:
        """Apply ``changes`` to every match; how many changed."""
        with self._call(timeout):
            return int(self._collection.update_many(filter, changes).modified_count)

    def delete_many(self, filter: Document, timeout: float | None = None) -> int:
        """Remove every match; how many were removed."""
        with self._call(timeout):
            return int(self._collection.delete_many(filter).deleted_count)

    def close(self) -> None:
        """Close the client's connections and end its sessions (its siblings share them)."""
        self._collection.database.client.close()

    def drop(self) -> None:
        """Remove every job (tests and development only)."""
        with self._call(None):
            self._collection.drop()


def _key_pattern(keys: Any) -> tuple[tuple[str, Any], ...]:
    items = keys.items() if isinstance(keys, Mapping) else keys
    return tuple(
        (field, int(direction) if isinstance(direction, int | float) else direction)
        for field, direction in items
    )


def _ms(timeout: float) -> int:
    return max(1, int(timeout * 1000))


def _max_time(timeout: float | None) -> dict[str, int]:
    """The ``maxTimeMS`` option of a command, when the call has a time limit."""
    return {} if timeout is None else {"maxTimeMS": _ms(timeout)}
