"""grpcio-testing's side of the servicers: its in-process server calls plain functions of
``(request, context)``, which here run the same call body as the real server
(:meth:`~spaceone_job.api.servicer.Rpc.answer`) and end as it does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from spaceone_job import errors
from spaceone_job.api.servicer import Rpc, Servicer, countdown


class Blocking:
    """``servicer``'s RPCs as grpcio-testing calls them."""

    def __init__(self, servicer: Servicer) -> None:
        for rpc_ in vars(type(servicer)).values():
            if isinstance(rpc_, Rpc):
                setattr(self, rpc_.name, _handler(servicer, rpc_))


def _handler(servicer: Servicer, rpc_: Rpc[Any, Any]) -> Callable[[Any, Any], Any]:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        metadata = tuple(context.invocation_metadata())
        outcome = rpc_.answer(servicer, request, metadata, countdown(context))
        trailers: tuple[tuple[str, Any], ...] = outcome.trailing_metadata
        if outcome.error is not None:
            code, details, trailers = errors.status_of(outcome.error, trailers)
            context.set_trailing_metadata(trailers)
            context.abort(code, details)
        context.set_trailing_metadata(trailers)
        return outcome.response

    return handle
