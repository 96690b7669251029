"""Query conditions -> MongoDB filter documents. Pure functions, one per operator, in a table.

A condition is ``{key|k, value|v, operator|o}`` as a client sends it (protobuf ``Filter`` turned
into a dict). Every key is checked against the schema, every value against the key's type and the
operator's shape; the only ``$``-operators in the output are the ones written here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import regex

from spaceone_job.errors import Code, ServiceError, required, shown
from spaceone_job.query import schema
from spaceone_job.query.schema import Schema
from spaceone_job.store.model import Field, Kind

Clause = dict[str, Any]
# A clause that no document satisfies, in standard MongoDB.
MATCH_NOTHING: Clause = {"_id": {"$in": []}}


@dataclass(frozen=True)
class Limits:
    """The bounds a query must stay within (from Settings)."""

    max_page_limit: int = 1000
    max_in_list: int = 1000
    max_regex_length: int = 256
    max_stat_stages: int = 32


@dataclass(frozen=True)
class Context:
    """What compiling one request needs besides the request: the schema, bounds and time."""

    schema: Schema
    limits: Limits
    now: datetime


@dataclass(frozen=True)
class Condition:
    """One parsed condition: the field, the raw value, and where it came from in the request."""

    field: Field
    value: Any
    where: str
    operator: str


Build = Callable[[Condition, "Context"], Clause]


@dataclass(frozen=True)
class Operator:
    """What an operator accepts and how it compiles."""

    kinds: frozenset[Kind]
    shape: str  # "scalar", "list", "dict" or "bool"
    build: Build


_COMPARABLE = frozenset({Kind.STRING, Kind.INT, Kind.DATETIME, Kind.ANY})
_TEXT = frozenset({Kind.STRING, Kind.ANY})
_TIME = frozenset({Kind.DATETIME, Kind.ANY})
_ANY_KIND = frozenset(Kind)


def _value(c: Condition) -> Any:
    return schema.coerce(c.field, c.value, c.where)


def _needs_value(c: Condition) -> Any:
    if c.value is None:
        raise ServiceError(
            Code.INVALID_PARAMETER, f"The {c.operator} operator needs a value.", key=c.where
        )
    return _value(c)


def _text(c: Condition, value: Any, limits: Limits, *, pattern: bool = False) -> str:
    if not isinstance(value, str):
        raise ServiceError(
            Code.INVALID_PARAMETER_TYPE,
            f"The {c.operator} operator takes text; {shown(value)} is not text.",
            key=c.where,
        )
    if pattern:
        if len(value) > limits.max_regex_length:
            raise ServiceError(
                Code.INVALID_PARAMETER,
                f"A regex pattern is at most {limits.max_regex_length} characters.",
                key=c.where,
            )
        try:
            # The engine the embedded store runs patterns with; MongoDB's PCRE refuses what
            # it cannot compile itself, and that refusal is the caller's error too.
            regex.compile(value)
        except (regex.error, OverflowError, ValueError, RecursionError) as exc:
            raise ServiceError(
                Code.INVALID_PARAMETER, f"Invalid regex {shown(value)}: {exc}.", key=c.where
            ) from exc
    return value


def capped(values: Sequence[Any], limits: Limits, where: str) -> list[Any]:
    """``values`` as a list, refused when longer than the ``max_in_list`` setting."""
    if len(values) > limits.max_in_list:
        raise ServiceError(
            Code.INVALID_PARAMETER,
            f"A list holds at most {limits.max_in_list} values; got {len(values)}.",
            key=where,
        )
    return list(values)


def _items(c: Condition, limits: Limits) -> list[Any]:
    return capped(c.value, limits, c.where)


def _literal(c: Condition, limits: Limits) -> list[str]:
    return [re.escape(_text(c, v, limits)) for v in _items(c, limits)]


def _patterns(c: Condition, limits: Limits) -> list[str]:
    return [_text(c, v, limits, pattern=True) for v in _items(c, limits)]


def _any_of(path: str, patterns: Sequence[str]) -> Clause:
    if not patterns:
        return MATCH_NOTHING
    return {"$or": [{path: {"$regex": p, "$options": "i"}} for p in patterns]}


def _none_of(path: str, patterns: Sequence[str]) -> Clause:
    # Also matches documents where the field is missing or null, as upstream's not_contain.
    return {"$nor": [{path: {"$regex": p, "$options": "i"}} for p in patterns]} if patterns else {}


def _compare(mongo_op: str) -> Build:
    def build(c: Condition, ctx: Context) -> Clause:
        return {c.field.path: {mongo_op: _needs_value(c)}}

    return build


def _eq(c: Condition, ctx: Context) -> Clause:
    return {c.field.path: {"$eq": _value(c)}}


def _not(c: Condition, ctx: Context) -> Clause:
    return {c.field.path: {"$ne": _value(c)}}


def _exists(c: Condition, ctx: Context) -> Clause:
    return {c.field.path: {"$exists": c.value}}


def _in(mongo_op: str) -> Build:
    def build(c: Condition, ctx: Context) -> Clause:
        values = [
            schema.coerce(c.field, v, f"{c.where}.value[{i}]")
            for i, v in enumerate(_items(c, ctx.limits))
        ]
        return {c.field.path: {mongo_op: values}}

    return build


def _contain(c: Condition, ctx: Context) -> Clause:
    return {c.field.path: {"$regex": re.escape(_text(c, c.value, ctx.limits)), "$options": "i"}}


def _not_contain(c: Condition, ctx: Context) -> Clause:
    return _none_of(c.field.path, [re.escape(_text(c, c.value, ctx.limits))])


def _contain_in(c: Condition, ctx: Context) -> Clause:
    return _any_of(c.field.path, _literal(c, ctx.limits))


def _not_contain_in(c: Condition, ctx: Context) -> Clause:
    # Contains none of the values (upstream excluded only documents containing all of them).
    return _none_of(c.field.path, _literal(c, ctx.limits))


def _regex(c: Condition, ctx: Context) -> Clause:
    return {c.field.path: {"$regex": _text(c, c.value, ctx.limits, pattern=True), "$options": "i"}}


def _regex_in(c: Condition, ctx: Context) -> Clause:
    return _any_of(c.field.path, _patterns(c, ctx.limits))


def _datetime(mongo_op: str) -> Build:
    def build(c: Condition, ctx: Context) -> Clause:
        text = _text(c, c.value, ctx.limits)
        try:
            moment = schema.parse_datetime(text)
        except ValueError as exc:
            raise ServiceError(
                Code.INVALID_PARAMETER,
                f"The {c.operator} operator needs an ISO 8601 date-time; got {shown(text)}.",
                key=c.where,
            ) from exc
        return {c.field.path: {mongo_op: moment}}

    return build


_TIMEDIFF = re.compile(
    r"^\s?now(?:/(?P<base>[dwm]))?\s?(?:(?P<sign>[+-])\s?(?P<n>\d{1,9})(?P<unit>[smhdw]))?\s?$"
)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def resolve_timediff(text: str, now: datetime) -> datetime:
    """``now``, ``now/d``, ``now/w``, ``now/m`` with an optional ``±N(s|m|h|d|w)`` offset."""
    found = _TIMEDIFF.match(text)
    if found is None:
        raise ValueError(text)
    base = now
    if found["base"]:
        base = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if found["base"] == "w":
            base -= timedelta(days=base.weekday())
        elif found["base"] == "m":
            base = base.replace(day=1)
    if found["sign"]:
        offset = timedelta(seconds=int(found["n"]) * _UNIT_SECONDS[found["unit"]])
        base = base + offset if found["sign"] == "+" else base - offset
    return schema.stored_precision(base)


def _timediff(mongo_op: str) -> Build:
    def build(c: Condition, ctx: Context) -> Clause:
        text = _text(c, c.value, ctx.limits)
        try:
            moment = resolve_timediff(text, ctx.now)
        except (ValueError, OverflowError) as exc:
            raise ServiceError(
                Code.INVALID_PARAMETER,
                f"The {c.operator} operator takes now, now/d, now/w or now/m with an optional"
                f" offset such as -7d; got {shown(text)}.",
                key=c.where,
            ) from exc
        return {c.field.path: {mongo_op: moment}}

    return build


# Operators allowed inside ``match``: our names and their MongoDB spellings.
_MATCH_OPERATORS = {
    "eq": "$eq",
    "not": "$ne",
    "lt": "$lt",
    "lte": "$lte",
    "gt": "$gt",
    "gte": "$gte",
    "in": "$in",
    "not_in": "$nin",
    "exists": "$exists",
}
_MATCH_OPERATORS |= {mongo: mongo for mongo in list(_MATCH_OPERATORS.values())}


def _match(c: Condition, ctx: Context) -> Clause:
    element: Clause = {}
    for sub_path, spec in c.value.items():
        where = f"{c.where}.value.{sub_path}"
        sub = ctx.schema.sub_field(c.field, sub_path, where)
        tests = spec if isinstance(spec, dict) else {"$eq": spec}
        compiled: Clause = {}
        for name, operand in tests.items():
            mongo_op = _MATCH_OPERATORS.get(name)
            if mongo_op is None:
                raise _unsupported(name, where, sorted(_MATCH_OPERATORS))
            if mongo_op == "$exists":
                if not isinstance(operand, bool):
                    raise _shape_error("bool", "exists", where)
                compiled[mongo_op] = operand
            elif mongo_op in ("$in", "$nin"):
                if not isinstance(operand, list):
                    raise _shape_error("list", name, where)
                items = capped(operand, ctx.limits, where)
                compiled[mongo_op] = [schema.coerce(sub, v, where) for v in items]
            else:
                compiled[mongo_op] = schema.coerce(sub, operand, where)
        element[sub_path] = compiled
    return {c.field.path: {"$elemMatch": element}}


OPERATORS: Mapping[str, Operator] = {
    "eq": Operator(_COMPARABLE | {Kind.OBJECT}, "scalar", _eq),
    "not": Operator(_COMPARABLE | {Kind.OBJECT}, "scalar", _not),
    "lt": Operator(_COMPARABLE, "scalar", _compare("$lt")),
    "lte": Operator(_COMPARABLE, "scalar", _compare("$lte")),
    "gt": Operator(_COMPARABLE, "scalar", _compare("$gt")),
    "gte": Operator(_COMPARABLE, "scalar", _compare("$gte")),
    "exists": Operator(_ANY_KIND, "bool", _exists),
    "contain": Operator(_TEXT, "scalar", _contain),
    "not_contain": Operator(_TEXT, "scalar", _not_contain),
    "in": Operator(_COMPARABLE, "list", _in("$in")),
    "not_in": Operator(_COMPARABLE, "list", _in("$nin")),
    "contain_in": Operator(_TEXT, "list", _contain_in),
    "not_contain_in": Operator(_TEXT, "list", _not_contain_in),
    "match": Operator(frozenset({Kind.ARRAY}), "dict", _match),
    "regex": Operator(_TEXT, "scalar", _regex),
    "regex_in": Operator(_TEXT, "list", _regex_in),
    "datetime_lt": Operator(_TIME, "scalar", _datetime("$lt")),
    "datetime_lte": Operator(_TIME, "scalar", _datetime("$lte")),
    "datetime_gt": Operator(_TIME, "scalar", _datetime("$gt")),
    "datetime_gte": Operator(_TIME, "scalar", _datetime("$gte")),
    "timediff_lt": Operator(_TIME, "scalar", _timediff("$lt")),
    "timediff_lte": Operator(_TIME, "scalar", _timediff("$lte")),
    "timediff_gt": Operator(_TIME, "scalar", _timediff("$gt")),
    "timediff_gte": Operator(_TIME, "scalar", _timediff("$gte")),
}

_SHAPE_ERRORS = {
    "list": (Code.OPERATOR_LIST_VALUE_TYPE, "must be a list"),
    "dict": (Code.OPERATOR_DICT_VALUE_TYPE, "must be an object"),
    "bool": (Code.OPERATOR_BOOLEAN_TYPE, "must be true or false"),
    "scalar": (Code.OPERATOR_VALUE_TYPE, "cannot be a list"),
}


def _shape_error(shape: str, operator: str, where: str) -> ServiceError:
    code, rule = _SHAPE_ERRORS[shape]
    return ServiceError(code, f"The value of the {operator} operator {rule}.", key=where)


def _unsupported(operator: str, where: str, names: Sequence[str]) -> ServiceError:
    return ServiceError(
        Code.OPERATOR_NOT_SUPPORTED,
        f"Operator {shown(operator)} is not supported; use one of {', '.join(names)}.",
        key=where,
    )


def _shape_ok(shape: str, value: Any) -> bool:
    if shape == "list":
        return isinstance(value, list)
    if shape == "dict":
        return isinstance(value, dict)
    if shape == "bool":
        return isinstance(value, bool)
    return not isinstance(value, list)


def pick(raw: Mapping[str, Any], long: str, short: str) -> Any:
    """A part sent under its long or its one-letter name (``key`` or ``k``)."""
    return raw[long] if long in raw else raw.get(short)


def condition(raw: Mapping[str, Any], where: str, ctx: Context) -> Clause:
    """One client condition -> one MongoDB clause."""
    if not isinstance(raw, Mapping):
        raise ServiceError(Code.INVALID_PARAMETER_TYPE, "A condition is an object.", key=where)
    key = pick(raw, "key", "k")
    if not key:
        raise required(f"{where}.key")
    name = pick(raw, "operator", "o")
    if not name:
        raise required(f"{where}.operator")
    operator = OPERATORS.get(name)
    if operator is None:
        raise _unsupported(name, f"{where}.operator", list(OPERATORS))
    value = pick(raw, "value", "v")
    field = ctx.schema.lookup(key, f"{where}.key")
    if field.kind not in operator.kinds:
        raise ServiceError(
            Code.INVALID_PARAMETER,
            f"The {name} operator does not apply to {field.path}, which holds"
            f" {field.kind.value} values.",
            key=where,
        )
    if not _shape_ok(operator.shape, value):
        raise _shape_error(operator.shape, name, f"{where}.value")
    return operator.build(Condition(field, value, f"{where}.value", name), ctx)


def conditions(raws: Sequence[Mapping[str, Any]], where: str, ctx: Context) -> list[Clause]:
    """Each condition of a list, compiled."""
    return [condition(raw, f"{where}[{i}]", ctx) for i, raw in enumerate(raws)]


def keyword_clause(keyword: str, ctx: Context) -> Clause | None:
    """The ``keyword`` search: any word is a case-insensitive substring of the schema's keyword
    field (``job_id``, ``job_task_id``)."""
    words = capped(keyword.split(), ctx.limits, "query.keyword")
    return _any_of(ctx.schema.kind.key, [re.escape(w) for w in words]) if words else None


def combine(
    scope: Sequence[Clause],
    query: Mapping[str, Any],
    ctx: Context,
    extra: Sequence[Clause] = (),
) -> Clause:
    """Scope AND shortcut clauses AND every ``filter`` AND any of ``filter_or`` AND keyword.

    The tenant scope comes first and is always present; nothing in ``query`` can widen it.
    """
    clauses = [*scope, *extra, *conditions(query.get("filter", []), "query.filter", ctx)]
    either = conditions(query.get("filter_or", []), "query.filter_or", ctx)
    if either:
        clauses.append({"$or": either})
    keyword = query.get("keyword")
    if keyword is not None:
        if not isinstance(keyword, str):
            raise ServiceError(Code.INVALID_PARAMETER_TYPE, "keyword is text.", key="keyword")
        found = keyword_clause(keyword, ctx)
        if found is not None:
            clauses.append(found)
    return {"$and": [c for c in clauses if c]}
