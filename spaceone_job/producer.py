"""The producers' API rules (contract §11): who may create and run jobs, where, and retries.

Schedulers and workers call with a SYSTEM_TOKEN (``x_domain_id``), as a DOMAIN_ADMIN, or as a
WORKSPACE_OWNER for its own workspace. Every mutating request carries a ``request_id``; the
lifecycle records it with the change it makes, so a retry answers as the first call did.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from spaceone_job import auth
from spaceone_job.auth import DOMAIN_LEVEL, Caller
from spaceone_job.errors import ServiceError, invalid, required
from spaceone_job.lifecycle import Created, Lifecycle, TaskSpec
from spaceone_job.query import schema
from spaceone_job.store.store import Document, JobStore

REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,64}$")
MAX_TASKS = 1000
WRITERS = frozenset({auth.DOMAIN_ADMIN, auth.WORKSPACE_OWNER})


def _writer(caller: Caller) -> None:
    if not caller.system and caller.role not in WRITERS:
        raise ServiceError(
            "ERROR_PERMISSION_DENIED",
            "Producing jobs takes a system token, a domain admin or a workspace owner.",
            role=caller.role,
        )


def _request_id(request: Mapping[str, Any]) -> str:
    value = request.get("request_id", "")
    if not value:
        raise required("request_id")
    if not REQUEST_ID.match(value):
        raise invalid("request_id", "1 to 64 printable characters without spaces.")
    return str(value)


def _text(request: Mapping[str, Any], name: str, limit: int = 40) -> str:
    value = str(request.get(name, "")).strip()
    if len(value) > limit:
        raise invalid(name, f"at most {limit} characters.")
    return value


class Producers:
    """create a job; start, report on and finish its tasks; for an authenticated caller."""

    def __init__(self, lifecycle: Lifecycle, tasks: JobStore) -> None:
        self.lifecycle = lifecycle
        self.tasks = tasks

    def create_job(self, caller: Caller, request: Mapping[str, Any]) -> Created:
        """A job with its tasks in the caller's domain (and workspace, for a workspace one)."""
        _writer(caller)
        request_id = _request_id(request)
        data_source_id = _text(request, "data_source_id")
        if not data_source_id:
            raise required("data_source_id")
        workspace_id = _text(request, "workspace_id")
        if caller.workspace_scoped:
            if workspace_id not in ("", caller.workspace_id):
                raise ServiceError(
                    "ERROR_PERMISSION_DENIED",
                    "A workspace caller creates jobs in its own workspace.",
                    workspace_id=workspace_id,
                )
            workspace_id = caller.workspace_id or ""
        workspace_id = workspace_id or DOMAIN_LEVEL
        resource_group = request.get("resource_group") or (
            "DOMAIN" if workspace_id == DOMAIN_LEVEL else "WORKSPACE"
        )
        tasks = request.get("tasks") or []
        if len(tasks) > MAX_TASKS:
            raise invalid("tasks", f"a job has at most {MAX_TASKS} tasks.")
        return self.lifecycle.create(
            domain_id=caller.domain_id,
            data_source_id=data_source_id,
            workspace_id=workspace_id,
            resource_group=resource_group,
            options=schema.literal(request.get("options") or {}, "options"),
            tasks=[self._spec(t, f"tasks[{i}]") for i, t in enumerate(tasks)],
            changed=schema.literal(request.get("changed") or [], "changed"),
            synced_accounts=self._accounts(request.get("synced_accounts") or []),
            request_id=request_id,
        )

    @staticmethod
    def _spec(raw: Mapping[str, Any], where: str) -> TaskSpec:
        return TaskSpec(
            options=schema.literal(raw.get("options") or {}, f"{where}.options"),
            changed=schema.literal(raw.get("changed"), f"{where}.changed"),
        )

    @staticmethod
    def _accounts(accounts: Sequence[Any]) -> list[str]:
        if len(accounts) > MAX_TASKS:
            raise invalid("synced_accounts", f"at most {MAX_TASKS} accounts.")
        return [str(a) for a in accounts]

    def _task(self, caller: Caller, request: Mapping[str, Any]) -> str:
        """The task's id, once it is known to be within the caller's write scope."""
        task_id = _text(request, "job_task_id")
        if not task_id:
            raise required("job_task_id")
        scope: dict[str, Any] = {"job_task_id": task_id, "domain_id": caller.domain_id}
        if caller.workspace_scoped:
            scope["workspace_id"] = caller.workspace_id
        if self.tasks.find_one(scope, {"job_task_id": 1}) is None:
            raise ServiceError(
                "ERROR_NOT_FOUND",
                "The job task does not exist or is out of reach.",
                job_task_id=task_id,
            )
        return task_id

    def start_task(self, caller: Caller, request: Mapping[str, Any]) -> Document:
        """PENDING -> IN_PROGRESS."""
        _writer(caller)
        request_id = _request_id(request)
        return self.lifecycle.start_task(self._task(caller, request), request_id)

    def report_progress(self, caller: Caller, request: Mapping[str, Any]) -> Document:
        """``created_count`` += the report's."""
        _writer(caller)
        request_id = _request_id(request)
        count = request.get("created_count", 0)
        if count < 0:
            raise invalid("created_count", "a count of rows stored, 0 or more.")
        return self.lifecycle.progress(self._task(caller, request), count, request_id)

    def finish_task(self, caller: Caller, request: Mapping[str, Any]) -> Document:
        """SUCCESS, or FAILURE with the report's error."""
        _writer(caller)
        request_id = _request_id(request)
        return self.lifecycle.finish_task(
            self._task(caller, request),
            error_code=_text(request, "error_code", 254),
            error_message=str(request.get("error_message", "")),
            request_id=request_id,
        )
