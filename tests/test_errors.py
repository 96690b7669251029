"""The error table: every code has its gRPC status, and the store's failures have their code."""

from __future__ import annotations

import grpc
import pytest

from spaceone_job.errors import STATUS_BY_CODE, Code, ServiceError, as_service_error
from spaceone_job.store.documents import OutOfTime, TooManyRows, Unreachable


def test_every_error_code_has_its_status_and_its_wire_text() -> None:
    assert set(STATUS_BY_CODE) == set(Code)
    for code in Code:
        error = ServiceError(code, "A sentence.")
        assert error.details == f"{code.value}: A sentence."
        assert error.to_status().code is STATUS_BY_CODE[code]


@pytest.mark.parametrize(
    ("failure", "code", "status"),
    [
        (Unreachable(), "ERROR_DB_UNAVAILABLE", grpc.StatusCode.UNAVAILABLE),
        (OutOfTime(), "ERROR_REQUEST_TIMEOUT", grpc.StatusCode.DEADLINE_EXCEEDED),
        (TooManyRows("unwind", 10), "ERROR_INVALID_PARAMETER", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_the_stores_own_failures_are_answered_with_their_codes(
    failure: Exception, code: str, status: grpc.StatusCode
) -> None:
    answered = as_service_error(failure)
    assert (answered.code, answered.status_code) == (code, status)
