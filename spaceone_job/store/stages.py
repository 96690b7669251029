"""Pipeline stages over Python rows for the embedded store: MongoDB's answers, less of mongomock's
work.

mongomock evaluates a ``$group`` key twice per row and sorts the rows with a BSON comparator
written in Python (``BsonComparable``), which is most of a ``stat`` call's time. :func:`group`
gives the same groups in the same order with each key evaluated once and, where the keys allow,
sorted by :func:`rank`: a plain tuple that Python compares in C and that orders exactly as that
comparator does. Where it cannot promise that (see :func:`rank`), the comparator itself sorts.
``$unwind``, ``$project``'s ``$sum`` and a ``$group`` over no rows are here because mongomock's
answers differ from MongoDB's.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Sequence
from typing import Any, cast

from spaceone_job.store.documents import TooManyRows
from spaceone_job.store.mongomock_internals import (
    ARRAY_CODE,
    OBJECT_CODE,
    SORTING_OPERATOR_MAP,
    TYPE_CODES,
    BsonComparable,
    accumulate_group,
    bson_compare,
    get_value_by_dot,
    mongodb_to_bool,
    parse_expression,
)

Document = dict[str, Any]
Evaluate = Callable[[Document], Any]
# The most rows one pipeline stage may produce here (MongoDB bounds a stage by its memory).
MAX_ROWS = 250_000
_BOOL = TYPE_CODES[bool]


class NotRanked(Exception):
    """A value that :func:`rank` cannot order as mongomock does."""


def rank(value: Any, loose: bool = False) -> tuple[Any, ...]:
    """A tuple that orders ``value`` among others as mongomock's BSON comparator does.

    mongomock compares the items of an array, and the values inside a nested document, with
    Python's ``==`` before its BSON comparison, so there ``True == 1`` and documents equal in
    another key order count as equal. ``loose`` marks such a place: a bool or a document in it
    raises :class:`NotRanked`, as do NaN and types not ranked here (subclasses included).
    """
    kind = type(value)
    code = TYPE_CODES.get(kind)
    if code is not None:
        if (code == _BOOL and loose) or value != value:  # NaN is not equal to itself
            raise NotRanked
        return (code, value)
    if kind is list:
        return (ARRAY_CODE, tuple(rank(item, True) for item in value))
    if kind is dict and not loose:
        # Values are compared as (type, name, value); one inside a container value is loose.
        entries = []
        for name, item in value.items():
            ranked = rank(item, type(item) in (dict, list))
            entries.append((ranked[0], name, ranked))
        return (OBJECT_CODE, tuple(entries))
    raise NotRanked


def bson_order(keys: Sequence[Any]) -> list[int]:
    """The positions of ``keys`` sorted, stably, as mongomock sorts them."""
    positions = range(len(keys))
    try:
        ranks = [rank(key) for key in keys]
        return sorted(positions, key=ranks.__getitem__)
    except (NotRanked, TypeError):  # TypeError: dates with and without a timezone, say
        return sorted(positions, key=lambda i: BsonComparable(keys[i]))


def group(rows: list[Document], options: Document) -> list[Document]:
    """``$group`` as mongomock evaluates it: rows sorted by key in BSON order, then each run of
    equal keys accumulated by mongomock. Each expression is evaluated once per row, by
    :func:`compiled` where it can be. One difference, MongoDB's: no rows, no groups (mongomock
    answers a group of zeros when the key is constant)."""
    if not rows:
        return []
    expression = options["_id"]
    if expression:
        evaluate = _evaluator(expression, lenient=True)
        keys = [_key(evaluate, row) for row in rows]
        ordered = itertools.groupby(bson_order(keys), keys.__getitem__)
        runs: Any = ((key, list(run)) for key, run in ordered)
    else:
        runs = [(None, range(len(rows)))]
    # mongomock accumulates rows of precomputed values: {"v0": ..., "v1": ...}, one per operand.
    accumulators: dict[str, dict[str, str]] = {}
    operands: list[Evaluate] = []
    for name, spec in options.items():
        if name != "_id":
            accumulators[name] = {}
            for accumulator, operand in spec.items():
                accumulators[name][accumulator] = f"$v{len(operands)}"
                operands.append(_evaluator(operand, lenient=False))
    names = [f"v{index}" for index in range(len(operands))]
    values = [_operands(names, operands, row) for row in rows]
    out = []
    for key, members in runs:
        accumulated: Document = accumulate_group(accumulators, [values[i] for i in members])
        accumulated["_id"] = key
        out.append(accumulated)
    return out


def _evaluator(expression: Any, lenient: bool) -> Evaluate:
    return compiled(expression, lenient) or (
        lambda row: parse_expression(expression, row, ignore_missing_keys=lenient)
    )


def _operands(names: Sequence[str], operands: Sequence[Evaluate], row: Document) -> Document:
    values = {}
    for name, evaluate in zip(names, operands, strict=True):
        try:
            values[name] = evaluate(row)
        except KeyError:  # mongomock leaves the row out of this accumulator
            continue
    return values


def _key(evaluate: Evaluate, row: Document) -> Any:
    try:
        return evaluate(row)
    except KeyError:  # mongomock's "missing": the whole key is null
        return None


def compiled(expression: Any, lenient: bool) -> Evaluate | None:
    """A function that evaluates ``expression`` on a row exactly as mongomock does, for the
    shapes the stat compiler writes: field paths, constants, objects of those, ``$cond``,
    two-argument ``$ifNull``, ``$dateToString``, ``$literal``, comparisons, ``$and`` and ``$or``.
    None for anything else, which mongomock then evaluates itself.

    ``lenient`` is mongomock's ``ignore_missing_keys``: an object leaves a missing field out
    rather than raising KeyError.
    """
    if isinstance(expression, str):
        if expression.startswith("$$"):
            return None
        if expression.startswith("$"):
            path = expression[1:]
            return lambda row: get_value_by_dot(row, path, can_generate_array=True)
        return lambda row: expression
    if expression is None or isinstance(expression, bool | int | float):
        return lambda row: expression
    if not isinstance(expression, dict):
        return None
    if len(expression) == 1:
        ((name, arguments),) = expression.items()
        if name.startswith("$"):
            build = _OPERATORS.get(name)
            return build(arguments, lenient) if build else None
    if any(name.startswith("$") for name in expression):
        return None
    return _object(expression, lenient)


def _all(arguments: Any, lenient: bool) -> list[Evaluate] | None:
    """The compiled items of an argument list; None unless every item compiles."""
    if not isinstance(arguments, list):
        return None
    items = [compiled(argument, lenient) for argument in arguments]
    return None if any(item is None for item in items) else cast(list[Evaluate], items)


def _object(expression: Document, lenient: bool) -> Evaluate | None:
    names = list(expression)
    fields = _all(list(expression.values()), lenient)
    if fields is None:
        return None
    named = list(zip(names, fields, strict=True))

    def evaluate(row: Document) -> Document:
        out = {}
        for name, field in named:
            try:
                out[name] = field(row)
            except KeyError:
                if not lenient:
                    raise
        return out

    return evaluate


def _truth(evaluate: Evaluate, row: Document) -> bool:
    """mongomock's truth of an operand: a missing field is false."""
    try:
        return bool(mongodb_to_bool(evaluate(row)))
    except KeyError:
        return False


