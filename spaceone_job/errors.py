"""The one place where errors are defined and put on the wire.

Every failure the service reports is a :class:`ServiceError` carrying an ``ERROR_*`` code. The code
decides the gRPC status (``STATUS_BY_CODE``); the details string is ``"<CODE>: <message>"``, which
SpaceONE clients parse, and a ``google.rpc.Status`` with an ``ErrorInfo`` rides along for clients
that read rich errors. Anything else that escapes is logged with an incident id and answered
INTERNAL ``ERROR_UNKNOWN``; no traceback or internal text ever reaches the caller.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from spaceone_job.store.documents import OutOfTime, TooManyRows, Unreachable

LOG = logging.getLogger(__name__)

ERROR_DOMAIN = "spaceone-job"


class Code(enum.StrEnum):
    """Every ``ERROR_*`` code the service answers with; the value is the wire text."""

    REQUIRED_PARAMETER = "ERROR_REQUIRED_PARAMETER"
    # An HTTP request that is no request at all: not JSON, not an object, not the message.
    INVALID_ARGUMENT = "ERROR_INVALID_ARGUMENT"
    INVALID_PARAMETER = "ERROR_INVALID_PARAMETER"
    INVALID_PARAMETER_TYPE = "ERROR_INVALID_PARAMETER_TYPE"
    OPERATOR_NOT_SUPPORTED = "ERROR_OPERATOR_NOT_SUPPORTED"
    OPERATOR_VALUE_TYPE = "ERROR_OPERATOR_VALUE_TYPE"
    OPERATOR_LIST_VALUE_TYPE = "ERROR_OPERATOR_LIST_VALUE_TYPE"
    OPERATOR_DICT_VALUE_TYPE = "ERROR_OPERATOR_DICT_VALUE_TYPE"
    OPERATOR_BOOLEAN_TYPE = "ERROR_OPERATOR_BOOLEAN_TYPE"
    REQUIRED_X_DOMAIN_ID = "ERROR_REQUIRED_X_DOMAIN_ID"
    NOT_FOUND = "ERROR_NOT_FOUND"
    JOB_STATE = "ERROR_JOB_STATE"
    # A producer's request id sent again with a different request.
    REQUEST_ID_REUSED = "ERROR_REQUEST_ID_REUSED"
    RESUME_TOO_OLD = "ERROR_RESUME_TOO_OLD"
    # A task took all the reports it may (start and progress).
    TOO_MANY_REPORTS = "ERROR_TOO_MANY_REPORTS"
    # Other writers kept changing a task in between; retryable.
    CONCURRENT_CHANGE = "ERROR_CONCURRENT_CHANGE"
    AUTHENTICATE_FAILURE = "ERROR_AUTHENTICATE_FAILURE"
    PERMISSION_DENIED = "ERROR_PERMISSION_DENIED"
    TOO_MANY_REQUESTS = "ERROR_TOO_MANY_REQUESTS"
    # Retryable: a client's retry policy moves the call to another replica.
    SERVER_STOPPING = "ERROR_SERVER_STOPPING"
    DB_UNAVAILABLE = "ERROR_DB_UNAVAILABLE"
    IDENTITY_UNAVAILABLE = "ERROR_IDENTITY_UNAVAILABLE"
    REQUEST_TIMEOUT = "ERROR_REQUEST_TIMEOUT"
    UNKNOWN = "ERROR_UNKNOWN"


_C = grpc.StatusCode
STATUS_BY_CODE: Mapping[Code, grpc.StatusCode] = {
    Code.REQUIRED_PARAMETER: _C.INVALID_ARGUMENT,
    Code.INVALID_ARGUMENT: _C.INVALID_ARGUMENT,
    Code.INVALID_PARAMETER: _C.INVALID_ARGUMENT,
    Code.INVALID_PARAMETER_TYPE: _C.INVALID_ARGUMENT,
    Code.OPERATOR_NOT_SUPPORTED: _C.INVALID_ARGUMENT,
    Code.OPERATOR_VALUE_TYPE: _C.INVALID_ARGUMENT,
    Code.OPERATOR_LIST_VALUE_TYPE: _C.INVALID_ARGUMENT,
    Code.OPERATOR_DICT_VALUE_TYPE: _C.INVALID_ARGUMENT,
    Code.OPERATOR_BOOLEAN_TYPE: _C.INVALID_ARGUMENT,
    Code.REQUIRED_X_DOMAIN_ID: _C.INVALID_ARGUMENT,
    Code.NOT_FOUND: _C.NOT_FOUND,
    Code.JOB_STATE: _C.FAILED_PRECONDITION,
    Code.REQUEST_ID_REUSED: _C.FAILED_PRECONDITION,
    Code.RESUME_TOO_OLD: _C.FAILED_PRECONDITION,
    Code.TOO_MANY_REPORTS: _C.FAILED_PRECONDITION,
    Code.CONCURRENT_CHANGE: _C.ABORTED,
    Code.AUTHENTICATE_FAILURE: _C.UNAUTHENTICATED,
    Code.PERMISSION_DENIED: _C.PERMISSION_DENIED,
    Code.TOO_MANY_REQUESTS: _C.RESOURCE_EXHAUSTED,
    Code.SERVER_STOPPING: _C.UNAVAILABLE,
    Code.DB_UNAVAILABLE: _C.UNAVAILABLE,
    Code.IDENTITY_UNAVAILABLE: _C.UNAVAILABLE,
    Code.REQUEST_TIMEOUT: _C.DEADLINE_EXCEEDED,
    Code.UNKNOWN: _C.INTERNAL,
}


# Caller values echoed in an error are cut to this many characters: a client must never see its
# own 16 KB value come back in trailers too large to deliver.
SHOWN_CHARS = 100
MESSAGE_CHARS = 1000


def shown(value: Any) -> str:
    """A caller's value as an error quotes it: its repr, cut to ``SHOWN_CHARS``."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text)} chars)"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class ServiceError(Exception):
    """A failure with an ``ERROR_*`` code, a sentence, and the parameters that explain it.

    The parameters are shown after the sentence as ``(key = value, ...)``, upstream's suffix, and
    are repeated in the ``ErrorInfo`` metadata.
    """

    def __init__(self, code: Code, sentence: str, **params: Any) -> None:
        self.code = code
        self.params = {key: _cut(str(value), SHOWN_CHARS) for key, value in params.items()}
        suffix = ", ".join(f"{key} = {value}" for key, value in self.params.items())
        self.message = _cut(f"{sentence} ({suffix})" if suffix else sentence, MESSAGE_CHARS)
        super().__init__(f"{code}: {self.message}")

    @property
    def status_code(self) -> grpc.StatusCode:
        """The gRPC status this error is answered with."""
        return STATUS_BY_CODE[self.code]

    @property
    def details(self) -> str:
        """The details string clients parse: ``"<CODE>: <message>"``."""
        return f"{self.code}: {self.message}"

    def to_status(self) -> grpc.Status:
        """The gRPC status with a ``google.rpc.Status``/``ErrorInfo`` attached."""
        info = error_details_pb2.ErrorInfo(
            reason=self.code.removeprefix("ERROR_"), domain=ERROR_DOMAIN, metadata=self.params
        )
        detail = any_pb2.Any()
        detail.Pack(info)
        rich = status_pb2.Status(
            code=self.status_code.value[0], message=self.details, details=[detail]
        )
        return rpc_status.to_status(rich)


