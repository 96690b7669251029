"""The store boundary: what the service, the lifecycle and the producers ask of a store.

Two stores answer it, siblings that share no implementation by inheritance:
:class:`~spaceone_job.store.mongo.MongoStore` (MongoDB through pymongo) and
:class:`~spaceone_job.store.embedded.EmbeddedStore` (mongomock, in this process). Every call
that may wait takes the time its caller still has (``timeout`` seconds) and ends within it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from spaceone_job.kinds import DocumentKind
from spaceone_job.store.documents import Document


class Store(Protocol):
    """The documents of one kind (jobs, or job tasks) in their collection."""

    description: str
    kind: DocumentKind
    # The unique id field (job_id, job_task_id).
    key: str
    # The service's own fields, left out of reads that do not name them, and the others.
    internal: tuple[str, ...]
    fields: tuple[str, ...]
    # Called with the job_id of every document a conditional update changed (watchers).
    listeners: list[Callable[[str], None]]

    @property
    def in_memory(self) -> bool:
        """Whether answers come from this process's memory: scans then run on this process's
        CPU (and are admitted as CPU work), and this process's writes are all the writes
        (watchers need no change stream and no polling)."""
        ...

    def sibling(self, kind: DocumentKind) -> Store:
        """The store of another kind's collection in the same database (tasks beside jobs)."""
        ...

    def ensure_indexes(self) -> list[str]:
        """Create the model's indexes that are missing; the names of those created."""
        ...

    def expire_finished(self, seconds: int) -> str:
        """Let the database itself delete documents ``seconds`` after they finished (0: not);
        what was done to make it so, "" for nothing (or no such means)."""
        ...

    def ping(self, timeout: float | None = None) -> bool:
        """Whether the database answers now."""
        ...

    def insert(self, documents: Sequence[Document], timeout: float | None = None) -> None:
        """Insert documents; a unique value already stored raises ``DuplicateJobId``."""
        ...

    def find_one(
        self,
        filter: Document,
        projection: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Document | None:
        """The first document matching ``filter``, or None."""
        ...

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
        """Documents matching ``filter``, sorted and paged."""
        ...

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
        ...

    def count(self, filter: Document, *, timeout: float) -> int:
        """How many documents match ``filter``."""
        ...

    def aggregate(self, pipeline: Sequence[Document], *, timeout: float) -> list[Document]:
        """The rows of an aggregation pipeline (ObjectIds as strings)."""
        ...

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
        limit, project) applied to them (none when ``count_only`` or past the count)."""
        ...

    def update_one(
        self,
        filter: Document,
        changes: Document,
        projection: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Document | None:
        """Apply ``changes`` (an update document) to one match, atomically; the new document."""
        ...

    def update_many(self, filter: Document, changes: Document, timeout: float | None = None) -> int:
        """Apply ``changes`` to every match; how many changed."""
        ...

    def delete_many(self, filter: Document, timeout: float | None = None) -> int:
        """Remove every match; how many were removed."""
        ...

    def changed_ids(
        self, opened: Callable[[], None] = lambda: None
    ) -> Iterator[tuple[str, str] | None]:
        """The ``job_id`` and resume token of each document as it changes (``opened`` is called
        once the feed is open), and None after each bounded wait without a change;
        ``ChangesUnavailable`` when the deployment has no change streams."""
        ...

    def drop(self) -> None:
        """Remove every document (tests and development only)."""
        ...
