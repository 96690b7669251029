"""``list`` requests -> a find plan (filter, sort, page, projection) or an aggregation pipeline.

Pure functions: the request arrives as the dict form of ``spaceone.api.core.v2.Query`` plus the
tenant-scope clauses, and leaves as a :class:`ListPlan` the service runs against the store.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spaceone_job.errors import Code, ServiceError, invalid, required, shown
from spaceone_job.query import schema
from spaceone_job.query.filters import Clause, Context, Limits, combine, conditions
from spaceone_job.query.schema import Schema
from spaceone_job.store.model import Kind

DEFAULT_SORT: tuple[tuple[str, int], ...] = (("created_at", -1), ("_id", -1))
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# No output name may be _id: MongoDB keeps a document's id (and a group's keys) there.
RESERVED_NAME = "_id"


@dataclass(frozen=True)
class ListPlan:
    """How to answer one ``list`` call."""

    filter: Clause
    sort: tuple[tuple[str, int], ...]
    skip: int
    limit: int
    projection: dict[str, int] | None
    minimal: bool
    count_only: bool
    # Pipeline mode (unwind / add_fields): the stages between the $match and the paging.
    stages: tuple[Clause, ...] | None = None
    unwind_path: str | None = None

    def rows(self) -> list[Clause]:
        """The stages of pipeline mode that make its rows, before they are counted or paged."""
        return [{"$match": self.filter}, *(self.stages or ())]

    def page(self) -> list[Clause]:
        """The stages of pipeline mode that page and shape its rows."""
        skip: list[Clause] = [{"$skip": self.skip}] if self.skip else []
        shape: list[Clause] = (
            [{"$project": {"_id": 0, **self.projection}}] if self.projection else []
        )
        return [{"$sort": dict(self.sort)}, *skip, {"$limit": self.limit}, *shape]


def page_window(page: Mapping[str, Any] | None, limits: Limits) -> tuple[int, int]:
    """``(skip, limit)`` of a 1-based page.

    No limit, or one over the ``max_page_limit`` setting, is coerced to that cap (AIP-158);
    ``start`` counts only with a limit, as upstream (without one it pages nothing).
    """
    page = page or {}
    limit = int(page.get("limit", 0) or 0)
    if limit <= 0:
        return 0, limits.max_page_limit
    start = max(int(page.get("start", 1) or 1), 1)
    return start - 1, min(limit, limits.max_page_limit)


def _sort(
    items: Sequence[Mapping[str, Any]], extra_names: Sequence[str], fields: Schema
) -> tuple[tuple[str, int], ...]:
    if not items:
        return DEFAULT_SORT
    keys: list[tuple[str, int]] = []
    for i, item in enumerate(items):
        key = item.get("key")
        where = f"query.sort[{i}].key"
        if not key:
            raise required(where)
        if key not in extra_names:
            fields.lookup(key, where)
        keys.append((key, -1 if item.get("desc") else 1))
    return (*keys, ("_id", 1))


def _projection(only: Sequence[str], minimal: bool, fields: Schema) -> dict[str, int] | None:
    paths = [*only, *(fields.kind.minimal if minimal else ())]
    if not paths:
        return None
    for i, path in enumerate(only):
        fields.lookup(path, f"query.only[{i}]")
    # MongoDB refuses a parent and its child in one projection; the parent covers the child.
    kept = {p for p in paths if not any(p.startswith(q + ".") for q in paths)}
    return dict.fromkeys(sorted(kept), 1)


def _operand(value: Any, where: str, fields: Schema) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        fields.lookup(value[1:], where)
        return value
    if isinstance(value, dict):
        return _expression(value, where, fields)
    return {"$literal": schema.literal(value, where)}


_EXPRESSION_OPERATORS = {
    name: "$" + name for name in ("eq", "ne", "gt", "gte", "lt", "lte", "in", "and", "or", "not")
}


def _expression(spec: Mapping[str, Any], where: str, fields: Schema) -> Clause:
    if len(spec) != 1:
        raise invalid(
            where, "a condition is one operator such as {'__eq': ['$status', 'SUCCESS']}."
        )
    ((name, operands),) = spec.items()
    mongo_op = _EXPRESSION_OPERATORS.get(name.removeprefix("__").removeprefix("$"))
    if mongo_op is None:
        raise ServiceError(
            Code.OPERATOR_NOT_SUPPORTED,
            f"Operator {shown(name)} is not supported in add_fields; use"
            f" {', '.join('__' + n for n in _EXPRESSION_OPERATORS)}.",
            key=where,
        )
    if not isinstance(operands, list):
        raise ServiceError(
            Code.OPERATOR_LIST_VALUE_TYPE, f"The operands of {name} are a list.", key=where
        )
    return {mongo_op: [_operand(v, f"{where}.{name}[{i}]", fields) for i, v in enumerate(operands)]}


def _field_value(value: Any, where: str, fields: Schema) -> Any:
    if isinstance(value, dict) and "if" in value:
        unknown = set(value) - {"if", "then", "else"}
        if unknown:
            raise invalid(where, f"a conditional has if, then and else; not {sorted(unknown)}.")
        if not isinstance(value["if"], dict):
            raise invalid(f"{where}.if", "the condition is an object.")
        return {
            "$cond": {
                "if": _expression(value["if"], f"{where}.if", fields),
                "then": _field_value(value.get("then"), f"{where}.then", fields),
                "else": _field_value(value.get("else"), f"{where}.else", fields),
            }
        }
    return {"$literal": schema.literal(value, where)}


def add_fields_stage(spec: Mapping[str, Any], fields: Schema) -> Clause:
    """``add_fields``: new named fields, each a literal or an ``{if, then, else}`` conditional."""
    out: Clause = {}
    for name, value in spec.items():
        where = f"query.add_fields.{name}"
        if not NAME.match(name) or name in fields.kind.shown or name == RESERVED_NAME:
            raise invalid(where, "a new field name is a word that is not a job field, nor _id.")
        out[name] = _field_value(value, where, fields)
    return {"$addFields": out}


def compile_list(
    query: Mapping[str, Any],
    scope: Sequence[Clause],
    shortcuts: Sequence[Clause],
    ctx: Context,
) -> ListPlan:
    """A ``list`` request (dict form of ``Query``) -> the plan that answers it."""
    if query.get("lookup") is not None:
        raise invalid("query.lookup", "lookup (joins to other collections) is not supported.")
    filter_ = combine(scope, query, ctx, shortcuts)
    skip, limit = page_window(query.get("page"), ctx.limits)
    minimal = bool(query.get("minimal"))
    only = query.get("only", [])
    unwind = query.get("unwind")
    add_fields = query.get("add_fields")
    stages: list[Clause] = []
    unwind_path = None
    if unwind is not None:
        unwind_path = unwind.get("path")
        if not unwind_path:
            raise required("query.unwind.path")
        if ctx.schema.lookup(unwind_path, "query.unwind.path").kind is not Kind.ARRAY:
            arrays = " or ".join(ctx.schema.array_fields) or "no field of a " + ctx.schema.kind.noun
            raise invalid("query.unwind.path", f"unwind takes {arrays}.")
        stages.append({"$unwind": "$" + unwind_path})
        unwound = conditions(unwind.get("filter", []), "query.unwind.filter", ctx)
        if unwound:
            stages.append({"$match": {"$and": unwound}})
    if add_fields:
        stages.append(add_fields_stage(add_fields, ctx.schema))
    projection = _projection(only, minimal, ctx.schema)
    sort = _sort(query.get("sort", []), list(add_fields or ()), ctx.schema)
    return ListPlan(
        filter=filter_,
        sort=sort,
        skip=skip,
        limit=limit,
        projection=projection,
        minimal=minimal,
        count_only=bool(query.get("count_only")),
        stages=tuple(stages) if stages else None,
        unwind_path=unwind_path,
    )