def required(key: str) -> ServiceError:
    """A required parameter is missing or empty."""
    return ServiceError(Code.REQUIRED_PARAMETER, "A required parameter is missing.", key=key)


def invalid(key: str, reason: str) -> ServiceError:
    """A parameter is present but its value is not acceptable."""
    return ServiceError(Code.INVALID_PARAMETER, f"Invalid parameter: {reason}", key=key)


def request_timeout() -> ServiceError:
    """The call's time (its query limit, or its client's deadline) ran out."""
    return ServiceError(Code.REQUEST_TIMEOUT, "The query ran out of time.")


def unexpected(exc: BaseException) -> ServiceError:
    """Log an unexpected exception with its traceback and return what the caller may see."""
    incident = uuid.uuid4().hex[:12]
    LOG.error("incident %s: unexpected %s", incident, type(exc).__name__, exc_info=exc)
    return ServiceError(
        Code.UNKNOWN, "An unexpected error occurred; quote the incident id.", incident=incident
    )


def _unreachable(exc: BaseException) -> ServiceError:
    return ServiceError(Code.DB_UNAVAILABLE, "The database is unreachable; try again later.")


def _too_many_rows(exc: BaseException) -> ServiceError:
    assert isinstance(exc, TooManyRows)
    return ServiceError(
        Code.INVALID_PARAMETER,
        f"An {exc.stage} would produce more than {exc.limit} rows; narrow the query.",
        key=exc.stage,
    )


# The store's own failures as the caller hears of them.
_FROM_STORE: Mapping[type[BaseException], Callable[[BaseException], ServiceError]] = {
    Unreachable: _unreachable,
    OutOfTime: lambda exc: request_timeout(),
    TooManyRows: _too_many_rows,
}


def as_service_error(exc: BaseException) -> ServiceError:
    """The :class:`ServiceError` a caller is answered with for any exception."""
    if isinstance(exc, ServiceError):
        return exc
    translate = _FROM_STORE.get(type(exc))
    return translate(exc) if translate is not None else unexpected(exc)


def status_of(
    error: ServiceError, trailing_metadata: tuple[tuple[str, str], ...] = ()
) -> tuple[grpc.StatusCode, str, tuple[tuple[str, Any], ...]]:
    """The status code, details and trailers (``trailing_metadata`` and the rich status) a
    call refused with ``error`` ends with."""
    status = error.to_status()
    return status.code, status.details, (*trailing_metadata, *status.trailing_metadata)


async def abort(
    context: grpc.aio.ServicerContext,
    error: ServiceError,
    trailing_metadata: tuple[tuple[str, str], ...] = (),
) -> NoReturn:
    """End the call with the status for ``error`` (and any other trailing metadata): the one
    way a gRPC call of the server is refused."""
    code, details, trailers = status_of(error, trailing_metadata)
    await context.abort(code, details, trailers)
    raise AssertionError("abort returned")  # pragma: no cover
