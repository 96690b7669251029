"""mockupdb as MongoDB for the tests of the MongoDB store on a real socket.

mockupdb speaks MongoDB's wire protocol; here it plays a replica set's primary. A test either
answers each command itself (``receives``, ``autoresponds``) with MongoDB's replies and error
codes, or lets :class:`Backing` answer every command from a mongomock database, as a MongoDB
holding those documents would.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import mongomock
import pytest
from mockupdb import Matcher, MockupDB, Request
from pymongo import ReturnDocument

from spaceone_job.errors import ServiceError, as_service_error
from spaceone_job.store.connect import connect
from spaceone_job.store.mongo import MongoStore

DATABASE = "cost-analysis"
# What MongoDB 7 answers a handshake as a replica set's primary (wire version 21).
HELLO: dict[str, Any] = {
    "ismaster": True,
    "isWritablePrimary": True,
    "helloOk": True,
    "setName": "rs0",
    "setVersion": 1,
    "minWireVersion": 0,
    "maxWireVersion": 21,
    "maxBsonObjectSize": 16 * 1024 * 1024,
    "maxMessageSizeBytes": 48_000_000,
    "maxWriteBatchSize": 100_000,
    "logicalSessionTimeoutMinutes": 30,
    "ok": 1,
}
HOUSEKEEPING = frozenset({"ping", "endSessions", "killCursors"})


class Wire:
    """mockupdb as a replica set's primary, and the MongoDB store connected to it."""

    def __init__(self, db_timeout_ms: int = 1000) -> None:
        self.server = MockupDB(auto_ismaster=False, request_timeout=5)
        port = self.server.run()
        address = f"localhost:{port}"
        hello = {**HELLO, "hosts": [address], "primary": address, "me": address}
        for name in ("ismaster", "hello"):
            self.server.autoresponds(name, hello)
        # The driver's housekeeping, whatever its arguments; the tests answer the rest.
        self.server.autoresponds(
            Matcher(), lambda request: request.command_name in HOUSEKEEPING and request.ok()
        )
        # A short heartbeat: closing the client waits for its monitor's next beat.
        found = connect(
            f"mongodb://{address}/?directConnection=true&heartbeatFrequencyMS=500",
            DATABASE,
            db_timeout_ms=db_timeout_ms,
        )
        assert isinstance(found, MongoStore)
        self.store = found

    def close(self) -> None:
        self.store.close()
        # mockupdb's stop waits up to a second for its accept loop; nothing waits for it here.
        threading.Thread(target=self.server.stop, name="mockupdb-stop", daemon=True).start()


def cursor(*rows: dict[str, Any], cursor_id: int = 0) -> dict[str, Any]:
    """A command reply that opens a cursor, as ``find`` and ``aggregate`` answer."""
    return {"cursor": {"id": cursor_id, "ns": f"{DATABASE}.job", "firstBatch": list(rows)}}


def refused(code: int, name: str, message: str, *labels: str) -> Callable[[Request], bool]:
    """A responder that answers a command with MongoDB's error reply."""

    def answer(request: Request) -> bool:
        extra = {"errorLabels": list(labels)} if labels else {}
        return bool(request.command_err(code, message, codeName=name, **extra))

    return answer


class Backing:
    """Answers the store's commands from a mongomock database, as MongoDB holding those
    documents would, and keeps each command as MongoDB received it."""

    def __init__(self) -> None:
        self.database: Any = mongomock.MongoClient()[DATABASE]
        self.received: list[dict[str, Any]] = []

    def __call__(self, request: Request) -> bool:
        name = request.command_name
        if name not in _COMMANDS:
            return False
        self.received.append(copy.deepcopy(dict(request.doc)))
        collection = self.database[request.doc[name]]
        return bool(request.ok(_COMMANDS[name](collection, request.doc)))


def _find(collection: Any, doc: dict[str, Any]) -> dict[str, Any]:
    found = collection.find(
        doc.get("filter", {}),
        doc.get("projection"),
        sort=list(doc["sort"].items()) if doc.get("sort") else None,
        skip=doc.get("skip", 0),
        limit=abs(doc.get("limit", 0)),
    )
    return cursor(*found)


def _aggregate(collection: Any, doc: dict[str, Any]) -> dict[str, Any]:
    return cursor(*collection.aggregate(doc["pipeline"]))


def _insert(collection: Any, doc: dict[str, Any]) -> dict[str, Any]:
    collection.insert_many(doc["documents"])
    return {"n": len(doc["documents"])}


def _find_and_modify(collection: Any, doc: dict[str, Any]) -> dict[str, Any]:
    # mongomock finds an updated document whose _id is projected away again by the update's
    # filter, which it may no longer match; MongoDB answers the document it changed.
    fields = dict(doc.get("fields") or {})
    shows_id = fields.pop("_id", 1) != 0
    found = collection.find_one_and_update(
        doc["query"],
        doc["update"],
        projection=fields or None,
        return_document=ReturnDocument.AFTER if doc.get("new") else ReturnDocument.BEFORE,
    )
    if found is not None and not shows_id:
        del found["_id"]
    return {"value": found, "lastErrorObject": {"n": int(found is not None)}}


def _update(collection: Any, doc: dict[str, Any]) -> dict[str, Any]:
    changed = 0
    for update in doc["updates"]:
        apply = collection.update_many if update.get("multi") else collection.update_one
        changed += apply(update["q"], update["u"]).modified_count
    return {"n": changed, "nModified": changed}


def _delete(collection: Any, doc: dict[str, Any]) -> dict[str, Any]:
    gone = sum(collection.delete_many(delete["q"]).deleted_count for delete in doc["deletes"])
    return {"n": gone}


_COMMANDS: dict[str, Callable[[Any, dict[str, Any]], dict[str, Any]]] = {
    "find": _find,
    "aggregate": _aggregate,
    "insert": _insert,
    "findAndModify": _find_and_modify,
    "update": _update,
    "delete": _delete,
}

_BACKGROUND = ThreadPoolExecutor(4, thread_name_prefix="wire-client")


def go(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[], Any]:
    """Start ``call`` in the background (the test plays the server meanwhile); its result."""
    future: Future[Any] = _BACKGROUND.submit(call, *args, **kwargs)
    return lambda: future.result(timeout=10)


def raised(result: Callable[[], Any]) -> ServiceError:
    """What a caller is answered when ``result`` fails (a store's exception as the API says it)."""
    with pytest.raises(Exception) as caught:
        result()
    return as_service_error(caught.value)
