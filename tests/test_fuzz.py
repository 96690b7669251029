"""Property-based fuzzing through the real servicer.

Any ``JobQuery``, ``JobStatQuery`` or ``JobRequest`` — arbitrary Values, deep Structs, long lists,
unicode, ``$``-prefixed keys and names — is answered OK or with a caller-error status carrying an
``ERROR_*`` code, never INTERNAL; and every filter or pipeline that reaches the store carries the
caller's tenant condition first. ``make fuzz`` runs the same properties with far more examples.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import jwt
import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spaceone.api.cost_analysis.v1 import job_pb2

from spaceone_job import auth, kinds
from spaceone_job.query.filters import OPERATORS
from spaceone_job.query.stat import GROUP_OPERATORS, PROJECT_OPERATORS
from spaceone_job.store.protocol import Store

from .conftest import D1, D2, WS1, InProcess, Token

pytestmark = pytest.mark.only_on(
    "embedded",
    why="hypothesis fuzzing of the request parsers; the doubled query tests cover both stores",
)


FUZZ = os.environ.get("HYPOTHESIS_PROFILE") == "fuzz"
# Default suite: 250 + 250 + 100 + 100 examples; make fuzz: 4,000 + 4,000 + 1,000 + 1,000.
LIST_EXAMPLES, STAT_EXAMPLES, REQUEST_EXAMPLES, TOKEN_EXAMPLES = (
    (4000, 4000, 1000, 1000) if FUZZ else (250, 250, 100, 100)
)
CALLER_ERRORS = {
    grpc.StatusCode.OK,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def fuzz_settings(examples: int) -> settings:
    """Hypothesis settings of a fuzz test: no deadline, one store shared by the examples."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


text = st.text(max_size=40)
known_names = st.sampled_from(
    [
        *kinds.JOB.shown,
        "changed.start",
        "changed.filter",
        "changed.filter.region",
        "options.sync_mode",
        "synced_accounts.account_id",
    ]
)
names = st.one_of(
    known_names,
    known_names,
    known_names,
    text,
    text.map(lambda s: "$" + s),
    st.sampled_from(
        ["$where", "$function", "_id", "options.$where", "changed.filter.$gt", "a..b", "", "x"]
    ),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(),  # NaN and infinity included
    st.integers(-(2**53), 2**53),
    text,
    st.sampled_from(
        [
            "2024-05-01",
            "2024-05-01T10:00:00Z",
            "0001-01-01T00:00:00+05:00",
            "9999-12-31T23:59:59-14:00",
            "now-1d",
            "now/m+2h",
            "now+999999999w",
            "SUCCESS",
            "(",
            ".*",
            "(a|aa)+$",
            "(.*.*)*z",
            "a{4294967296}",
            "_id",
        ]
    ),
    # Long word lists (keyword) and long values (echoed in errors).
    st.integers(1, 3000).map(lambda n: " ".join(f"w{i}" for i in range(n))),
    st.integers(1, 20_000).map(lambda n: "x" * n),
)
operator_documents = st.sampled_from(
    [
        {"$ne": None},
        {"$gt": ""},
        {"$in": ["a", None]},
        {"$exists": True},
        {"$regex": "a" * 300, "$options": "s"},
        {"$where": "1"},
        {"$expr": {"$eq": [1, 1]}},
        {"$function": {"body": "f", "args": [], "lang": "js"}},
    ]
)
values = st.recursive(
    st.one_of(scalars, operator_documents),
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(names, inner, max_size=4)),
    max_leaves=20,
)
known_operators = st.sampled_from(sorted(OPERATORS))
operators = st.one_of(known_operators, known_operators, known_operators, text, st.just("$where"))


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, Any]:
    condition: dict[str, Any] = {}
    mostly = st.integers(0, 5).map(bool)
    if draw(mostly):
        condition[draw(st.sampled_from(["key", "k"]))] = draw(names)
    if draw(mostly):
        condition[draw(st.sampled_from(["value", "v"]))] = draw(values)
    if draw(mostly):
        condition[draw(st.sampled_from(["operator", "o"]))] = draw(operators)
    return condition


