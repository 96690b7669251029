"""How jobs change state outside the four RPCs: the producers' API and the timeout sweeper.

Collectors create a job, report progress (heartbeat), finish tasks one by one and finish the job.
Every state change is one conditional update that names the state it leaves, so concurrent
producers, cancels and sweepers on several replicas never overwrite each other's transitions.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from spaceone_job.errors import ServiceError
from spaceone_job.service import Clock, utcnow
from spaceone_job.store.model import InvalidJob, new_document
from spaceone_job.store.store import Document, JobStore

LOG = logging.getLogger(__name__)
FINISHED = ("SUCCESS", "FAILURE", "TIMEOUT", "CANCELED")


class Lifecycle:
    """The producers' side of a job's life."""

    def __init__(self, store: JobStore, clock: Clock = utcnow) -> None:
        self.store = store
        self.clock = clock

    def create(
        self,
        *,
        domain_id: str,
        data_source_id: str,
        workspace_id: str | None = None,
        resource_group: str | None = None,
        options: Mapping[str, Any] | None = None,
        tasks: int = 0,
        changed: Sequence[Mapping[str, Any]] = (),
        synced_accounts: Sequence[str] = (),
    ) -> Document:
        """A new IN_PROGRESS job; options normalised as upstream (``start``, ``sync_mode``)."""
        options = dict(options or {})
        options.setdefault("no_preload_cache", False)
        options.setdefault("start", None)
        options.setdefault("sync_mode", "SCHEDULED")
        now = self.clock()
        data: dict[str, Any] = {
            "domain_id": domain_id,
            "data_source_id": data_source_id,
            "workspace_id": workspace_id,
            "resource_group": resource_group,
            "options": options,
            "total_tasks": max(tasks, 0),
            "remained_tasks": max(tasks, 0),
            "created_at": now,
            "updated_at": now,
        }
        if changed:
            data["changed"] = [dict(c) for c in changed]
        if synced_accounts:
            data["synced_accounts"] = [{"account_id": a} for a in synced_accounts]
        try:
            doc = new_document(data)
        except InvalidJob as exc:
            raise ServiceError("ERROR_INVALID_PARAMETER", f"Invalid job: {exc}.") from exc
        self.store.insert([doc])
        return doc

    def heartbeat(self, job_id: str) -> Document | None:
        """Mark a running job alive (``updated_at`` = now); None when it is no longer running."""
        return self.store.update_one(
            {"job_id": job_id, "status": "IN_PROGRESS"}, {"$set": {"updated_at": self.clock()}}
        )

    def finish_task(self, job_id: str, *, failed: bool = False, error: str = "") -> Document | None:
        """One task ended: ``remained_tasks`` -1 and ``updated_at`` = now.

        A failed task fails the running job (``ERROR_JOB_TASK``); when the last task ends and the
        job is still running, it succeeds. Returns the job afterwards, or None if there is none.
        """
        doc = self.store.update_one(
            {"job_id": job_id, "remained_tasks": {"$gt": 0}},
            {"$inc": {"remained_tasks": -1}, "$set": {"updated_at": self.clock()}},
        )
        if failed:
            message = error or "One or more job tasks failed."
            doc = self._finish(
                job_id, "FAILURE", error_code="ERROR_JOB_TASK", error_message=message
            )
        elif doc is not None and doc["remained_tasks"] == 0:
            doc = self._finish(job_id, "SUCCESS")
        return doc or self.store.find_one({"job_id": job_id})

    def finish(
        self, job_id: str, status: str = "SUCCESS", *, error_code: str = "", error_message: str = ""
    ) -> Document | None:
        """IN_PROGRESS -> ``status``; None when the job was not running any more."""
        if status not in FINISHED:
            raise ValueError(f"{status} is not a finished state")
        extra = {"error_code": error_code, "error_message": error_message} if error_code else {}
        return self._finish(job_id, status, **extra)

    def _finish(self, job_id: str, status: str, **extra: str) -> Document | None:
        now = self.clock()
        return self.store.update_one(
            {"job_id": job_id, "status": "IN_PROGRESS"},
            {"$set": {"status": status, "finished_at": now, "updated_at": now, **extra}},
        )

    def sweep_timeouts(self, timeout_s: int) -> int:
        """Running jobs with no update for ``timeout_s`` -> TIMEOUT; how many moved.

        The condition is part of the write, so replicas sweeping at once move each job once.
        """
        now = self.clock()
        moved = self.store.update_many(
            {"status": "IN_PROGRESS", "updated_at": {"$lt": now - timedelta(seconds=timeout_s)}},
            {"$set": {"status": "TIMEOUT", "finished_at": now, "updated_at": now}},
        )
        if moved:
            LOG.info("sweeper: %d job(s) timed out after %d s without an update", moved, timeout_s)
        return moved


class Sweeper(threading.Thread):
    """Runs :meth:`Lifecycle.sweep_timeouts` every ``interval_s`` until stopped."""

    def __init__(self, lifecycle: Lifecycle, timeout_s: int, interval_s: float) -> None:
        super().__init__(name="timeout-sweeper", daemon=True)
        self.lifecycle = lifecycle
        self.timeout_s = timeout_s
        self.interval_s = interval_s
        self.stopped = threading.Event()

    def run(self) -> None:
        """Sweep, wait, repeat; a database outage is logged and retried next round."""
        while not self.stopped.is_set():
            try:
                self.lifecycle.sweep_timeouts(self.timeout_s)
            except ServiceError as exc:
                LOG.warning("sweeper: %s", exc.details)
            self.stopped.wait(self.interval_s)

    def stop(self) -> None:
        """Ask the loop to end after the current round."""
        self.stopped.set()
