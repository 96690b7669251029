"""Each document kind's description, checked field by field against its MongoEngine model and
its proto messages: what the model stores and the message shows agree on every field and
sub-field, and what the service derives from a kind (query schema, rendering, store fields,
seed lines, list shortcuts, watched and inherited fields) covers every field it should."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor
from mongoengine import EmbeddedDocumentField, ListField

from spaceone_job import kinds
from spaceone_job.api import render
from spaceone_job.query.schema import Schema
from spaceone_job.store.model import Field, Kind, fields_of, new_document

KINDS = [kinds.JOB, kinds.TASK]
_F = FieldDescriptor
STRUCT = "google.protobuf.Struct"
# What a stored kind of value is on the wire (timestamps are strings, as upstream sends them).
WIRE: dict[Kind, int] = {Kind.STRING: _F.TYPE_STRING, Kind.INT: _F.TYPE_INT32}
WIRE[Kind.DATETIME] = _F.TYPE_STRING


def _agrees(stored: Field, wire: Any, where: str) -> None:
    """``stored`` (a model field) and ``wire`` (its proto field) hold the same thing."""
    if stored.choices:
        assert wire.type == _F.TYPE_ENUM, where
        assert set(stored.choices) <= set(wire.enum_type.values_by_name), where
    elif stored.free_form:
        assert wire.message_type.full_name == STRUCT, where
    elif stored.kind in (Kind.OBJECT, Kind.ARRAY):
        assert wire.type == _F.TYPE_MESSAGE, where
        assert wire.is_repeated == (stored.kind is Kind.ARRAY), where
    else:
        assert wire.type == WIRE[stored.kind], where
        assert not wire.is_repeated, where


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.noun)
def test_every_field_the_message_shows_is_stored_alike_down_to_its_sub_fields(
    kind: kinds.DocumentKind,
) -> None:
    stored = {f.path: f for f in fields_of(kind.model)}

    def walk(message: Any, prefix: str) -> None:
        for wire in message.fields:
            path = prefix + wire.name
            assert path in stored, f"{message.name}.{wire.name} has no stored field"
            _agrees(stored[path], wire, path)
            if wire.message_type is not None and wire.message_type.full_name != STRUCT:
                walk(wire.message_type, path + ".")

    walk(kind.info.DESCRIPTOR, "")
    queried = {f.path for f in kind.fields}
    shown_paths = {p for p in stored if p.split(".")[0] in kind.shown}
    assert queried == shown_paths


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.noun)
def test_every_stored_field_is_shown_or_the_services_own(kind: kinds.DocumentKind) -> None:
    top = [name for name in kind.model._fields if name != "id"]
    assert sorted((*kind.shown, *kind.internal)) == sorted(top)
    assert set(kind.shown) == set(kind.info.DESCRIPTOR.fields_by_name)
    assert not set(kind.internal) & set(kind.info.DESCRIPTOR.fields_by_name)
    assert kind.model._fields[kind.key].unique


def _embedded(kind: kinds.DocumentKind, name: str) -> bool:
    declared = kind.model._fields[name]
    inner = declared.field if isinstance(declared, ListField) else declared
    return isinstance(inner, EmbeddedDocumentField)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.noun)
def test_each_shown_field_is_rendered_by_exactly_one_rule(kind: kinds.DocumentKind) -> None:
    rules = [kind.strings, kind.ints, kind.times, tuple(kind.enums), kind.structs]
    embedded = tuple(name for name in kind.shown if _embedded(kind, name))
    every = [name for rule in (*rules, embedded) for name in rule]
    assert sorted(every) == sorted(kind.shown)


def _full(kind: kinds.DocumentKind) -> dict[str, Any]:
    """A stored document of ``kind`` with every shown field set."""
    moment = datetime(2024, 5, 1, 13, 0, 0)
    data: dict[str, Any] = {name: f"{name}-1" for name in kind.strings}
    data.update(dict.fromkeys(kind.ints, 3))
    data.update(dict.fromkeys(kind.times, moment))
    data.update({name: {"a": 1} for name in kind.structs})
    data.update(status="IN_PROGRESS", resource_group="DOMAIN")
    changed = {"start": "2024-01", "end": "2024-02", "filter": {"b": 2}}
    if kind is kinds.JOB:
        data.update(changed=[changed], synced_accounts=[{"account_id": "111"}])
    else:
        data.update(changed=changed)
    return new_document(data, kind.model)


RENDER = {kinds.JOB: render.job_info, kinds.TASK: render.job_task_info}


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.noun)
def test_a_full_document_renders_every_shown_field_and_minimal_exactly_the_short_form(
    kind: kinds.DocumentKind,
) -> None:
    doc = _full(kind)
    assert {f.name for f, _ in RENDER[kind](doc).ListFields()} == set(kind.shown)
    assert {f.name for f, _ in RENDER[kind](doc, minimal=True).ListFields()} == set(kind.minimal)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.noun)
def test_the_query_schema_names_every_field_and_sub_field_and_nothing_internal(
    kind: kinds.DocumentKind,
) -> None:
    schema = Schema(kind)
    for f in kind.fields:
        assert schema.lookup(f.path, "filter") == f
    for name in kind.internal:
        with pytest.raises(Exception, match="Unknown field"):
            schema.lookup(name, "filter")


def test_the_declared_lists_name_fields_of_their_kinds() -> None:
    for kind in KINDS:
        assert set(kind.minimal) <= set(kind.shown)
        list_fields = kind.list_request.DESCRIPTOR.fields_by_name
        assert set(kind.shortcuts) <= set(kind.shown) & set(list_fields)
        assert kind.key in kind.shortcuts
    assert set(kinds.JOB.transition + kinds.JOB.progress) <= set(kinds.JOB.shown)
    assert set(kinds.TASK.inherited) <= set(kinds.TASK.shown) & set(kinds.JOB.shown)
    assert kinds.JOB.key in kinds.TASK.inherited  # a task names its job


def test_a_message_field_the_model_does_not_store_stops_the_import() -> None:
    with pytest.raises(TypeError, match=r"JobInfo shows \[.*'total_tasks'.*\], which JobTask"):
        kinds.DocumentKind(
            "odd", kinds.TASK.model, kinds.JOB.info, kinds.JOB.list_request, minimal=()
        )


@pytest.mark.parametrize(
    ("kind", "nulls"),
    [
        (kinds.JOB, ("error_code", "error_message", "workspace_id", "finished_at")),
        (
            kinds.TASK,
            ("error_code", "error_message", "workspace_id", "started_at", "finished_at"),
        ),
    ],
    ids=["job", "job task"],
)
def test_a_new_document_holds_its_nullable_fields_as_null_as_upstreams_do(
    kind: kinds.DocumentKind, nulls: tuple[str, ...]
) -> None:
    """``exists`` tells these apart from fields left out, as on an upstream database."""
    moment = datetime(2024, 5, 1)
    data = {"domain_id": "d", "data_source_id": "ds", "created_at": moment, "updated_at": moment}
    if kind is kinds.TASK:
        data["job_id"] = "job-000000000001"
    stored = new_document(data, kind.model)
    assert all(name in stored and stored[name] is None for name in nulls), stored
