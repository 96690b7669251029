"""The event trail: every transition of a job or a task, kept on its document by the same
conditional write that makes the change (so no change without its event, and no event without
its change), the newest :data:`EVENTS_KEPT` of each document. Never rendered by upstream's
messages and out of reach of its query and stat languages (the field is internal)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from spaceone_job.auth import Caller

EVENTS_KEPT = 200
# A job's event for each finished state.
JOB_ENDS = {
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
    "CANCELED": "canceled",
    "TIMEOUT": "timed_out",
}
# A task's event for each state it moves to.
TASK_MOVES = {
    "IN_PROGRESS": "task_started",
    "SUCCESS": "task_succeeded",
    "FAILURE": "task_failed",
    "CANCELED": "task_canceled",
}
# Who a change of the service's own is by.
SWEEPER = {"by": "sweeper"}
DUPLICATE_RULE = {"by": "duplicate rule"}

# At one instant, the order in which events cause each other (see :func:`trail_rank`).
_CAUSAL = {"created": 0, "task_started": 1, "task_succeeded": 1, "task_failed": 1}
_CANCELED_TASK = 3
_JOB_END = 2

Event = dict[str, Any]
Actor = Mapping[str, str]


def by(caller: Caller) -> Actor:
    """Who a caller's change is by: its user or app, its role, its call's request id."""
    return {"by": caller.actor, "role": caller.role, "request_id": caller.request_id}


def event(kind: str, at: datetime, actor: Actor = {}, **details: Any) -> Event:  # noqa: B006
    """One event as stored: its kind, when, who, and the details that are set."""
    return {
        "type": kind,
        "at": at,
        **{k: v for k, v in {**actor, **details}.items() if v not in (None, "")},
    }


def pushed(*events: Event) -> dict[str, Any]:
    """What a ``$push`` appends: ``events``, the newest :data:`EVENTS_KEPT` kept."""
    return {"events": {"$each": list(events), "$slice": -EVENTS_KEPT}}


def trail_rank(kind: str) -> int:
    """Where an event of ``kind`` stands among those of the same instant: a job's creation,
    then its tasks' moves, then its end, then the tasks its end canceled."""
    if kind == "task_canceled":
        return _CANCELED_TASK
    return _CAUSAL.get(kind, _JOB_END)
