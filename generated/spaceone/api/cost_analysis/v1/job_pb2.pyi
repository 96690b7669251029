from google.protobuf import struct_pb2 as _struct_pb2
from google.api import annotations_pb2 as _annotations_pb2
from spaceone.api.core.v2 import query_pb2 as _query_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class JobQuery(_message.Message):
    __slots__ = ("query", "job_id", "status", "workspace_id", "data_source_id")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SCOPE_NONE: _ClassVar[JobQuery.Status]
        IN_PROGRESS: _ClassVar[JobQuery.Status]
        SUCCESS: _ClassVar[JobQuery.Status]
        FAILURE: _ClassVar[JobQuery.Status]
        TIMEOUT: _ClassVar[JobQuery.Status]
        CANCELED: _ClassVar[JobQuery.Status]
    SCOPE_NONE: JobQuery.Status
    IN_PROGRESS: JobQuery.Status
    SUCCESS: JobQuery.Status
    FAILURE: JobQuery.Status
    TIMEOUT: JobQuery.Status
    CANCELED: JobQuery.Status
    QUERY_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    query: _query_pb2.Query
    job_id: str
    status: JobQuery.Status
    workspace_id: str
    data_source_id: str
    def __init__(self, query: _Optional[_Union[_query_pb2.Query, _Mapping]] = ..., job_id: _Optional[str] = ..., status: _Optional[_Union[JobQuery.Status, str]] = ..., workspace_id: _Optional[str] = ..., data_source_id: _Optional[str] = ...) -> None: ...

class ChangedInfo(_message.Message):
    __slots__ = ("start", "end", "filter")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    start: str
    end: str
    filter: _struct_pb2.Struct
    def __init__(self, start: _Optional[str] = ..., end: _Optional[str] = ..., filter: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class SyncedAccountInfo(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class JobInfo(_message.Message):
    __slots__ = ("job_id", "status", "options", "error_code", "error_message", "total_tasks", "remained_tasks", "changed", "synced_accounts", "resource_group", "domain_id", "workspace_id", "data_source_id", "created_at", "updated_at", "finished_at")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SCOPE_NONE: _ClassVar[JobInfo.Status]
        IN_PROGRESS: _ClassVar[JobInfo.Status]
        SUCCESS: _ClassVar[JobInfo.Status]
        FAILURE: _ClassVar[JobInfo.Status]
        TIMEOUT: _ClassVar[JobInfo.Status]
        CANCELED: _ClassVar[JobInfo.Status]
    SCOPE_NONE: JobInfo.Status
    IN_PROGRESS: JobInfo.Status
    SUCCESS: JobInfo.Status
    FAILURE: JobInfo.Status
    TIMEOUT: JobInfo.Status
    CANCELED: JobInfo.Status
    class ResourceGroup(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        RESOURCE_GROUP_NONE: _ClassVar[JobInfo.ResourceGroup]
        DOMAIN: _ClassVar[JobInfo.ResourceGroup]
        WORKSPACE: _ClassVar[JobInfo.ResourceGroup]
    RESOURCE_GROUP_NONE: JobInfo.ResourceGroup
    DOMAIN: JobInfo.ResourceGroup
    WORKSPACE: JobInfo.ResourceGroup
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TASKS_FIELD_NUMBER: _ClassVar[int]
    REMAINED_TASKS_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    SYNCED_ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_GROUP_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    status: JobInfo.Status
    options: _struct_pb2.Struct
    error_code: str
    error_message: str
    total_tasks: int
    remained_tasks: int
    changed: _containers.RepeatedCompositeFieldContainer[ChangedInfo]
    synced_accounts: _containers.RepeatedCompositeFieldContainer[SyncedAccountInfo]
    resource_group: JobInfo.ResourceGroup
    domain_id: str
    workspace_id: str
    data_source_id: str
    created_at: str
    updated_at: str
    finished_at: str
    def __init__(self, job_id: _Optional[str] = ..., status: _Optional[_Union[JobInfo.Status, str]] = ..., options: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ..., total_tasks: _Optional[int] = ..., remained_tasks: _Optional[int] = ..., changed: _Optional[_Iterable[_Union[ChangedInfo, _Mapping]]] = ..., synced_accounts: _Optional[_Iterable[_Union[SyncedAccountInfo, _Mapping]]] = ..., resource_group: _Optional[_Union[JobInfo.ResourceGroup, str]] = ..., domain_id: _Optional[str] = ..., workspace_id: _Optional[str] = ..., data_source_id: _Optional[str] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., finished_at: _Optional[str] = ...) -> None: ...

class JobsInfo(_message.Message):
    __slots__ = ("results", "total_count")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[JobInfo]
    total_count: int
    def __init__(self, results: _Optional[_Iterable[_Union[JobInfo, _Mapping]]] = ..., total_count: _Optional[int] = ...) -> None: ...

class JobStatQuery(_message.Message):
    __slots__ = ("query",)
    QUERY_FIELD_NUMBER: _ClassVar[int]
    query: _query_pb2.StatisticsQuery
    def __init__(self, query: _Optional[_Union[_query_pb2.StatisticsQuery, _Mapping]] = ...) -> None: ...
