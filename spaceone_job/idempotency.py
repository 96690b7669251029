"""Producers' request ids: what a retry is recognised by, and what it is answered (AIP-155).

A request id is the client's name for one request. It is recorded with the change the request
makes, in the same write, as a record of three parts:

- ``key``: 128 bits of SHA-256 over the id and its scope (the domain, the operation and its
  target: the workspace a job is created in, the task reported on), so an id means one thing in
  one place: the same id in another tenant, for another operation or another task is another
  request, and no one can find a colliding key by search;
- ``fingerprint``: 128 bits of SHA-256 over the rest of the request, so that the same id sent
  with a different request is told apart (``ERROR_REQUEST_ID_REUSED``) rather than answered with
  the first request's result;
- ``answer`` (a task's reports): the fields of the task that the answer held and that change
  later (status, count, times), so that a retry, however late, is answered as the first call
  was. A job's first answer is known from the job itself (see ``lifecycle.jobs._as_created``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spaceone_job.errors import Code, ServiceError

Document = dict[str, Any]


def _digest(parts: Sequence[Any]) -> str:
    # JSON keeps the parts apart whatever they hold (a NUL, a quote, a separator).
    text = json.dumps(list(parts), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Request:
    """A producer's request: its id and the fingerprint of everything else it says."""

    request_id: str
    fingerprint: str

    @classmethod
    def of(cls, operation: str, request: Mapping[str, Any]) -> Request:
        """The request id of ``request`` (a plain dict) and its fingerprint."""
        rest = {name: value for name, value in request.items() if name != "request_id"}
        return cls(str(request.get("request_id", "")), _digest([operation, rest]))

    def key(self, domain_id: str, operation: str, target: str | None) -> str:
        """The record's key: this id in this domain, for this operation on this target."""
        return _digest([domain_id, operation, target or "", self.request_id])

    def record(self, key: str, answer: Mapping[str, Any] | None = None) -> Document:
        """The record stored with the change: key, fingerprint (and the answer's fields)."""
        record: Document = {"key": key, "fingerprint": self.fingerprint}
        if answer is not None:
            record["answer"] = dict(answer)
        return record

    def check(self, record: Mapping[str, Any]) -> None:
        """Refuse a retry that found ``record`` but is not the same request."""
        if record.get("fingerprint") != self.fingerprint:
            raise ServiceError(
                Code.REQUEST_ID_REUSED,
                "This request id was used for a different request; use a new id.",
                request_id=self.request_id,
            )

    def replayed(self, record: Mapping[str, Any], current: Mapping[str, Any]) -> Document:
        """The first call's answer, for a retry that found ``record`` on ``current``."""
        self.check(record)
        return {**current, **(record.get("answer") or {})}
