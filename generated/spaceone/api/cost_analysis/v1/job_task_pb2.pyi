from google.protobuf import struct_pb2 as _struct_pb2
from google.api import annotations_pb2 as _annotations_pb2
from spaceone.api.core.v2 import query_pb2 as _query_pb2
from spaceone.api.cost_analysis.v1 import job_pb2 as _job_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobTaskRequest(_message.Message):
    __slots__ = ("job_task_id",)
    JOB_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    job_task_id: str
    def __init__(self, job_task_id: _Optional[str] = ...) -> None: ...

class JobTaskQuery(_message.Message):
    __slots__ = ("query", "job_task_id", "status", "workspace_id", "job_id", "data_source_id")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SCOPE_NONE: _ClassVar[JobTaskQuery.Status]
        PENDING: _ClassVar[JobTaskQuery.Status]
        IN_PROGRESS: _ClassVar[JobTaskQuery.Status]
        SUCCESS: _ClassVar[JobTaskQuery.Status]
        FAILURE: _ClassVar[JobTaskQuery.Status]
        TIMEOUT: _ClassVar[JobTaskQuery.Status]
        CANCELED: _ClassVar[JobTaskQuery.Status]
    SCOPE_NONE: JobTaskQuery.Status
    PENDING: JobTaskQuery.Status
    IN_PROGRESS: JobTaskQuery.Status
    SUCCESS: JobTaskQuery.Status
    FAILURE: JobTaskQuery.Status
    TIMEOUT: JobTaskQuery.Status
    CANCELED: JobTaskQuery.Status
    QUERY_FIELD_NUMBER: _ClassVar[int]
    JOB_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    query: _query_pb2.Query
    job_task_id: str
    status: JobTaskQuery.Status
    workspace_id: str
    job_id: str
    data_source_id: str
    def __init__(self, query: _Optional[_Union[_query_pb2.Query, _Mapping]] = ..., job_task_id: _Optional[str] = ..., status: _Optional[_Union[JobTaskQuery.Status, str]] = ..., workspace_id: _Optional[str] = ..., job_id: _Optional[str] = ..., data_source_id: _Optional[str] = ...) -> None: ...

class JobTaskInfo(_message.Message):
    __slots__ = ("job_task_id", "status", "options", "changed", "created_count", "error_code", "error_message", "resource_group", "domain_id", "workspace_id", "job_id", "data_source_id", "created_at", "started_at", "updated_at", "finished_at")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SCOPE_NONE: _ClassVar[JobTaskInfo.Status]
        PENDING: _ClassVar[JobTaskInfo.Status]
        IN_PROGRESS: _ClassVar[JobTaskInfo.Status]
        SUCCESS: _ClassVar[JobTaskInfo.Status]
        FAILURE: _ClassVar[JobTaskInfo.Status]
        TIMEOUT: _ClassVar[JobTaskInfo.Status]
        CANCELED: _ClassVar[JobTaskInfo.Status]
    SCOPE_NONE: JobTaskInfo.Status
    PENDING: JobTaskInfo.Status
    IN_PROGRESS: JobTaskInfo.Status
    SUCCESS: JobTaskInfo.Status
    FAILURE: JobTaskInfo.Status
    TIMEOUT: JobTaskInfo.Status
    CANCELED: JobTaskInfo.Status
    class ResourceGroup(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        RESOURCE_GROUP_NONE: _ClassVar[JobTaskInfo.ResourceGroup]
        DOMAIN: _ClassVar[JobTaskInfo.ResourceGroup]
        WORKSPACE: _ClassVar[JobTaskInfo.ResourceGroup]
    RESOURCE_GROUP_NONE: JobTaskInfo.ResourceGroup
    DOMAIN: JobTaskInfo.ResourceGroup
    WORKSPACE: JobTaskInfo.ResourceGroup
    JOB_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    CREATED_COUNT_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_GROUP_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    job_task_id: str
    status: JobTaskInfo.Status
    options: _struct_pb2.Struct
    changed: _job_pb2.ChangedInfo
    created_count: int
    error_code: str
    error_message: str
    resource_group: JobTaskInfo.ResourceGroup
    domain_id: str
    workspace_id: str
    job_id: str
    data_source_id: str
    created_at: str
    started_at: str
    updated_at: str
    finished_at: str
    def __init__(self, job_task_id: _Optional[str] = ..., status: _Optional[_Union[JobTaskInfo.Status, str]] = ..., options: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., changed: _Optional[_Union[_job_pb2.ChangedInfo, _Mapping]] = ..., created_count: _Optional[int] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ..., resource_group: _Optional[_Union[JobTaskInfo.ResourceGroup, str]] = ..., domain_id: _Optional[str] = ..., workspace_id: _Optional[str] = ..., job_id: _Optional[str] = ..., data_source_id: _Optional[str] = ..., created_at: _Optional[str] = ..., started_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., finished_at: _Optional[str] = ...) -> None: ...

class JobTasksInfo(_message.Message):
    __slots__ = ("results", "total_count")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[JobTaskInfo]
    total_count: int
    def __init__(self, results: _Optional[_Iterable[_Union[JobTaskInfo, _Mapping]]] = ..., total_count: _Optional[int] = ...) -> None: ...

class JobTaskStatQuery(_message.Message):
    __slots__ = ("query",)
    QUERY_FIELD_NUMBER: _ClassVar[int]
    query: _query_pb2.StatisticsQuery
    def __init__(self, query: _Optional[_Union[_query_pb2.StatisticsQuery, _Mapping]] = ...) -> None: ...