well_formed_conditions = st.fixed_dictionaries(
    {"k": known_names, "o": known_operators, "v": st.one_of(scalars, st.lists(scalars, max_size=4))}
)
any_conditions = st.one_of(conditions(), well_formed_conditions, well_formed_conditions)
pages = st.fixed_dictionaries(
    {}, optional={"start": st.integers(0, 2**32 - 1), "limit": st.integers(0, 2**32 - 1)}
)
queries = st.fixed_dictionaries(
    {},
    optional={
        "filter": st.lists(any_conditions, max_size=4),
        "filter_or": st.lists(any_conditions, max_size=3),
        "sort": st.lists(
            st.fixed_dictionaries({"key": names}, optional={"desc": st.booleans()}), max_size=3
        ),
        "page": pages,
        "minimal": st.booleans(),
        "count_only": st.booleans(),
        "only": st.lists(names, max_size=4),
        "keyword": text,
        "unwind": st.fixed_dictionaries(
            {"path": names}, optional={"filter": st.lists(conditions(), max_size=2)}
        ),
        "lookup": st.lists(st.dictionaries(names, values, max_size=3), max_size=2),
        "add_fields": st.dictionaries(names, values, max_size=3),
    },
)
job_queries = st.fixed_dictionaries(
    {"query": queries},
    optional={
        "job_id": text,
        "status": st.sampled_from(["SCOPE_NONE", "IN_PROGRESS", "SUCCESS", "CANCELED"]),
        "workspace_id": st.one_of(text, st.just("*")),
        "data_source_id": text,
    },
)
key_value = st.fixed_dictionaries(
    {},
    optional={
        "key": names,
        "name": names,
        "date_format": st.one_of(text, st.sampled_from(["year", "month", "%Y-%m", "%Q"])),
    },
)
group_fields = st.fixed_dictionaries(
    {},
    optional={
        "key": names,
        "name": names,
        "operator": st.one_of(
            st.sampled_from(sorted(GROUP_OPERATORS)), st.sampled_from(sorted(GROUP_OPERATORS)), text
        ),
        "fields": st.lists(
            st.fixed_dictionaries({}, optional={"key": names, "name": names}), max_size=2
        ),
        "conditions": st.lists(conditions(), max_size=2),
    },
)
project_fields = st.fixed_dictionaries(
    {},
    optional={
        "key": names,
        "name": names,
        "operator": st.one_of(st.sampled_from(sorted(PROJECT_OPERATORS)), text),
    },
)
stages = st.one_of(
    st.fixed_dictionaries(
        {
            "unwind": st.fixed_dictionaries(
                {}, optional={"path": names, "filter": st.lists(conditions(), max_size=2)}
            )
        }
    ),
    st.fixed_dictionaries(
        {
            "group": st.fixed_dictionaries(
                {},
                optional={
                    "keys": st.lists(key_value, max_size=3),
                    "fields": st.lists(group_fields, max_size=3),
                },
            )
        }
    ),
    st.fixed_dictionaries({"count": st.fixed_dictionaries({}, optional={"name": names})}),
    st.fixed_dictionaries({"sort": st.lists(values, max_size=3)}),
    st.fixed_dictionaries(
        {
            "project": st.fixed_dictionaries(
                {},
                optional={
                    "fields": st.lists(project_fields, max_size=3),
                    "exclude_keys": st.booleans(),
                },
            )
        }
    ),
    st.fixed_dictionaries({"limit": st.integers(-(2**31), 2**31 - 1)}),
    st.fixed_dictionaries({"skip": st.integers(-(2**31), 2**31 - 1)}),
)
safe_names = st.sampled_from(["status", "n", "total", "month", "items", "x", "_id"])
produced = st.one_of(safe_names, known_names)
well_formed_stages = st.one_of(
    st.fixed_dictionaries(
        {
            "unwind": st.fixed_dictionaries(
                {"path": st.sampled_from(["changed", "synced_accounts", "items"])}
            )
        }
    ),
    st.fixed_dictionaries(
        {
            "group": st.fixed_dictionaries(
                {
                    "keys": st.lists(
                        st.fixed_dictionaries(
                            {"key": produced, "name": safe_names},
                            optional={
                                "date_format": st.sampled_from(["year", "month", "day", "%Y-%m"])
                            },
                        ),
                        max_size=2,
                    ),
                    "fields": st.lists(
                        st.fixed_dictionaries(
                            {
                                "name": safe_names,
                                "operator": st.sampled_from(sorted(GROUP_OPERATORS)),
                            },
                            optional={
                                "key": produced,
                                "conditions": st.lists(
                                    st.fixed_dictionaries(
                                        {
                                            "key": produced,
                                            "operator": st.sampled_from(["eq", "not", "gt", "lt"]),
                                            "value": scalars,
                                        }
                                    ),
                                    max_size=2,
                                ),
                            },
                        ),
                        max_size=3,
                    ),
                }
            )
        }
    ),
    st.fixed_dictionaries(
        {
            "sort": st.lists(
                st.fixed_dictionaries({"key": produced}, optional={"desc": st.booleans()}),
                min_size=1,
                max_size=2,
            )
        }
    ),
    st.fixed_dictionaries(
        {
            "project": st.fixed_dictionaries(
                {
                    "fields": st.lists(
                        st.fixed_dictionaries(
                            {"key": produced, "name": safe_names},
                            optional={"operator": st.sampled_from(sorted(PROJECT_OPERATORS))},
                        ),
                        min_size=1,
                        max_size=3,
                    )
                },
                optional={"exclude_keys": st.booleans()},
            )
        }
    ),
    st.fixed_dictionaries({"count": st.fixed_dictionaries({"name": safe_names})}),
    st.fixed_dictionaries({"limit": st.integers(1, 5)}),
    st.fixed_dictionaries({"skip": st.integers(0, 5)}),
)
stat_queries = st.fixed_dictionaries(
    {"aggregate": st.lists(st.one_of(stages, well_formed_stages, well_formed_stages), max_size=6)},
    optional={
        "filter": st.lists(any_conditions, max_size=3),
        "filter_or": st.lists(any_conditions, max_size=2),
        "page": pages,
        "distinct": names,
        "keyword": text,
    },
)
ROLES = st.sampled_from([auth.DOMAIN_ADMIN, auth.WORKSPACE_OWNER, auth.WORKSPACE_MEMBER])


