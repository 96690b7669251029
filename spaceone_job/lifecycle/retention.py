"""Retention of finished runs: finished jobs older than ``--retain-finished-days``, or beyond the
``--keep-finished-per-source`` newest of their data source, are deleted with their tasks.

The sweeper applies both rules in batches, each round bounded in size and time: a batch's tasks
first, then its jobs, the jobs' delete conditional on their being finished (a finished job is
never written again, so its tasks are safe to delete; a job that is not finished is never
deleted, however old). A round cut short, or a process that dies between the two deletes,
leaves finished jobs that the next round finds again. On MongoDB, a TTL index on the jobs'
``finished_at`` (:meth:`Store.expire_finished`) expires jobs :data:`TTL_GRACE` past the retention
even while no replica sweeps; the sweeper, every ``--sweep-interval-s``, comes first, so tasks go
with their job (only jobs the database expired itself, after a day without any sweeper, leave
their tasks behind).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import prometheus_client

from spaceone_job.lifecycle.jobs import Jobs
from spaceone_job.lifecycle.states import FINISHED, QUERY_TIMEOUT_S
from spaceone_job.store.documents import Document
from spaceone_job.store.protocol import Store

LOG = logging.getLogger(__name__)
DELETED = prometheus_client.Counter(
    "spaceone_job_deleted", "Finished jobs and their tasks deleted by retention", ["kind"]
)
# The most jobs one delete takes, and the most time one round spends.
BATCH = 500
ROUND_S = 10.0
# The database's own expiry comes this long after the sweeper's.
TTL_GRACE = timedelta(days=1)
_FINISHED: Document = {"status": {"$in": list(FINISHED)}}


@dataclass(frozen=True)
class Retention:
    """Finished jobs kept ``days`` after they finished (0: forever), and at most ``per_source``
    of them per data source (0: no limit)."""

    days: int = 0
    per_source: int = 0

    @property
    def on(self) -> bool:
        """Whether anything is ever deleted."""
        return bool(self.days or self.per_source)

    @property
    def ttl_s(self) -> int:
        """The expiry of the database's TTL indexes (0: none)."""
        return int((timedelta(days=self.days) + TTL_GRACE).total_seconds()) if self.days else 0


def expire(jobs: Store, retention: Retention) -> None:
    """Keep the jobs' TTL index as ``retention`` says (created, changed, dropped), logging what
    changed."""
    done = jobs.expire_finished(retention.ttl_s)
    if done:
        LOG.info("%s: TTL index on finished_at %s (%d s)", jobs.key, done, retention.ttl_s)


def sweep_retention(jobs: Jobs, retention: Retention) -> int:
    """One round of both rules; how many jobs it deleted."""
    deadline = time.monotonic() + ROUND_S
    deleted = 0
    if retention.days:
        cutoff = jobs.clock() - timedelta(days=retention.days)
        aged = {**_FINISHED, "finished_at": {"$lt": cutoff}}
        why = f"finished more than {retention.days} day(s) ago"
        while time.monotonic() < deadline:
            batch = _finished(jobs, aged, [("finished_at", 1)], 0)
            if not batch:
                break
            deleted += _delete(jobs, batch, aged, why)
    if retention.per_source:
        for source in _crowded(jobs, retention.per_source):
            mine = {**_FINISHED, **source}
            why = f"beyond the {retention.per_source} newest of {source['data_source_id']}"
            while time.monotonic() < deadline:
                newest_first = [("finished_at", -1), ("job_id", -1)]
                batch = _finished(jobs, mine, newest_first, retention.per_source)
                if not batch:
                    break
                deleted += _delete(jobs, batch, mine, why)
    return deleted


def _finished(jobs: Jobs, where: Document, sort: list[tuple[str, int]], skip: int) -> list[str]:
    found = jobs.jobs.find(
        where, projection={"job_id": 1}, sort=sort, skip=skip, limit=BATCH, timeout=QUERY_TIMEOUT_S
    )
    return [job["job_id"] for job in found]


def _crowded(jobs: Jobs, per_source: int) -> list[dict[str, Any]]:
    """The data sources (each with its domain) that have more than ``per_source`` finished
    jobs."""
    rows = jobs.jobs.aggregate(
        [
            {"$match": _FINISHED},
            {
                "$group": {
                    "_id": {"domain_id": "$domain_id", "data_source_id": "$data_source_id"},
                    "finished": {"$sum": 1},
                }
            },
            {"$match": {"finished": {"$gt": per_source}}},
        ],
        timeout=QUERY_TIMEOUT_S,
    )
    return [dict(row["_id"]) for row in rows]


def _delete(jobs: Jobs, job_ids: list[str], still: Document, why: str) -> int:
    """The tasks of ``job_ids``, then those jobs that still match ``still``; how many jobs."""
    ours = {"job_id": {"$in": job_ids}}
    tasks = jobs.tasks.delete_many(ours, timeout=QUERY_TIMEOUT_S)
    removed = jobs.jobs.delete_many({**ours, **still}, timeout=QUERY_TIMEOUT_S)
    DELETED.labels("job").inc(removed)
    DELETED.labels("job_task").inc(tasks)
    LOG.info("retention: %d job(s) and %d task(s) deleted (%s)", removed, tasks, why)
    return removed
