"""``stat`` requests -> one MongoDB aggregation pipeline. Pure functions, one per stage/operator.

The request is the dict form of ``spaceone.api.core.v2.StatisticsQuery``. The compiler tracks
which names exist at each stage: the job's fields until the first ``group``/``project``/``count``,
then the names earlier stages produced; group keys live under ``_id`` until a ``project`` with
``exclude_keys`` lifts them out, exactly as upstream. Every caller-supplied name is checked
against that, every literal goes in ``$literal``, and the only operators are the ones written here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spaceone_job.errors import Code, ServiceError, invalid, required, shown
from spaceone_job.query import schema
from spaceone_job.query.filters import Clause, Context, Limits, combine, conditions, pick
from spaceone_job.query.listing import NAME, RESERVED_NAME, page_window
from spaceone_job.query.schema import Schema
from spaceone_job.store.model import Field, Kind

_DATE_PARTS = {"year": "$year", "month": "$month", "day": "$dayOfMonth"}
# The directives MongoDB and the embedded store render alike (%L, %w, %z and %Z differ).
_DATE_DIRECTIVES = "YmdHMSjUGVu"
_DATE_FORMAT = re.compile(rf"^(?:[^%]|%[{_DATE_DIRECTIVES}%])*$")
_CONDITION_OPERATORS = {
    "eq": "$eq",
    "not": "$ne",
    "gt": "$gt",
    "gte": "$gte",
    "lt": "$lt",
    "lte": "$lte",
}


@dataclass
class Names:
    """What a stage may refer to. ``kinds`` is None while the documents are still the
    schema's (jobs, job tasks)."""

    fields: Schema
    kinds: dict[str, Kind] | None = None
    group_keys: set[str] = field(default_factory=set)
    unwound: set[str] = field(default_factory=set)

    def ref(self, key: Any, where: str) -> tuple[str, Kind]:
        """``$path`` for ``key`` at this stage, and the kind of value it holds."""
        if not isinstance(key, str) or not key:
            raise required(where)
        if self.kinds is None:
            f = self.fields.lookup(key, where)
            kind = f.kind
            if f.in_array and not any(key.startswith(p + ".") for p in self.unwound):
                kind = Kind.ARRAY
            if key in self.unwound:
                kind = Kind.OBJECT
            return "$" + key, kind
        head, _, rest = key.partition(".")
        if head not in self.kinds or (rest and not all(NAME.match(s) for s in rest.split("."))):
            known = ", ".join(sorted(self.kinds)) or "none"
            raise invalid(
                where, f"{shown(key)} is not a name produced by an earlier stage ({known})."
            )
        prefix = "$_id." if head in self.group_keys else "$"
        return prefix + key, Kind.ANY if rest else self.kinds[head]