@pytest.fixture
def scoped(store: Store, add: Callable[..., dict[str, Any]]) -> Iterator[list[Any]]:
    """Jobs in two domains, and a record of every filter and pipeline the store is asked to run."""
    for i, (domain_id, workspace_id) in enumerate([(D1, WS1), (D1, "*"), (D2, WS1), (D1, "ws-x")]):
        add(
            job_id=f"job-{i:012x}",
            domain_id=domain_id,
            workspace_id=workspace_id,
            changed=[{"start": "2024-05", "filter": {"a": 1}}],
            synced_accounts=[{"account_id": "1"}],
        )
    seen: list[Any] = []
    for name in ("find_one", "find", "count", "page", "aggregate", "update_one"):
        original = getattr(store, name)

        def record(first: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            seen.append(first)
            return _original(first, *args, **kwargs)

        setattr(store, name, record)
    yield seen


def assert_scoped(seen: list[Any]) -> None:
    for asked in seen:
        match = asked[0]["$match"] if isinstance(asked, list) else asked
        if "$and" in match:
            assert match["$and"][0] == {"domain_id": D1}, match
        else:
            assert match.get("domain_id") == D1, match
    seen.clear()


def assert_caller_error_at_worst(answer: Any) -> None:
    assert answer.code in CALLER_ERRORS, answer.details
    if answer.code is not grpc.StatusCode.OK:
        assert answer.details.startswith("ERROR_"), answer.details
    else:
        assert D2 not in str(answer.response)


@fuzz_settings(LIST_EXAMPLES)
@given(request=job_queries, role=ROLES)
def test_any_list_request_is_answered_within_scope(
    api: InProcess, token: Token, scoped: list[Any], request: dict[str, Any], role: str
) -> None:
    message = json_format.ParseDict(request, job_pb2.JobQuery())
    assert_caller_error_at_worst(api.call("list", message, token(role)))
    assert_scoped(scoped)


@fuzz_settings(STAT_EXAMPLES)
@given(query=stat_queries, role=ROLES)
def test_any_stat_request_is_answered_within_scope(
    api: InProcess, token: Token, scoped: list[Any], query: dict[str, Any], role: str
) -> None:
    message = json_format.ParseDict({"query": query}, job_pb2.JobStatQuery())
    assert_caller_error_at_worst(api.call("stat", message, token(role)))
    assert_scoped(scoped)


@fuzz_settings(REQUEST_EXAMPLES)
@given(
    job_id=st.one_of(
        text,
        st.sampled_from([f"job-{i:012x}" for i in range(4)]),
        st.text(min_size=41, max_size=200),
    ),
    method=st.sampled_from(["get", "cancel"]),
    role=ROLES,
)
def test_any_job_request_is_answered_within_scope(
    api: InProcess, token: Token, scoped: list[Any], job_id: str, method: str, role: str
) -> None:
    answer = api.call(method, job_pb2.JobRequest(job_id=job_id), token(role))
    assert_caller_error_at_worst(answer)
    assert_scoped(scoped)


header_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    text,
    st.lists(text, max_size=2),
    st.sampled_from(["RS256", "ES256", "HS256", "none", "PS256", auth.DEV_KID]),
)
claim_values = st.one_of(
    header_values,
    st.floats(),
    st.dictionaries(text, text, max_size=2),
    st.sampled_from(["ACCESS_TOKEN", "SYSTEM_TOKEN", "REFRESH_TOKEN", "2.0", "*", D1, WS1]),
)
tokens = st.fixed_dictionaries(
    {
        "header": st.dictionaries(
            st.sampled_from(["alg", "kid", "typ", "jku", "x5u"]), header_values
        ),
        "claims": st.dictionaries(
            st.sampled_from(
                ["typ", "ver", "did", "wid", "rol", "exp", "nbf", "permissions", "injected_params"]
            ),
            claim_values,
        ),
        "signed": st.booleans(),
    }
)


@fuzz_settings(TOKEN_EXAMPLES)
@given(token_parts=tokens, method=st.sampled_from(["get", "cancel", "list"]))
def test_any_token_is_answered_with_an_error_code_never_internal(
    api: InProcess,
    dev_keys: auth.DevKeys,
    scoped: list[Any],
    token_parts: dict[str, Any],
    method: str,
) -> None:
    claims, header = token_parts["claims"], token_parts["header"]
    if token_parts["signed"]:
        # Signed by the real key: only the claims (and harmless header fields) can be wrong.
        safe_header = {k: v for k, v in header.items() if k not in ("alg", "kid")}
        encoded = jwt.encode(
            claims,
            dev_keys.private_key.read_bytes(),
            algorithm="RS256",
            headers={**safe_header, "kid": auth.DEV_KID},
        )
    else:
        parts = [json.dumps(header), json.dumps(claims), "signature"]
        encoded = ".".join(
            base64.urlsafe_b64encode(p.encode()).rstrip(b"=").decode() for p in parts
        )
    request: Any = job_pb2.JobQuery() if method == "list" else job_pb2.JobRequest(job_id="job-0")
    answer = api.call(method, request, encoded)
    assert_caller_error_at_worst(answer)
    assert_scoped(scoped)