def _cond(arguments: Any, lenient: bool) -> Evaluate | None:
    parts = _all(arguments, lenient)
    if parts is None or len(parts) != 3:
        return None
    test, then, otherwise = parts
    return lambda row: then(row) if _truth(test, row) else otherwise(row)


def _if_null(arguments: Any, lenient: bool) -> Evaluate | None:
    parts = _all(arguments, lenient)
    if parts is None or len(parts) != 2:
        return None
    value, fallback = parts

    def evaluate(row: Document) -> Any:
        try:
            found = value(row)
        except KeyError:
            found = None
        return fallback(row) if found is None else found

    return evaluate


def _date_to_string(arguments: Any, lenient: bool) -> Evaluate | None:
    if not isinstance(arguments, dict) or arguments.keys() != {"format", "date"}:
        return None
    date_format, date = arguments["format"], compiled(arguments["date"], lenient)
    if not isinstance(date_format, str) or date_format.startswith("$") or "%L" in date_format:
        return None
    if date is None:
        return None
    return lambda row: date(row).strftime(date_format)


def _comparison(compare: Callable[[Any, Any], bool]) -> Callable[[Any, bool], Evaluate | None]:
    def build(arguments: Any, lenient: bool) -> Evaluate | None:
        parts = _all(arguments, lenient)
        if parts is None or len(parts) != 2:
            return None
        left, right = parts
        return lambda row: compare(left(row), right(row))

    return build