@dataclass(frozen=True)
class StatPlan:
    """The pipelines that answer one ``stat`` call and how to shape their rows."""

    pipeline: list[Clause]
    count_pipeline: list[Clause] | None
    distinct: bool
    # The request part each pipeline stage was compiled from (paging stages come after).
    origins: tuple[str, ...] = ()

    def part_refused(self, reason: str, stage: int | None) -> str:
        """The request part of the refused ``stage``, or else of the first stage that uses an
        operator the database's refusal names."""
        if stage is not None and stage < len(self.origins):
            return self.origins[stage]
        named = set(re.findall(r"\$[A-Za-z]+", reason))
        for compiled, origin in zip(self.pipeline, self.origins, strict=False):
            if named & _operators(compiled):
                return origin
        return "query.aggregate"

    def shape(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Rows as results: distinct values, or rows with the group keys lifted out of ``_id``."""
        if self.distinct:
            return [row["_id"] for row in rows]
        return [_flatten(row) for row in rows]


def _operators(value: Any) -> set[str]:
    if isinstance(value, Mapping):
        found = {key for key in value if key.startswith("$")}
        for item in value.values():
            found |= _operators(item)
        return found
    if isinstance(value, list):
        return set().union(*map(_operators, value)) if value else set()
    return set()


def _flatten(row: Mapping[str, Any]) -> dict[str, Any]:
    # A group's keys live in _id (a document); any other _id is a stored document's own, which
    # is no result.
    out = {key: value for key, value in row.items() if key != "_id"}
    key = row.get("_id")
    if isinstance(key, Mapping):
        out.update(key)
    return out


def _name(raw: Mapping[str, Any], where: str, taken: set[str]) -> str:
    name = pick(raw, "name", "n")
    if not name:
        raise required(f"{where}.name")
    if not isinstance(name, str) or not NAME.match(name):
        raise invalid(f"{where}.name", f"{shown(name)} is not a safe name (letters, digits, _).")
    if name == RESERVED_NAME:
        raise invalid(f"{where}.name", f"{RESERVED_NAME} is reserved; choose another name.")
    if name in taken:
        raise invalid(f"{where}.name", f"{shown(name)} is used twice in this stage.")
    taken.add(name)
    return name


def _literal(value: Any) -> Clause:
    return {"$literal": value}


def _condition(raw: Mapping[str, Any], names: Names, where: str) -> Clause:
    path, kind = names.ref(pick(raw, "key", "k"), f"{where}.key")
    operator = pick(raw, "operator", "o")
    mongo_op = _CONDITION_OPERATORS.get(operator or "")
    if mongo_op is None:
        raise ServiceError(
            Code.OPERATOR_NOT_SUPPORTED,
            f"Condition operator {shown(operator)} is not supported; use"
            f" {', '.join(_CONDITION_OPERATORS)}.",
            key=f"{where}.operator",
        )
    value = pick(raw, "value", "v")
    if value is None:
        raise required(f"{where}.value")
    if isinstance(value, list | dict):
        raise ServiceError(
            Code.OPERATOR_VALUE_TYPE,
            "A condition compares with one value.",
            key=f"{where}.value",
        )
    value = schema.literal(value, f"{where}.value")
    if names.kinds is None and kind in (Kind.STRING, Kind.INT, Kind.DATETIME):
        value = schema.coerce(Field(path[1:], kind), value, f"{where}.value")
    return {mongo_op: [path, _literal(value)]}


def _when(raw: Mapping[str, Any], names: Names, where: str) -> Clause | None:
    items = raw.get("conditions") or []
    if not items:
        return None
    return {"$and": [_condition(c, names, f"{where}.conditions[{i}]") for i, c in enumerate(items)]}


GroupBuild = Callable[[Mapping[str, Any], Names, str], tuple[Clause, Kind]]


def _keyed(raw: Mapping[str, Any], names: Names, where: str) -> tuple[str, Kind]:
    return names.ref(pick(raw, "key", "k"), f"{where}.key")


def _no_conditions(raw: Mapping[str, Any], where: str, operator: str) -> None:
    if raw.get("conditions"):
        raise invalid(f"{where}.conditions", f"the {operator} operator takes no conditions.")


def _count(raw: Mapping[str, Any], names: Names, where: str) -> tuple[Clause, Kind]:
    when = _when(raw, names, where)
    return {"$sum": 1 if when is None else {"$cond": [when, 1, 0]}}, Kind.INT


def _sum(raw: Mapping[str, Any], names: Names, where: str) -> tuple[Clause, Kind]:
    path, _ = _keyed(raw, names, where)
    when = _when(raw, names, where)
    return {"$sum": path if when is None else {"$cond": [when, path, 0]}}, Kind.ANY


def _average(raw: Mapping[str, Any], names: Names, where: str) -> tuple[Clause, Kind]:
    path, _ = _keyed(raw, names, where)
    when = _when(raw, names, where)
    # $avg skips nulls, so documents that fail the conditions are left out of the average.
    return {"$avg": path if when is None else {"$cond": [when, path, None]}}, Kind.ANY


def _accumulate(mongo_op: str, result: Kind | None, takes: Kind | None = None) -> GroupBuild:
    def build(raw: Mapping[str, Any], names: Names, where: str) -> tuple[Clause, Kind]:
        _no_conditions(raw, where, mongo_op[1:])
        path, kind = _keyed(raw, names, where)
        if takes is not None and kind not in (takes, Kind.ANY):
            raise invalid(
                f"{where}.key", f"{mongo_op[1:]} takes {takes.value}s; {path[1:]} is not."
            )
        return {mongo_op: path}, kind if result is None else result

    return build


def _push(raw: Mapping[str, Any], names: Names, where: str) -> tuple[Clause, Kind]:
    _no_conditions(raw, where, "push")
    sub_fields = raw.get("fields") or []
    if not sub_fields:
        if not pick(raw, "key", "k"):
            raise required(f"{where}.key")
        path, _ = _keyed(raw, names, where)
        return {"$push": path}, Kind.ARRAY
    taken: set[str] = set()
    item: Clause = {}
    for i, sub in enumerate(sub_fields):
        sub_where = f"{where}.fields[{i}]"
        item[_name(sub, sub_where, taken)] = names.ref(pick(sub, "key", "k"), f"{sub_where}.key")[0]
    return {"$push": item}, Kind.ARRAY


GROUP_OPERATORS: Mapping[str, GroupBuild] = {
    "count": _count,
    "sum": _sum,
    "average": _average,
    "max": _accumulate("$max", None),
    "min": _accumulate("$min", None),
    "first": _accumulate("$first", None),
    "last": _accumulate("$last", None),
    "push": _push,
    "add_to_set": _accumulate("$addToSet", Kind.ARRAY),
    "merge_objects": _accumulate("$mergeObjects", Kind.OBJECT, takes=Kind.OBJECT),
}


def _group_key(raw: Mapping[str, Any], names: Names, where: str) -> tuple[Any, Kind]:
    path, kind = names.ref(pick(raw, "key", "k"), f"{where}.key")
    date_format = raw.get("date_format")
    if not date_format:
        return path, kind
    if kind not in (Kind.DATETIME, Kind.ANY):
        raise invalid(f"{where}.date_format", f"{path[1:]} does not hold dates.")
    if date_format in _DATE_PARTS:
        return _unless_null(path, {_DATE_PARTS[date_format]: path}), Kind.INT
    if not isinstance(date_format, str) or not _DATE_FORMAT.match(date_format):
        raise invalid(
            f"{where}.date_format",
            "use year, month, day or a format of "
            + " ".join("%" + d for d in _DATE_DIRECTIVES)
            + " (and %% for a percent sign).",
        )
    return _unless_null(path, {"$dateToString": {"format": date_format, "date": path}}), Kind.STRING


def _unless_null(path: str, expression: Clause) -> Clause:
    # A null date (finished_at of a running job) groups under null, as in MongoDB; said
    # explicitly because mongomock fails on date operators over null.
    return {"$cond": [{"$ifNull": [path, False]}, expression, None]}


def _group(spec: Mapping[str, Any], names: Names, where: str) -> Clause:
    keys = spec.get("keys") or []
    fields = spec.get("fields") or []
    if not keys and not fields:
        raise required(f"{where}.keys || {where}.fields")
    taken: set[str] = set()
    key_rules: Clause = {}
    kinds: dict[str, Kind] = {}
    for i, raw in enumerate(keys):
        key_where = f"{where}.keys[{i}]"
        name = _name(raw, key_where, taken)
        key_rules[name], kinds[name] = _group_key(raw, names, key_where)
    stage: Clause = {"_id": key_rules or None}
    for i, raw in enumerate(fields):
        field_where = f"{where}.fields[{i}]"
        name = _name(raw, field_where, taken)
        operator = pick(raw, "operator", "o")
        build = GROUP_OPERATORS.get(operator or "")
        if build is None:
            raise ServiceError(
                Code.OPERATOR_NOT_SUPPORTED,
                f"Group operator {shown(operator)} is not supported;"
                f" use {', '.join(GROUP_OPERATORS)}.",
                key=f"{field_where}.operator",
            )
        stage[name], kinds[name] = build(raw, names, field_where)
    names.kinds = kinds
    names.group_keys = set(key_rules)
    names.unwound = set()
    return {"$group": stage}


ProjectBuild = Callable[[str, Kind, str], tuple[Any, Kind]]


def _size(path: str, kind: Kind, where: str) -> tuple[Any, Kind]:
    if kind not in (Kind.ARRAY, Kind.ANY):
        raise invalid(where, f"size counts the items of an array; {path[1:]} is not one.")
    return {"$size": {"$ifNull": [path, []]}}, Kind.INT


def _shaped(mongo_op: str, takes: Kind, gives: Kind) -> ProjectBuild:
    def build(path: str, kind: Kind, where: str) -> tuple[Any, Kind]:
        if kind not in (takes, Kind.ANY):
            raise invalid(where, f"{mongo_op[1:]} takes an {takes.value}; {path[1:]} is not one.")
        return {mongo_op: path}, gives

    return build


PROJECT_OPERATORS: Mapping[str, ProjectBuild] = {
    "size": _size,
    # The numbers of an array summed, a number itself, anything else 0 (MongoDB's $sum).
    "sum": lambda path, kind, where: ({"$sum": path}, Kind.ANY),
    "array_to_object": _shaped("$arrayToObject", Kind.ARRAY, Kind.OBJECT),
    "object_to_array": _shaped("$objectToArray", Kind.OBJECT, Kind.ARRAY),
}
_NEEDS_FIELDS = ("add", "subtract", "multiply", "divide")


def _project(spec: Mapping[str, Any], names: Names, where: str) -> Clause:
    fields = spec.get("fields") or []
    if not fields:
        raise required(f"{where}.fields")
    taken: set[str] = set()
    stage: Clause = {}
    kinds: dict[str, Kind] = {}
    for i, raw in enumerate(fields):
        field_where = f"{where}.fields[{i}]"
        name = _name(raw, field_where, taken)
        path, kind = names.ref(pick(raw, "key", "k"), f"{field_where}.key")
        operator = pick(raw, "operator", "o")
        if not operator:
            stage[name], kinds[name] = path, kind
            continue
        build = PROJECT_OPERATORS.get(operator)
        if build is None:
            hint = (
                " (it needs a fields list, which this API cannot carry)"
                if operator in _NEEDS_FIELDS
                else ""
            )
            raise ServiceError(
                Code.OPERATOR_NOT_SUPPORTED,
                f"Project operator {shown(operator)} is not supported{hint}; use"
                f" {', '.join(PROJECT_OPERATORS)}.",
                key=f"{field_where}.operator",
            )
        stage[name], kinds[name] = build(path, kind, f"{field_where}.key")
    if spec.get("exclude_keys"):
        stage["_id"] = 0
        names.group_keys = set()
    else:
        kept = names.kinds or {}
        kinds.update({k: kept[k] for k in names.group_keys if k not in kinds})
    names.kinds = kinds
    names.unwound = set()
    return {"$project": stage}


def _unwind(spec: Mapping[str, Any], names: Names, where: str, ctx: Context) -> list[Clause]:
    path, kind = names.ref(spec.get("path"), f"{where}.path")
    if kind not in (Kind.ARRAY, Kind.ANY):
        raise invalid(f"{where}.path", f"unwind takes an array; {path[1:]} is not one.")
    stages: list[Clause] = [{"$unwind": path}]
    filters = spec.get("filter") or []
    if filters:
        if names.kinds is not None:
            raise invalid(f"{where}.filter", "an unwind filter applies before any group/project.")
        stages.append({"$match": {"$and": conditions(filters, f"{where}.filter", ctx)}})
    if names.kinds is None:
        names.unwound.add(path[1:])
    return stages


def _count_stage(spec: Any, names: Names, where: str, ctx: Context) -> list[Clause]:
    if not isinstance(spec, Mapping):
        raise invalid(where, "count is an object.")
    name = _name(spec, where, set())
    names.kinds = {name: Kind.INT}
    names.group_keys = set()
    # $count spelled out: one row {name: N}, and no row at all when nothing is left. (mongomock
    # answers a row of 0 there, for $count and for $group alike; the $match keeps both honest.)
    return [
        {"$group": {"_id": None, name: {"$sum": 1}}},
        {"$match": {name: {"$gt": 0}}},
        {"$project": {"_id": 0}},
    ]


def _sort(items: Any, names: Names, where: str) -> Clause:
    if not isinstance(items, list) or not items:
        raise invalid(where, "sort is a non-empty list of {key, desc}.")
    order: Clause = {}
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise invalid(f"{where}[{i}]", "a sort item is {key, desc}.")
        path, _ = names.ref(pick(item, "key", "k"), f"{where}[{i}].key")
        order[path[1:]] = -1 if item.get("desc") else 1
    return {"$sort": order}


StageBuild = Callable[[Any, Names, str, Context], list[Clause]]


def _object_stage(build: Callable[[Mapping[str, Any], Names, str], Clause]) -> StageBuild:
    def stage(spec: Any, names: Names, where: str, ctx: Context) -> list[Clause]:
        if not isinstance(spec, Mapping):
            raise invalid(where, "this stage is an object.")
        return [build(spec, names, where)]

    return stage


def _unwind_stage(spec: Any, names: Names, where: str, ctx: Context) -> list[Clause]:
    if not isinstance(spec, Mapping):
        raise invalid(where, "unwind is an object.")
    return _unwind(spec, names, where, ctx)


def _bounded(name: str, low: int) -> StageBuild:
    def stage(value: Any, names: Names, where: str, ctx: Context) -> list[Clause]:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise invalid(where, f"{name} is a whole number of at least {low}.")
        return [{"$" + name: value}]

    return stage


STAGES: Mapping[str, StageBuild] = {
    "unwind": _unwind_stage,
    "group": _object_stage(_group),
    "count": _count_stage,
    "sort": lambda spec, names, where, ctx: [_sort(spec, names, where)],
    "project": _object_stage(_project),
    "limit": _bounded("limit", 1),
    "skip": _bounded("skip", 0),
}


def _stage(raw: Mapping[str, Any], names: Names, where: str, ctx: Context) -> list[Clause]:
    present = [name for name in STAGES if name in raw]
    if len(present) != 1:
        raise invalid(where, f"a stage sets exactly one of {', '.join(STAGES)}.")
    (kind,) = present
    return STAGES[kind](raw[kind], names, f"{where}.{kind}", ctx)


def _paged(
    head: list[Clause], page: Mapping[str, Any] | None, limits: Limits
) -> tuple[list[Clause], list[Clause] | None]:
    if not (page or {}).get("limit"):
        return head, None
    skip, limit = page_window(page, limits)
    window = ([{"$skip": skip}] if skip else []) + [{"$limit": limit}]
    return head + window, [*head, {"$count": "total_count"}]


def _distinct(key: Any, match: Clause, query: Mapping[str, Any], ctx: Context) -> StatPlan:
    names = Names(ctx.schema)
    path, kind = names.ref(key, "query.distinct")
    if kind is Kind.OBJECT:
        raise invalid("query.distinct", f"{path[1:]} holds objects; name a field inside it.")
    head: list[Clause] = [{"$match": match}]
    field = path[1:]
    array = next(
        (a for a in ctx.schema.array_fields if field == a or field.startswith(a + ".")), None
    )
    if array is not None:
        head.append({"$unwind": "$" + array})
    # As MongoDB's distinct: a null value counts, a missing field does not; BSON order.
    head += [
        {"$match": {field: {"$exists": True}}},
        {"$group": {"_id": path}},
        {"$sort": {"_id": 1}},
    ]
    origins = ("query.filter", *["query.distinct"] * (len(head) - 1))
    pipeline, count = _paged(head, query.get("page"), ctx.limits)
    return StatPlan(pipeline, count, distinct=True, origins=origins)


def compile_stat(query: Mapping[str, Any], scope: Sequence[Clause], ctx: Context) -> StatPlan:
    """A ``stat`` request (dict form of ``StatisticsQuery``) -> the plan that answers it."""
    aggregate = query.get("aggregate") or []
    distinct = query.get("distinct")
    if not aggregate and not distinct:
        raise required("aggregate")
    match = combine(scope, query, ctx)
    if not aggregate:
        return _distinct(distinct, match, query, ctx)
    if len(aggregate) > ctx.limits.max_stat_stages:
        raise invalid("query.aggregate", f"at most {ctx.limits.max_stat_stages} stages.")
    names = Names(ctx.schema)
    stages: list[Clause] = [{"$match": match}]
    origins = ["query.filter"]
    for i, raw in enumerate(aggregate):
        where = f"query.aggregate[{i}]"
        built = _stage(raw, names, where, ctx)
        stages += built
        origins += [where] * len(built)
    pipeline, count = _paged(stages, query.get("page"), ctx.limits)
    return StatPlan(pipeline, count, distinct=False, origins=tuple(origins))
