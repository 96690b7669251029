"""Who may see and cancel which job: the callers, their jobs, and the answers each gets."""

from __future__ import annotations

import grpc

from spaceone_job import auth

from ..conftest import D1, D2, WS1, WS2

OK = grpc.StatusCode.OK
NOT_FOUND = grpc.StatusCode.NOT_FOUND
DENIED = grpc.StatusCode.PERMISSION_DENIED
JOBS = {
    "ws1": ("job-000000000ws1", D1, WS1),
    "ws2": ("job-000000000ws2", D1, WS2),
    "star": ("job-00000000star", D1, "*"),
    "other": ("job-0000000other", D2, WS1),
}


CALLERS: dict[str, tuple[str, dict[str, str]]] = {
    # name: (role, metadata for SYSTEM_TOKEN)
    "domain admin": (auth.DOMAIN_ADMIN, {}),
    "workspace owner": (auth.WORKSPACE_OWNER, {}),
    "workspace member": (auth.WORKSPACE_MEMBER, {}),
    "system, domain": ("SYSTEM_TOKEN", {"x_domain_id": D1}),
    "system, workspace": ("SYSTEM_TOKEN", {"x_domain_id": D1, "x_workspace_id": WS1}),
}


# caller -> job -> expected status of get
GET = {
    "domain admin": {"ws1": OK, "ws2": OK, "star": OK, "other": NOT_FOUND},
    "workspace owner": {"ws1": OK, "ws2": NOT_FOUND, "star": OK, "other": NOT_FOUND},
    "workspace member": {"ws1": OK, "ws2": NOT_FOUND, "star": OK, "other": NOT_FOUND},
    "system, domain": {"ws1": OK, "ws2": OK, "star": OK, "other": NOT_FOUND},
    "system, workspace": {"ws1": OK, "ws2": NOT_FOUND, "star": OK, "other": NOT_FOUND},
}
CANCEL = {
    "domain admin": {"ws1": OK, "ws2": OK, "star": OK, "other": NOT_FOUND},
    "workspace owner": {"ws1": OK, "ws2": NOT_FOUND, "star": DENIED, "other": NOT_FOUND},
    "workspace member": {"ws1": OK, "ws2": NOT_FOUND, "star": DENIED, "other": NOT_FOUND},
    "system, domain": {"ws1": OK, "ws2": OK, "star": OK, "other": NOT_FOUND},
    "system, workspace": {"ws1": OK, "ws2": NOT_FOUND, "star": DENIED, "other": NOT_FOUND},
}
LIST = {
    "domain admin": {"ws1", "ws2", "star"},
    "workspace owner": {"ws1", "star"},
    "workspace member": {"ws1", "star"},
    "system, domain": {"ws1", "ws2", "star"},
    "system, workspace": {"ws1", "star"},
}
