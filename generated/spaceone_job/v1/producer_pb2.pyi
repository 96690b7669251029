from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from spaceone.api.cost_analysis.v1 import job_pb2 as _job_pb2
from spaceone.api.cost_analysis.v1 import job_task_pb2 as _job_task_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskSpec(_message.Message):
    __slots__ = ("options", "changed")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    options: _struct_pb2.Struct
    changed: _job_pb2.ChangedInfo
    def __init__(self, options: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., changed: _Optional[_Union[_job_pb2.ChangedInfo, _Mapping]] = ...) -> None: ...

class CreateJobRequest(_message.Message):
    __slots__ = ("request_id", "data_source_id", "workspace_id", "resource_group", "options", "tasks", "changed", "synced_accounts")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_GROUP_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    SYNCED_ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    data_source_id: str
    workspace_id: str
    resource_group: _job_pb2.JobInfo.ResourceGroup
    options: _struct_pb2.Struct
    tasks: _containers.RepeatedCompositeFieldContainer[TaskSpec]
    changed: _containers.RepeatedCompositeFieldContainer[_job_pb2.ChangedInfo]
    synced_accounts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, request_id: _Optional[str] = ..., data_source_id: _Optional[str] = ..., workspace_id: _Optional[str] = ..., resource_group: _Optional[_Union[_job_pb2.JobInfo.ResourceGroup, str]] = ..., options: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., tasks: _Optional[_Iterable[_Union[TaskSpec, _Mapping]]] = ..., changed: _Optional[_Iterable[_Union[_job_pb2.ChangedInfo, _Mapping]]] = ..., synced_accounts: _Optional[_Iterable[str]] = ...) -> None: ...

class CreatedJob(_message.Message):
    __slots__ = ("job", "tasks")
    JOB_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.JobInfo
    tasks: _containers.RepeatedCompositeFieldContainer[_job_task_pb2.JobTaskInfo]
    def __init__(self, job: _Optional[_Union[_job_pb2.JobInfo, _Mapping]] = ..., tasks: _Optional[_Iterable[_Union[_job_task_pb2.JobTaskInfo, _Mapping]]] = ...) -> None: ...

class TaskRequest(_message.Message):
    __slots__ = ("request_id", "job_task_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    job_task_id: str
    def __init__(self, request_id: _Optional[str] = ..., job_task_id: _Optional[str] = ...) -> None: ...

class ProgressRequest(_message.Message):
    __slots__ = ("request_id", "job_task_id", "created_count")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_COUNT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    job_task_id: str
    created_count: int
    def __init__(self, request_id: _Optional[str] = ..., job_task_id: _Optional[str] = ..., created_count: _Optional[int] = ...) -> None: ...

class FinishTaskRequest(_message.Message):
    __slots__ = ("request_id", "job_task_id", "error_code", "error_message")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    job_task_id: str
    error_code: str
    error_message: str
    def __init__(self, request_id: _Optional[str] = ..., job_task_id: _Optional[str] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchJobsRequest(_message.Message):
    __slots__ = ("data_source_id", "status", "workspace_id", "resume_token")
    DATA_SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    data_source_id: str
    status: _job_pb2.JobQuery.Status
    workspace_id: str
    resume_token: str
    def __init__(self, data_source_id: _Optional[str] = ..., status: _Optional[_Union[_job_pb2.JobQuery.Status, str]] = ..., workspace_id: _Optional[str] = ..., resume_token: _Optional[str] = ...) -> None: ...

class Listed(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class JobsEvent(_message.Message):
    __slots__ = ("job", "gone", "listed", "keep_alive", "resume_token")
    JOB_FIELD_NUMBER: _ClassVar[int]
    GONE_FIELD_NUMBER: _ClassVar[int]
    LISTED_FIELD_NUMBER: _ClassVar[int]
    KEEP_ALIVE_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.JobInfo
    gone: _job_pb2.JobInfo
    listed: Listed
    keep_alive: KeepAlive
    resume_token: str
    def __init__(self, job: _Optional[_Union[_job_pb2.JobInfo, _Mapping]] = ..., gone: _Optional[_Union[_job_pb2.JobInfo, _Mapping]] = ..., listed: _Optional[_Union[Listed, _Mapping]] = ..., keep_alive: _Optional[_Union[KeepAlive, _Mapping]] = ..., resume_token: _Optional[str] = ...) -> None: ...

class KeepAlive(_message.Message):
    __slots__ = ("at",)
    AT_FIELD_NUMBER: _ClassVar[int]
    at: str
    def __init__(self, at: _Optional[str] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("job", "keep_alive", "events")
    JOB_FIELD_NUMBER: _ClassVar[int]
    KEEP_ALIVE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    job: _job_pb2.JobInfo
    keep_alive: KeepAlive
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, job: _Optional[_Union[_job_pb2.JobInfo, _Mapping]] = ..., keep_alive: _Optional[_Union[KeepAlive, _Mapping]] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("type", "at", "job_id", "job_task_id", "by", "role", "request_id", "error_code", "error_message", "created_count", "quiet_s", "other_job_id")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CREATED_COUNT_FIELD_NUMBER: _ClassVar[int]
    QUIET_S_FIELD_NUMBER: _ClassVar[int]
    OTHER_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    type: str
    at: str
    job_id: str
    job_task_id: str
    by: str
    role: str
    request_id: str
    error_code: str
    error_message: str
    created_count: int
    quiet_s: int
    other_job_id: str
    def __init__(self, type: _Optional[str] = ..., at: _Optional[str] = ..., job_id: _Optional[str] = ..., job_task_id: _Optional[str] = ..., by: _Optional[str] = ..., role: _Optional[str] = ..., request_id: _Optional[str] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ..., created_count: _Optional[int] = ..., quiet_s: _Optional[int] = ..., other_job_id: _Optional[str] = ...) -> None: ...

class EventsInfo(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...
