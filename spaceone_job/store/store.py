"""The job store: connection, queries, atomic conditional updates, database errors -> ours.

The only module (with :mod:`.model`) that imports MongoEngine or pymongo. Every call takes the
time the caller still has (``timeout`` seconds) and runs under it; queries also carry the
server-side ``maxTimeMS`` limit. Database failures become ``ERROR_DB_UNAVAILABLE`` or
``ERROR_REQUEST_TIMEOUT``; nothing else leaks from the driver.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import mongoengine
import mongomock
import pymongo
from bson import ObjectId
from mongoengine.connection import get_db
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

from spaceone_job.errors import ServiceError, request_timeout
from spaceone_job.store.model import INTERNAL, KEYS, Job, Model

LOG = logging.getLogger(__name__)
Document = dict[str, Any]
# Refusals that are the server's configuration, not the query's: Unauthorized, AuthenticationFailed.
_SERVER_SIDE_CODES = frozenset({13, 18})
EMBEDDED_DESCRIPTION = "embedded, in-memory, development only"
DUPLICATE_KEY = 11000


class DuplicateJobId(Exception):
    """An insert met a unique value (``job_id``, ``job_task_id``, a create's request key) that
    is already stored."""


class ChangesUnavailable(Exception):
    """The deployment has no change streams (a standalone server, the embedded store)."""


class QueryRefused(Exception):
    """The database refused a query built from a caller's request (the stored values do not
    fit it); ``reason`` is the database's own text, for the log, and ``stage`` the index of the
    pipeline stage refused, when the store knows it."""

    def __init__(self, reason: str, stage: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.stage = stage


def _db_unavailable() -> ServiceError:
    return ServiceError("ERROR_DB_UNAVAILABLE", "The database is unreachable; try again later.")


class JobStore:
    """The documents of one model (jobs, or job tasks) in their MongoDB collection."""

    embedded = False

    def __init__(
        self,
        collection: Any,
        description: str,
        *,
        model: Model = Job,
        reach: Callable[[float], None] | None = None,
        db_timeout_s: float = 5.0,
    ) -> None:
        self._collection = collection
        self.description = description
        self.model = model
        # The unique id field (job_id, job_task_id).
        self.key = KEYS[model]
        # The service's own fields, left out of reads that do not name them, and the others.
        self.internal = INTERNAL[model]
        self.fields = tuple(name for name in model._fields if name not in ("id", *self.internal))
        self.indexes: tuple[dict[str, Any], ...] = tuple(model._meta["index_specs"])
        self._reach = reach
        self._db_timeout_s = db_timeout_s
        # Called with the job_id of every document a conditional update changed (watchers).
        self.listeners: list[Callable[[str], None]] = []

    def sibling(self, model: Model) -> JobStore:
        """The store of another model's collection in the same database (tasks beside jobs)."""
        return JobStore(
            self._collection.database[model._meta["collection"]],
            self.description,
            model=model,
            reach=self._reach,
            db_timeout_s=self._db_timeout_s,
        )

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
            raise request_timeout() from exc
        except ConnectionFailure as exc:
            raise (request_timeout() if exc.timeout else _db_unavailable()) from exc
        except DuplicateKeyError as exc:
            raise DuplicateJobId(str(exc.details or exc)) from exc
        except BulkWriteError as exc:  # insert_many reports a duplicate key among its errors
            codes = {error.get("code") for error in exc.details.get("writeErrors", ())}
            if DUPLICATE_KEY in codes:
                raise DuplicateJobId(str(exc.details)) from exc
            raise
        except PyMongoError as exc:
            if getattr(exc, "timeout", False):
                raise request_timeout() from exc
            raise

    def _projection(self, projection: Mapping[str, Any] | None) -> dict[str, Any]:
        # The ObjectId is never rendered; leaving it out saves decoding it on every row. So are
        # the service's own fields, unless the projection names what it wants.
        if projection and any(value for value in projection.values()):
            return {"_id": 0, **projection}
        return {"_id": 0, **dict.fromkeys(self.internal, 0), **(projection or {})}

    def _without_internal(self, pipeline: Sequence[Document]) -> list[Document]:
        """``pipeline`` with the service's own fields dropped after its leading ``$match``
        stages (where an index serves them), so that rows never carry them."""
        stages = list(pipeline)
        lead = next((i for i, stage in enumerate(stages) if "$match" not in stage), len(stages))
        return [*stages[:lead], {"$project": dict.fromkeys(self.internal, 0)}, *stages[lead:]]

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
            doc: Document | None = self._collection.find_one(filter, self._projection(projection))
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
        with self._call(timeout), self.refusals():
            cursor = self._collection.find(
                filter,
                self._projection(projection),
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
        with self._call(timeout), self.refusals():
            return int(self._collection.count_documents(filter, maxTimeMS=_ms(timeout)))

    @contextlib.contextmanager
    def refusals(self) -> Iterator[None]:
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
        with self._call(timeout), self.refusals():
            rows = self._collection.aggregate(
                self._without_internal(pipeline), maxTimeMS=_ms(timeout)
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
        with self._call(timeout):
            doc: Document | None = self._collection.find_one_and_update(
                filter,
                changes,
                projection=self._projection(projection),
                return_document=ReturnDocument.AFTER,
            )
        if doc is not None and isinstance(doc.get("job_id"), str):
            for listener in self.listeners:
                listener(doc["job_id"])
        return doc

    def changed_ids(self, opened: Callable[[], None] = lambda: None) -> Iterator[str]:
        """The ``job_id`` of each document as it changes, from a change stream (any replica's
        writes; ``opened`` is called once it is open); :class:`ChangesUnavailable` when the
        deployment has none."""
        watched = [{"$match": {"operationType": {"$in": ["insert", "update", "replace"]}}}]
        try:
            with self._collection.watch(watched, full_document="updateLookup") as stream:
                opened()
                for change in stream:
                    job_id = (change.get("fullDocument") or {}).get("job_id")
                    if isinstance(job_id, str):
                        yield job_id
        except (OperationFailure, NotImplementedError) as exc:
            raise ChangesUnavailable(str(exc)) from exc
        except PyMongoError as exc:  # the database went away: the feed ends, watchers re-read
            raise _db_unavailable() from exc

    def update_many(self, filter: Document, changes: Document, timeout: float | None = None) -> int:
        """Apply ``changes`` to every match; how many changed."""
        with self._call(timeout):
            return int(self._collection.update_many(filter, changes).modified_count)

    def delete_many(self, filter: Document, timeout: float | None = None) -> int:
        """Remove every match; how many were removed."""
        with self._call(timeout):
            return int(self._collection.delete_many(filter).deleted_count)

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


def without_id(stored: Document, hidden: Sequence[str] = ()) -> Document:
    """A copy of a stored document without its ObjectId (nor the fields ``hidden``)."""
    return {
        key: copied(value) if isinstance(value, _CONTAINERS) else value
        for key, value in stored.items()
        if key != "_id" and key not in hidden
    }


def without_object_ids(value: Any) -> Any:
    """A result row with ObjectIds as strings: driver types stay in the store."""
    if isinstance(value, dict):
        return {key: without_object_ids(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_object_ids(item) for item in value]
    return str(value) if isinstance(value, ObjectId) else value


# Stored documents are dicts, lists and immutable scalars: copying the containers is enough,
# and several times faster than copy.deepcopy.
_CONTAINERS = (dict, list)


def copied(value: Any) -> Any:
    """A copy of a stored value."""
    if isinstance(value, dict):
        return {
            key: copied(item) if isinstance(item, _CONTAINERS) else item
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [copied(item) if isinstance(item, _CONTAINERS) else item for item in value]
    return value


def _ms(timeout: float) -> int:
    return max(1, int(timeout * 1000))


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
        from spaceone_job.store.embedded import EmbeddedJobStore  # it builds on JobStore

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
