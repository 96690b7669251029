"""Connecting to a store: MongoDB at a URI, or the embedded in-process store when there is none."""

from __future__ import annotations

import uuid

import mongoengine
import mongomock
import pymongo
from mongoengine.connection import get_db

from spaceone_job.kinds import JOB
from spaceone_job.store.mongo import MongoStore
from spaceone_job.store.protocol import Store

EMBEDDED_DESCRIPTION = "embedded, in-memory, development only"


def connect(
    uri: str, database: str, *, db_timeout_ms: int = 5000, query_timeout_ms: int = 10000
) -> Store:
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
    collection = get_db(alias)[JOB.model._meta["collection"]]
    if not uri:
        # Imported only for the embedded store: it checks the installed mongomock's version,
        # which a MongoDB deployment does not depend on.
        from spaceone_job.store.embedded import EmbeddedStore

        return EmbeddedStore(collection, description)
    return MongoStore(collection, description, reach=reach, db_timeout_s=db_timeout_ms / 1000)


def _redact(uri: str) -> str:
    """The URI without its password."""
    scheme, sep, rest = uri.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return uri
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"
