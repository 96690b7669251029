"""The job store: connection, queries, atomic conditional updates, database errors -> ours.

The only module (with :mod:`.model`) that imports MongoEngine or pymongo. Every call takes the
time the caller still has (``timeout`` seconds) and runs under it; queries also carry the
server-side ``maxTimeMS`` limit. Database failures become ``ERROR_DB_UNAVAILABLE`` or
``ERROR_REQUEST_TIMEOUT``; nothing else leaks from the driver.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import mongoengine
import mongomock
import pymongo
from bson import ObjectId
from mongoengine.connection import get_db
from mongomock.filtering import filter_applies
from pymongo import ReturnDocument
from pymongo.errors import (
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from spaceone_job.errors import ServiceError
from spaceone_job.store.model import Job

LOG = logging.getLogger(__name__)
Document = dict[str, Any]
# Refusals that are the server's configuration, not the query's: Unauthorized, AuthenticationFailed.
_SERVER_SIDE_CODES = frozenset({13, 18})
EMBEDDED_DESCRIPTION = "embedded, in-memory, development only"


class DuplicateJobId(Exception):
    """An insert met a ``job_id`` that is already stored."""


def _db_unavailable() -> ServiceError:
    return ServiceError("ERROR_DB_UNAVAILABLE", "The database is unreachable; try again later.")


def _request_timeout() -> ServiceError:
    return ServiceError("ERROR_REQUEST_TIMEOUT", "The query ran out of time.")


class JobStore:
    """Jobs in one MongoDB collection."""

    embedded = False

    def __init__(
        self,
        collection: Any,
        description: str,
        *,
        reach: Callable[[float], None] | None = None,
        db_timeout_s: float = 5.0,
    ) -> None:
        self._collection = collection
        self.description = description
        self._reach = reach
        self._db_timeout_s = db_timeout_s

    @contextlib.contextmanager
    def _call(self, timeout: float | None) -> Iterator[None]:
        try:
            if self._reach is not None:
                # Finding a server may take the database timeout at most, even when the query
                # itself may take longer (pymongo's timeout would otherwise govern both).
                bound = self._db_timeout_s if timeout is None else min(timeout, self._db_timeout_s)
                self._reach(bound)
            with pymongo.timeout(timeout):
                yield
        except ServerSelectionTimeoutError as exc:
            raise _db_unavailable() from exc
        except ExecutionTimeout as exc:
            raise _request_timeout() from exc
        except ConnectionFailure as exc:
            raise (_request_timeout() if exc.timeout else _db_unavailable()) from exc
        except DuplicateKeyError as exc:
            raise DuplicateJobId(str(exc.details or exc)) from exc
        except PyMongoError as exc:
            if getattr(exc, "timeout", False):
                raise _request_timeout() from exc
            raise

    def ensure_indexes(self) -> None:
        """Create the model's indexes (unique ``job_id`` and the domain-led compounds)."""
        with self._call(None):
            self._collection.create_index("job_id", unique=True, name="job_id")
            for spec in Job._meta["index_specs"]:
                options = {key: value for key, value in spec.items() if key != "fields"}
                self._collection.create_index(spec["fields"], **options)

    def ping(self, timeout: float | None = None) -> bool:
        """Whether the database answers now."""
        try:
            with self._call(timeout):
                self._collection.find_one({}, {"_id": 1})
        except ServiceError:
            return False
        return True

    def insert(self, documents: Sequence[Document], timeout: float | None = None) -> None:
        """Insert documents; a ``job_id`` already stored raises :class:`DuplicateJobId`."""
        if not documents:
            return
        with self._call(timeout):
            self._collection.insert_many(list(documents), ordered=True)

    def find_one(
        self,
        filter: Document,
        projection: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Document | None:
        """The first document matching ``filter``, or None."""
        with self._call(timeout):
            doc: Document | None = self._collection.find_one(filter, _projection(projection))
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
        with self._call(timeout):
            cursor = self._collection.find(
                filter,
                _projection(projection),
                sort=list(sort) or None,
                skip=skip,
                limit=limit,
                max_time_ms=_ms(timeout),
            )
            return list(cursor)

    def count(self, filter: Document, *, timeout: float) -> int:
        """How many documents match ``filter``."""
        with self._call(timeout):
            return int(self._collection.count_documents(filter, maxTimeMS=_ms(timeout)))

    def aggregate(self, pipeline: Sequence[Document], *, timeout: float) -> list[Document]:
        """Run an aggregation pipeline in the database.

        The pipeline is built from a caller's stat query; when the stored values do not fit it
        (``$size`` of a non-array, say) the database refuses it, and that is the caller's error.
        """
        with self._call(timeout):
            try:
                rows = self._collection.aggregate(list(pipeline), maxTimeMS=_ms(timeout))
                return [_without_object_ids(row) for row in rows]
            except OperationFailure as exc:
                if exc.code in _SERVER_SIDE_CODES:
                    raise
                LOG.info("aggregate refused by the database: %s", exc)
                raise ServiceError(
                    "ERROR_INVALID_PARAMETER",
                    "The stored values do not fit this query.",
                    reason=(exc.details or {}).get("errmsg") or str(exc),
                ) from exc

    def update_one(
        self,
        filter: Document,
        changes: Document,
        projection: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Document | None:
        """Apply ``changes`` (an update document) to one match, atomically; the new document."""
        with self._call(timeout):
            doc: Document | None = self._collection.find_one_and_update(
                filter,
                changes,
                projection=_projection(projection),
                return_document=ReturnDocument.AFTER,
            )
            return doc

    def update_many(self, filter: Document, changes: Document, timeout: float | None = None) -> int:
        """Apply ``changes`` to every match; how many changed."""
        with self._call(timeout):
            return int(self._collection.update_many(filter, changes).modified_count)

    def drop(self) -> None:
        """Remove every job (tests and development only)."""
        with self._call(None):
            self._collection.drop()


class EmbeddedJobStore(JobStore):
    """The in-process mongomock store (development and tests), made to behave like MongoDB.

    mongomock has no indexes: it scans every document for every query and checks uniqueness by
    scanning on every insert. A ``job_id`` map stands in for MongoDB's unique index: it keeps
    ``job_id`` unique, and a query that pins one ``job_id`` (get, cancel) looks at that one
    document, matched by mongomock's own filter code. mongomock also applies a conditional update
    as read-then-write; serialising writes makes it atomic, as a real server does.
    """

    embedded = True

    def __init__(self, collection: Any, description: str) -> None:
        super().__init__(collection, description)
        self._lock = threading.RLock()
        self._ids: dict[str, Any] = {}

    def ensure_indexes(self) -> None:
        """Nothing to create: mongomock's indexes only slow inserts; see the class doc."""

    def insert(self, documents: Sequence[Document], timeout: float | None = None) -> None:
        """Insert documents; a ``job_id`` already stored raises :class:`DuplicateJobId`."""
        with self._lock:
            batch = [doc["job_id"] for doc in documents]
            clash = next((j for j in batch if j in self._ids), None)
            if clash is None and len(set(batch)) != len(batch):
                clash = next(j for j in batch if batch.count(j) > 1)
            if clash is not None:
                raise DuplicateJobId(f"job_id {clash} is already stored")
            super().insert(documents, timeout)
            self._ids.update((doc["job_id"], doc["_id"]) for doc in documents)

    def _pinned(self, filter: Document) -> tuple[bool, Document | None]:
        """Whether ``filter`` pins one ``job_id``, and then the stored document if it matches."""
        job_id = _pinned_job_id(filter)
        if job_id is None:
            return False, None
        try:
            stored: Document = self._collection._store[self._ids[job_id]]
        except KeyError:
            return True, None
        return True, stored if filter_applies(filter, stored) else None

    def find_one(
        self,
        filter: Document,
        projection: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Document | None:
        """The first document matching ``filter``, or None."""
        if projection is None:
            pinned, found = self._pinned(filter)
            if pinned:
                return None if found is None else _without_id(found)
        return super().find_one(filter, projection, timeout)

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
            return super().update_one(filter, changes, projection, timeout)

    def update_many(self, filter: Document, changes: Document, timeout: float | None = None) -> int:
        """Apply ``changes`` to every match; how many changed."""
        with self._lock:
            return super().update_many(filter, changes, timeout)

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
        """Documents matching ``filter``, sorted and paged.

        mongomock copies every match and sorts with a slow BSON comparator before it pages. Here
        the matches (by mongomock's filter code) are sorted on scalar keys in BSON order without
        copying, and only the page is copied (projected by mongomock when asked); sort values that
        are not plain scalars take mongomock's own path.
        """
        matches = [doc for doc in self._collection._store.documents if filter_applies(filter, doc)]
        try:
            for path, direction in reversed(sort):
                matches.sort(key=_sort_key(path), reverse=direction < 0)
        except _NotScalar:
            return super().find(
                filter, projection=projection, sort=sort, skip=skip, limit=limit, timeout=timeout
            )
        page = matches[skip : skip + limit if limit else None]
        if not projection:
            return [_without_id(doc) for doc in page]
        ids = [doc["_id"] for doc in page]
        shown = {**projection, "_id": 1}
        found = {doc["_id"]: doc for doc in self._collection.find({"_id": {"$in": ids}}, shown)}
        return [_without_id(found[i]) for i in ids]

    def drop(self) -> None:
        """Remove every job."""
        with self._lock:
            super().drop()
            self._ids.clear()


class _NotScalar(Exception):
    """A sort value this store cannot order by itself (an array or a document)."""


# BSON's order across types: null (and missing) < numbers < strings < ObjectId < bool < dates.
def _bson_rank(value: Any) -> tuple[int, Any]:
    if value is None:
        return (1, 0)
    if isinstance(value, bool):
        return (8, value)
    if isinstance(value, int | float):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    if isinstance(value, ObjectId):
        return (7, value.binary)
    if isinstance(value, datetime):
        return (9, value)
    raise _NotScalar


def _sort_key(path: str) -> Callable[[Document], tuple[int, Any]]:
    return lambda doc: _bson_rank(_value_at(doc, path))


def _value_at(doc: Document, path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if isinstance(value, list):
            raise _NotScalar
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _pinned_job_id(filter: Document) -> str | None:
    """The ``job_id`` a filter requires: a top-level conjunct that says ``job_id == x``."""
    for clause in (filter, *filter.get("$and", ())):
        value = clause.get("job_id")
        if isinstance(value, str):
            return value
    return None


def _without_id(stored: Document) -> Document:
    return {key: _copied(value) for key, value in stored.items() if key != "_id"}


def _without_object_ids(value: Any) -> Any:
    """A result row with ObjectIds as strings: driver types stay in the store."""
    if isinstance(value, dict):
        return {key: _without_object_ids(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_object_ids(item) for item in value]
    return str(value) if isinstance(value, ObjectId) else value


def _copied(value: Any) -> Any:
    # Stored documents are dicts, lists and immutable scalars: copying the containers is enough,
    # and several times faster than copy.deepcopy.
    if isinstance(value, dict):
        return {key: _copied(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copied(item) for item in value]
    return value


def _ms(timeout: float) -> int:
    return max(1, int(timeout * 1000))


def _projection(projection: Mapping[str, Any] | None) -> dict[str, Any]:
    # The ObjectId is never rendered; leaving it out saves decoding it on every row.
    return {"_id": 0, **(projection or {})}


def connect(
    uri: str, database: str, *, db_timeout_ms: int = 5000, query_timeout_ms: int = 10000
) -> JobStore:
    """A store on MongoDB at ``uri``, or the embedded in-process store when ``uri`` is empty.

    The driver's 30 s server-selection default is replaced by ``db_timeout_ms`` so that calls fail
    fast, and the server starts even while the database is down. Calls carry their own time limit;
    the socket timeout only backs up the ones that do not (index creation at start).
    """
    alias = f"spaceone-job-{uuid.uuid4().hex[:8]}"
    if uri:
        mongoengine.connect(
            alias=alias,
            db=database,
            host=uri,
            serverSelectionTimeoutMS=db_timeout_ms,
            connectTimeoutMS=db_timeout_ms,
            socketTimeoutMS=query_timeout_ms + db_timeout_ms,
            uuidRepresentation="standard",
        )
        description = f"MongoDB {_redact(uri)} database {database}"
        client = get_db(alias).client

        def reach(timeout: float) -> None:
            if not client.topology_description.has_writable_server():
                with pymongo.timeout(timeout):
                    client.admin.command("ping")

    else:
        mongoengine.connect(
            alias=alias,
            db=database,
            host="mongodb://localhost",
            mongo_client_class=mongomock.MongoClient,
            uuidRepresentation="standard",
        )
        description = EMBEDDED_DESCRIPTION
    collection = get_db(alias)[Job._meta["collection"]]
    if not uri:
        return EmbeddedJobStore(collection, description)
    return JobStore(collection, description, reach=reach, db_timeout_s=db_timeout_ms / 1000)


def _redact(uri: str) -> str:
    """The URI without its password."""
    scheme, sep, rest = uri.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return uri
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"
