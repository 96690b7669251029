"""A spaceone-job server whose store answers each query with rows it computed once.

Everything else is the real server (tokens, the call gate, compiling the query, the service's
rules, rendering, logging, metrics, gRPC), so ``make bench`` can show what the service itself
costs per call: what remains on the production path, where MongoDB does the query.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from spaceone_job import config
from spaceone_job.app import App
from spaceone_job.kinds import DocumentKind
from spaceone_job.store.connect import connect
from spaceone_job.store.documents import Document, copied
from spaceone_job.store.embedded import EmbeddedStore

T = TypeVar("T")


def masked(value: Any) -> Any:
    """``value`` with its dates blanked: filters computed from the clock ("now-90d") change
    from call to call, the rows they ask for do not."""
    if isinstance(value, Mapping):
        return {key: masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [masked(item) for item in value]
    return "<date>" if isinstance(value, datetime) else value


class CannedStore(EmbeddedStore):
    """The embedded store, each distinct query run once; later calls get a copy of its rows (as
    a driver builds new documents for every answer)."""

    def __init__(self, collection: Any, description: str, *, kind: DocumentKind) -> None:
        super().__init__(collection, description, kind=kind)
        self._answers: dict[str, Any] = {}

    def sibling(self, kind: DocumentKind) -> CannedStore:
        """The canned store of another kind's collection."""
        collection = self._collection.database[kind.model._meta["collection"]]
        return CannedStore(collection, self.description, kind=kind)

    def _canned(self, query: Any, compute: Callable[[], T]) -> T:
        key = repr(masked(query))
        if key not in self._answers:
            self._answers[key] = compute()
        answer: T = copied(self._answers[key])
        return answer

    def find_one(
        self,
        filter: Document,
        projection: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Document | None:
        """The first match, as computed the first time."""
        query = ("find_one", filter, projection)
        return self._canned(query, lambda: super(CannedStore, self).find_one(filter, projection))

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
        """A page and its count, as computed the first time."""
        query = ("page", filter, projection, sort, skip, limit, count_only)
        compute = super().page
        return self._canned(
            query,
            lambda: compute(
                filter,
                projection=projection,
                sort=sort,
                skip=skip,
                limit=limit,
                count_only=count_only,
                timeout=timeout,
            ),
        )

    def aggregate(self, pipeline: Sequence[Document], *, timeout: float) -> list[Document]:
        """A pipeline's rows, as computed the first time."""
        compute = super().aggregate
        return self._canned(("aggregate", pipeline), lambda: compute(pipeline, timeout=timeout))


def main() -> None:
    """Serve on --port with the jobs of --seed until SIGTERM."""
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--port", type=int, required=True)
    args.add_argument("--seed", type=Path, required=True)
    args.add_argument("--state-dir", type=Path, required=True)
    options = args.parse_args()
    settings = config.from_sources(
        {
            "host": "127.0.0.1",
            "port": options.port,
            "seed": str(options.seed),
            "state_dir": str(options.state_dir),
            "metrics_port": -1,
        }
    )
    embedded = connect("", "canned")
    assert isinstance(embedded, EmbeddedStore)
    store = CannedStore(embedded._collection, "canned answers", kind=embedded.kind)
    app = App(settings, store=store)
    app.bind()
    app.prepare_store()
    app.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    app.stop(0)


if __name__ == "__main__":
    main()
