"""The sweeper: running jobs that no producer touched for ``--timeout-s`` end TIMEOUT, on every
replica at once without stepping on each other (each move is conditional); and, when retention is
on, finished jobs past it are deleted with their tasks (:mod:`.retention`)."""

from __future__ import annotations

import logging
from datetime import timedelta

from spaceone_job.errors import as_service_error
from spaceone_job.lifecycle.jobs import Jobs
from spaceone_job.lifecycle.retention import Retention, sweep_retention
from spaceone_job.lifecycle.states import QUERY_TIMEOUT_S, UNFINISHED_TASK
from spaceone_job.store.documents import StoreError
from spaceone_job.trail import SWEEPER, event, pushed

LOG = logging.getLogger(__name__)


def sweep_timeouts(jobs: Jobs, timeout_s: int) -> int:
    """Running jobs with no update for ``timeout_s`` -> TIMEOUT, their unfinished tasks
    CANCELED; how many jobs moved. Each move is conditional, so replicas sweeping at once move
    each job once."""
    cutoff = jobs.clock() - timedelta(seconds=timeout_s)
    stale = {"status": "IN_PROGRESS", "updated_at": {"$lt": cutoff}}
    found = jobs.jobs.find(
        stale, projection={"job_id": 1}, sort=[], skip=0, limit=0, timeout=QUERY_TIMEOUT_S
    )
    moved = 0
    for job in found:
        now = jobs.clock()
        timed_out = event("timed_out", now, SWEEPER, quiet_s=timeout_s)
        done = jobs.jobs.update_one(
            {"job_id": job["job_id"], **stale},
            {
                "$set": {"status": "TIMEOUT", "finished_at": now, "updated_at": now},
                "$push": pushed(timed_out),
            },
        )
        if done is not None:
            jobs.cancel_tasks(job["job_id"], UNFINISHED_TASK)
            moved += 1
    if moved:
        LOG.info("sweeper: %d job(s) timed out after %d s without an update", moved, timeout_s)
    return moved


class Sweeper:
    """A round, run every ``interval_s`` (by the server's background, :mod:`..background`):
    :func:`sweep_timeouts` (``timeout_s`` 0: not), then :func:`sweep_retention` (when
    ``retention`` is on)."""

    def __init__(
        self,
        jobs: Jobs,
        timeout_s: int,
        interval_s: float,
        retention: Retention = Retention(),  # noqa: B008 (frozen)
    ) -> None:
        self.jobs = jobs
        self.timeout_s = timeout_s
        self.interval_s = interval_s
        self.retention = retention

    @property
    def needed(self) -> bool:
        """Whether there is anything to sweep."""
        return self.timeout_s > 0 or self.retention.on

    def round(self) -> None:
        """One sweep; a failed one (a database outage: one line; anything else: its traceback)
        is logged, and the next comes all the same."""
        try:
            if self.timeout_s > 0:
                sweep_timeouts(self.jobs, self.timeout_s)
            if self.retention.on:
                sweep_retention(self.jobs, self.retention)
        except StoreError as exc:
            LOG.warning("sweeper: %s", as_service_error(exc).details)
        except Exception:
            LOG.exception("sweeper: the round failed; the next one comes in %s s", self.interval_s)
