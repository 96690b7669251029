"""The demo dataset ``make run`` serves: ~300 realistic jobs as a seed file (JSON Lines).

Two domains, several workspaces plus domain-level (``*``) data sources, six data sources, every
status, ``changed`` months, synced accounts and six months of history. Ids and shapes are fixed
(a seeded RNG); times are laid back from the moment it is generated, so the running jobs are
recent and the sweeper leaves them alone.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from spaceone_job.api.render import timestamp
from spaceone_job.service import utcnow

# (domain, workspace, data source, resource group, tasks per run, accounts)
SOURCES = (
    ("domain-58010aa2e451", "*", "ds-fcba92ca73b1", "DOMAIN", 2, ("111122223333", "444455556666")),
    (
        "domain-58010aa2e451",
        "ws-7a1c3e9b20d4",
        "ds-c96609f5afeb",
        "WORKSPACE",
        1,
        ("777788889999",),
    ),
    ("domain-58010aa2e451", "ws-7a1c3e9b20d4", "ds-2b8e51d07c6a", "WORKSPACE", 3, ()),
    (
        "domain-58010aa2e451",
        "ws-e40f9d1a6b32",
        "ds-91d3c7a4e580",
        "WORKSPACE",
        2,
        ("123456789012",),
    ),
    ("domain-3c9d0e7f1a22", "*", "ds-5f0a8b6c3d19", "DOMAIN", 4, ("210987654321", "135792468024")),
    ("domain-3c9d0e7f1a22", "ws-0b7d2c4e9f61", "ds-a7e2f9c1b348", "WORKSPACE", 1, ()),
)
DAYS = 182
ERRORS = (
    ("ERROR_JOB_TASK", "One or more job tasks failed."),
    ("ERROR_DUPLICATE_JOB", "The same job is already running. (data_source_id = {ds})"),
    ("ERROR_UNKNOWN", "delete old cost data error: connection reset"),
)


def _month(moment: datetime) -> str:
    return moment.strftime("%Y-%m")


def _job(
    rng: random.Random, source: tuple[Any, ...], created: datetime, now: datetime
) -> dict[str, Any]:
    domain_id, workspace_id, data_source_id, resource_group, tasks, accounts = source
    manual = rng.random() < 0.15
    age = now - created
    if age < timedelta(minutes=30):
        status = "IN_PROGRESS"
    else:
        status = rng.choices(("SUCCESS", "FAILURE", "CANCELED", "TIMEOUT"), weights=(80, 9, 6, 5))[
            0
        ]
    duration = timedelta(seconds=rng.randint(40, 1800))
    job: dict[str, Any] = {
        "job_id": f"job-{rng.getrandbits(48):012x}",
        "status": status,
        "options": {
            "no_preload_cache": manual and rng.random() < 0.5,
            "start": _month(created - timedelta(days=60)) if manual else None,
            "sync_mode": "MANUAL" if manual else "SCHEDULED",
        },
        "total_tasks": tasks,
        "remained_tasks": 0,
        "resource_group": resource_group,
        "domain_id": domain_id,
        "workspace_id": workspace_id,
        "data_source_id": data_source_id,
        "created_at": timestamp(created),
        "changed": [{"start": _month(created)}],
    }
    if rng.random() < 0.3:
        job["changed"].insert(
            0,
            {
                "start": _month(created - timedelta(days=31)),
                "end": _month(created - timedelta(days=31)),
            },
        )
    if accounts:
        job["synced_accounts"] = [{"account_id": a} for a in accounts]
    if status == "IN_PROGRESS":
        job["remained_tasks"] = rng.randint(1, tasks)
        job["updated_at"] = timestamp(created + (now - created) / 2)
        return job
    finished = created + duration
    job["updated_at"] = job["finished_at"] = timestamp(finished)
    if status == "FAILURE":
        code, message = rng.choice(ERRORS)
        job["error_code"] = code
        job["error_message"] = message.format(ds=data_source_id)
        if code == "ERROR_DUPLICATE_JOB":  # found before any task was made
            job["total_tasks"] = 0
    return job


def _task_statuses(rng: random.Random, job: dict[str, Any]) -> list[str]:
    """Task statuses that agree with the job's status and counts."""
    total, remained = job["total_tasks"], job["remained_tasks"]
    done = ["SUCCESS"] * (total - remained)
    if job["status"] == "IN_PROGRESS":
        return done + ["IN_PROGRESS"] + ["PENDING"] * (remained - 1)
    if job.get("error_code") == "ERROR_JOB_TASK":
        return ["FAILURE"] + ["CANCELED"] * (total - 1)
    if job["status"] in ("CANCELED", "TIMEOUT") and total:
        cut = rng.randint(0, total - 1)
        return ["SUCCESS"] * cut + ["CANCELED"] * (total - cut)
    return done


def tasks(rng: random.Random, job: dict[str, Any]) -> list[dict[str, Any]]:
    """The tasks of a demo job: one per secret or account, each over the job's latest month."""
    created = datetime.fromisoformat(job["created_at"].removesuffix("Z"))
    out = []
    for i, status in enumerate(_task_statuses(rng, job)):
        task: dict[str, Any] = {
            "job_task_id": f"job-task-{rng.getrandbits(48):012x}",
            "job_id": job["job_id"],
            "status": status,
            "options": {"part": i, "start": job["changed"][-1]["start"]},
            "changed": job["changed"][-1],
            "resource_group": job["resource_group"],
            "domain_id": job["domain_id"],
            "workspace_id": job["workspace_id"],
            "data_source_id": job["data_source_id"],
            "created_at": job["created_at"],
            "updated_at": job["updated_at"],
        }
        if status != "PENDING":
            task["started_at"] = timestamp(created + timedelta(seconds=rng.randint(1, 30)))
        if status in ("SUCCESS", "FAILURE", "IN_PROGRESS"):
            task["created_count"] = rng.randint(50, 5000)
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            task["finished_at"] = job.get("finished_at", job["updated_at"])
        if status == "FAILURE":
            task["error_code"] = "ERROR_PLUGIN_FAILURE"
            task["error_message"] = "The plugin timed out collecting cost data."
        out.append(task)
    job["remained_tasks"] = sum(t["status"] in ("PENDING", "IN_PROGRESS") for t in out)
    return out


def lines(now: datetime, seed: int = 20221117) -> Iterator[dict[str, Any]]:
    """The demo seed lines, oldest job first, each followed by its tasks."""
    rng = random.Random(seed + 1)
    for job in jobs(now, seed):
        job_tasks = tasks(rng, job)
        yield job
        yield from job_tasks


def jobs(now: datetime, seed: int = 20221117) -> Iterator[dict[str, Any]]:
    """The demo jobs, oldest first: one scheduled run per data source per day, plus a few now."""
    rng = random.Random(seed)
    start = (now - timedelta(days=DAYS)).replace(minute=0, second=0, microsecond=0)
    for day in range(DAYS):
        for index, source in enumerate(SOURCES):
            if rng.random() < 0.27:
                created = start + timedelta(
                    days=day, hours=16 + index % 3, seconds=rng.randint(0, 600)
                )
                yield _job(rng, source, created, now)
    for minutes, source in zip((3, 7, 12, 20), SOURCES[::2] + SOURCES[1:2], strict=False):
        yield _job(rng, source, now - timedelta(minutes=minutes), now)


def main() -> None:
    """Write the demo seed file."""
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--out", type=Path, required=True, help="seed file to write")
    out: Path = args.parse_args().out
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as out_lines:
        for line in lines(utcnow()):
            out_lines.write(json.dumps(line, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