def _bson(operator: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    return lambda a, b: bool(bson_compare(operator, a, b))


def _and(arguments: Any, lenient: bool) -> Evaluate | None:
    parts = _all(arguments, lenient)
    if parts is None:
        return None
    # Every operand is evaluated, as mongomock does, before the answer.
    return lambda row: all([_truth(part, row) for part in parts])


def _or(arguments: Any, lenient: bool) -> Evaluate | None:
    parts = _all(arguments, lenient)
    if parts is None:
        return None
    return lambda row: any(_truth(part, row) for part in parts)


_OPERATORS: dict[str, Callable[[Any, bool], Evaluate | None]] = {
    "$cond": _cond,
    "$ifNull": _if_null,
    "$dateToString": _date_to_string,
    "$literal": lambda value, lenient: lambda row: value,
    "$eq": _comparison(operator.eq),
    "$ne": _comparison(operator.ne),
    **{name: _comparison(_bson(test)) for name, test in SORTING_OPERATOR_MAP.items()},
    "$and": _and,
    "$or": _or,
}


def sort_key(path: str) -> Callable[[Document], tuple[Any, ...]]:
    """A find sort key on ``path``, for rows whose value there is a scalar (else
    :class:`NotRanked`: MongoDB sorts arrays by an element, which is mongomock's to do)."""
    parts = path.split(".")

    def key(doc: Document) -> tuple[Any, ...]:
        value: Any = doc
        for part in parts:
            if isinstance(value, list):
                raise NotRanked
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, dict | list):
            raise NotRanked
        return rank(value)

    return key


def value_at(doc: Any, parts: Sequence[str]) -> Any:
    """The value at a dotted path's ``parts`` (None where the path is missing)."""
    for part in parts:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc


def _replaced(doc: Document, parts: Sequence[str], item: Any) -> Document:
    head, *rest = parts
    row = dict(doc)
    row[head] = _replaced(doc[head], rest, item) if rest else item
    return row


def mongo_sum(value: Any) -> int | float:
    """MongoDB's ``$sum`` of one operand: an array's numbers summed, a number, otherwise 0."""
    items = value if isinstance(value, list) else [value]
    numbers = [v for v in items if isinstance(v, int | float) and not isinstance(v, bool)]
    return sum(numbers)


def unwind(rows: list[Document], path: str) -> list[Document]:
    """MongoDB's ``$unwind`` of ``$path``: one row per element; missing, null and empty arrays
    give no row, any other value one. Rows share what they do not replace."""
    parts = path.removeprefix("$").split(".")
    out: list[Document] = []
    for row in rows:
        value = value_at(row, parts)
        items = value if isinstance(value, list) else [] if value is None else [value]
        if len(out) + len(items) > MAX_ROWS:
            raise TooManyRows("unwind", MAX_ROWS)
        out.extend(_replaced(row, parts, item) for item in items)
    return out
