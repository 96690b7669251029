"""The producers' API rules (contract §11): who may create and run jobs, where, what they may
store, and what identifies a retry.

Schedulers and workers call with a SYSTEM_TOKEN (``x_domain_id``), as a DOMAIN_ADMIN, or as a
WORKSPACE_OWNER for its own workspace. Every mutating request carries a ``request_id``; the
lifecycle records it with the change it makes, so a retry answers as the first call did.
Everything a request would store is checked before anything is written.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spaceone_job import auth, sizes, trail
from spaceone_job.auth import DOMAIN_LEVEL, Caller
from spaceone_job.errors import Code, ServiceError, invalid, required, shown
from spaceone_job.idempotency import Request
from spaceone_job.lifecycle import Created, Lifecycle, TaskSpec
from spaceone_job.store.documents import Document

REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,64}$")
WRITERS = frozenset({auth.DOMAIN_ADMIN, auth.WORKSPACE_OWNER})
# Characters a stored key cannot hold: MongoDB reads "." as a path and "$" as an operator, and
# BSON ends a key at NUL.
_KEY_FORBIDS = (".", "$", "\0")


@dataclass(frozen=True)
class Bounds:
    """What one request may store. The defaults keep a full page of the largest jobs (1,000 at
    the default page cap) under the 4 MiB a gRPC client accepts by default."""

    tasks_per_job: int = 1000
    # options, changed and synced_accounts of a job (options and changed of a task), in bytes of
    # the answer that carries them.
    values_bytes: int = 2048
    # Longer error messages are cut to this many bytes (the failure is stored all the same).
    error_message_bytes: int = 1024


def _writer(caller: Caller) -> None:
    if not caller.system and caller.role not in WRITERS:
        raise ServiceError(
            Code.PERMISSION_DENIED,
            "Producing jobs takes a system token, a domain admin or a workspace owner.",
            role=caller.role,
        )


def _request(operation: str, request: Mapping[str, Any]) -> Request:
    value = request.get("request_id", "")
    if not value:
        raise required("request_id")
    if not REQUEST_ID.match(value):
        raise invalid("request_id", "1 to 64 printable characters without spaces.")
    return Request.of(operation, request)


def _text(request: Mapping[str, Any], name: str, limit: int = 40) -> str:
    value = str(request.get(name, "")).strip()
    if len(value) > limit:
        raise invalid(name, f"at most {limit} characters.")
    return value


def storable(value: Any, where: str) -> Any:
    """``value`` checked to be storable as it is, and returned: every key a non-blank text
    without ``.``, ``$`` or NUL (contract §11), no NaN or infinity. ``where`` is its path in the
    request, which an error names (``tasks[1].options.a``)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not key.strip() or any(c in key for c in _KEY_FORBIDS):
                raise ServiceError(
                    Code.INVALID_PARAMETER,
                    f"A stored key cannot be blank or hold '.', '$' or NUL; {shown(key)} does.",
                    key=where,
                )
            storable(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            storable(item, f"{where}[{index}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ServiceError(
            Code.INVALID_PARAMETER_TYPE, "NaN and infinity are not values.", key=where
        )
    return value


def _cut(message: str, limit: int) -> str:
    """``message`` in at most ``limit`` bytes of UTF-8, ending in an ellipsis when cut."""
    encoded = message.encode()
    if len(encoded) <= limit:
        return message
    return encoded[: limit - 3].decode(errors="ignore") + "\u2026"


class Producers:
    """create a job; start, report on and finish its tasks; for an authenticated caller."""

    def __init__(self, lifecycle: Lifecycle, bounds: Bounds | None = None) -> None:
        self.lifecycle = lifecycle
        self.bounds = bounds or Bounds()

    def _bounded(self, parts: Mapping[str, int], where: str) -> None:
        """Refuse values past the bound, naming the largest part of them."""
        size = sum(parts.values())
        if size > self.bounds.values_bytes:
            largest = max(parts, key=lambda name: parts[name])
            raise invalid(
                f"{where}{largest}",
                f"{' + '.join(parts)} take {size} bytes; at most {self.bounds.values_bytes}.",
            )

    def create_job(
        self, caller: Caller, request: Mapping[str, Any], timeout: float | None = None
    ) -> Created:
        """A job with its tasks in the caller's domain (and workspace, for a workspace one),
        within the call's ``timeout`` (so are the reports below)."""
        _writer(caller)
        identified = _request("create_job", request)
        data_source_id = _text(request, "data_source_id")
        if not data_source_id:
            raise required("data_source_id")
        workspace_id = _text(request, "workspace_id")
        if caller.workspace_scoped:
            if workspace_id not in ("", caller.workspace_id):
                raise ServiceError(
                    Code.PERMISSION_DENIED,
                    "A workspace caller creates jobs in its own workspace.",
                    workspace_id=workspace_id,
                )
            workspace_id = caller.workspace_id or ""
        workspace_id = workspace_id or DOMAIN_LEVEL
        resource_group = request.get("resource_group") or (
            "DOMAIN" if workspace_id == DOMAIN_LEVEL else "WORKSPACE"
        )
        tasks = request.get("tasks") or []
        if len(tasks) > self.bounds.tasks_per_job:
            raise invalid("tasks", f"a job has at most {self.bounds.tasks_per_job} tasks.")
        options = storable(request.get("options") or {}, "options")
        changed = storable(request.get("changed") or [], "changed")
        accounts = [str(a) for a in request.get("synced_accounts") or []]
        self._bounded(sizes.job_values(options, changed, accounts), "")
        return self.lifecycle.create(
            domain_id=caller.domain_id,
            data_source_id=data_source_id,
            workspace_id=workspace_id,
            resource_group=resource_group,
            options=options,
            tasks=[self._spec(t, f"tasks[{i}]") for i, t in enumerate(tasks)],
            changed=changed,
            synced_accounts=accounts,
            request=identified,
            timeout=timeout,
            actor=trail.by(caller),
        )

    def _spec(self, raw: Mapping[str, Any], where: str) -> TaskSpec:
        options = storable(raw.get("options") or {}, f"{where}.options")
        changed = storable(raw.get("changed"), f"{where}.changed")
        self._bounded(sizes.task_values(options, changed), f"{where}.")
        return TaskSpec(options=options, changed=changed)

    @staticmethod
    def _scope(caller: Caller, request: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """The task's id, and the write scope it must lie in."""
        task_id = _text(request, "job_task_id")
        if not task_id:
            raise required("job_task_id")
        scope: dict[str, Any] = {"domain_id": caller.domain_id}
        if caller.workspace_scoped:
            scope["workspace_id"] = caller.workspace_id
        return task_id, scope

    def start_task(
        self, caller: Caller, request: Mapping[str, Any], timeout: float | None = None
    ) -> Document:
        """PENDING -> IN_PROGRESS."""
        _writer(caller)
        identified = _request("start_task", request)
        task_id, scope = self._scope(caller, request)
        return self.lifecycle.start_task(task_id, identified, scope, timeout, trail.by(caller))

    def report_progress(
        self, caller: Caller, request: Mapping[str, Any], timeout: float | None = None
    ) -> Document:
        """``created_count`` += the report's."""
        _writer(caller)
        identified = _request("report_progress", request)
        count = int(request.get("created_count", 0))
        if count < 0:
            raise invalid("created_count", "a count of rows stored, 0 or more.")
        task_id, scope = self._scope(caller, request)
        by = trail.by(caller)
        return self.lifecycle.progress(task_id, count, identified, scope, timeout, by)

    def finish_task(
        self, caller: Caller, request: Mapping[str, Any], timeout: float | None = None
    ) -> Document:
        """SUCCESS, or FAILURE with the report's error."""
        _writer(caller)
        identified = _request("finish_task", request)
        task_id, scope = self._scope(caller, request)
        return self.lifecycle.finish_task(
            task_id,
            error_code=_text(request, "error_code", 254),
            error_message=_cut(
                str(request.get("error_message", "")), self.bounds.error_message_bytes
            ),
            request=identified,
            scope=scope,
            timeout=timeout,
            actor=trail.by(caller),
        )
