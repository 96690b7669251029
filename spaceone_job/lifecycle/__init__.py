"""How jobs and their tasks change state outside the read RPCs: producers and the sweeper, in
three rooms: :mod:`~spaceone_job.lifecycle.jobs` (create, finish, settle),
:mod:`~spaceone_job.lifecycle.tasks` (workers' reports) and
:mod:`~spaceone_job.lifecycle.sweeper` (timeouts).

Every state change is one conditional write that names the state it leaves, so concurrent
workers, cancels and sweepers on several replicas never overwrite each other: a finished job or
task is never written again, and a task ends once (contract §8).
"""

from __future__ import annotations

from spaceone_job.lifecycle.jobs import Created, Jobs, TaskSpec
from spaceone_job.lifecycle.states import FINISHED
from spaceone_job.lifecycle.sweeper import Sweeper, sweep_timeouts
from spaceone_job.lifecycle.tasks import REPORTS_PER_TASK, Tasks
from spaceone_job.service import Clock, utcnow
from spaceone_job.store.protocol import Store

__all__ = ["FINISHED", "Created", "Lifecycle", "Sweeper", "TaskSpec"]


class Lifecycle:
    """What producers and the sweeper may do to jobs and tasks: the rooms' entry points."""

    def __init__(
        self,
        jobs: Store,
        tasks: Store,
        clock: Clock = utcnow,
        reports_per_task: int = REPORTS_PER_TASK,
    ) -> None:
        self.jobs = Jobs(jobs, tasks, clock)
        self.tasks = Tasks(self.jobs, reports_per_task)
        self.create = self.jobs.create
        self.heartbeat = self.jobs.heartbeat
        self.finish = self.jobs.finish
        self.cancel_tasks = self.jobs.cancel_tasks
        self.start_task = self.tasks.start_task
        self.progress = self.tasks.progress
        self.finish_task = self.tasks.finish_task

    def sweep_timeouts(self, timeout_s: int) -> int:
        """Running jobs with no update for ``timeout_s`` -> TIMEOUT (see :func:`sweep_timeouts`)."""
        return sweep_timeouts(self.jobs, timeout_s)
