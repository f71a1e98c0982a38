from vss.v1 import cluster_pb2 as _cluster_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CounterChange(_message.Message):
    __slots__ = ("slot", "amount", "request_id")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    slot: int
    amount: int
    request_id: int
    def __init__(self, slot: _Optional[int] = ..., amount: _Optional[int] = ..., request_id: _Optional[int] = ...) -> None: ...

class ReadCounterRequest(_message.Message):
    __slots__ = ("slot",)
    SLOT_FIELD_NUMBER: _ClassVar[int]
    slot: int
    def __init__(self, slot: _Optional[int] = ...) -> None: ...

class CounterValue(_message.Message):
    __slots__ = ("value", "increments", "decrements", "applied", "replicas")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    INCREMENTS_FIELD_NUMBER: _ClassVar[int]
    DECREMENTS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    value: int
    increments: int
    decrements: int
    applied: bool
    replicas: int
    def __init__(self, value: _Optional[int] = ..., increments: _Optional[int] = ..., decrements: _Optional[int] = ..., applied: _Optional[bool] = ..., replicas: _Optional[int] = ...) -> None: ...

class Version(_message.Message):
    __slots__ = ("hlc", "instance")
    HLC_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    hlc: int
    instance: str
    def __init__(self, hlc: _Optional[int] = ..., instance: _Optional[str] = ...) -> None: ...

class SetRequest(_message.Message):
    __slots__ = ("slot", "key", "value")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    slot: int
    key: str
    value: bytes
    def __init__(self, slot: _Optional[int] = ..., key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("slot", "key")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    slot: int
    key: str
    def __init__(self, slot: _Optional[int] = ..., key: _Optional[str] = ...) -> None: ...

class WriteReply(_message.Message):
    __slots__ = ("version", "existed", "replicas")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    version: Version
    existed: bool
    replicas: int
    def __init__(self, version: _Optional[_Union[Version, _Mapping]] = ..., existed: _Optional[bool] = ..., replicas: _Optional[int] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("slot", "key", "at_least")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    AT_LEAST_FIELD_NUMBER: _ClassVar[int]
    slot: int
    key: str
    at_least: Version
    def __init__(self, slot: _Optional[int] = ..., key: _Optional[str] = ..., at_least: _Optional[_Union[Version, _Mapping]] = ...) -> None: ...

class GetReply(_message.Message):
    __slots__ = ("found", "value", "version", "deleted")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    found: bool
    value: bytes
    version: Version
    deleted: bool
    def __init__(self, found: _Optional[bool] = ..., value: _Optional[bytes] = ..., version: _Optional[_Union[Version, _Mapping]] = ..., deleted: _Optional[bool] = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ("slot", "prefix", "limit")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    slot: int
    prefix: str
    limit: int
    def __init__(self, slot: _Optional[int] = ..., prefix: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class KeyValue(_message.Message):
    __slots__ = ("key", "value", "version")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    version: Version
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ..., version: _Optional[_Union[Version, _Mapping]] = ...) -> None: ...

class ListKeysReply(_message.Message):
    __slots__ = ("entries", "truncated")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[KeyValue]
    truncated: bool
    def __init__(self, entries: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class AnnounceRequest(_message.Message):
    __slots__ = ("slot", "app", "address", "ttl_ms")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    slot: int
    app: str
    address: str
    ttl_ms: int
    def __init__(self, slot: _Optional[int] = ..., app: _Optional[str] = ..., address: _Optional[str] = ..., ttl_ms: _Optional[int] = ...) -> None: ...

class AnnounceReply(_message.Message):
    __slots__ = ("expires_ms", "added", "replicas")
    EXPIRES_MS_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    expires_ms: int
    added: bool
    replicas: int
    def __init__(self, expires_ms: _Optional[int] = ..., added: _Optional[bool] = ..., replicas: _Optional[int] = ...) -> None: ...

class WithdrawRequest(_message.Message):
    __slots__ = ("slot", "app", "address")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    slot: int
    app: str
    address: str
    def __init__(self, slot: _Optional[int] = ..., app: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class WithdrawReply(_message.Message):
    __slots__ = ("removed", "replicas")
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    removed: bool
    replicas: int
    def __init__(self, removed: _Optional[bool] = ..., replicas: _Optional[int] = ...) -> None: ...

class ListServicesRequest(_message.Message):
    __slots__ = ("slot", "app")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    slot: int
    app: str
    def __init__(self, slot: _Optional[int] = ..., app: _Optional[str] = ...) -> None: ...

class Service(_message.Message):
    __slots__ = ("app", "address", "updated_ms", "expires_ms")
    APP_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_MS_FIELD_NUMBER: _ClassVar[int]
    app: str
    address: str
    updated_ms: int
    expires_ms: int
    def __init__(self, app: _Optional[str] = ..., address: _Optional[str] = ..., updated_ms: _Optional[int] = ..., expires_ms: _Optional[int] = ...) -> None: ...

class ListServicesReply(_message.Message):
    __slots__ = ("services",)
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedCompositeFieldContainer[Service]
    def __init__(self, services: _Optional[_Iterable[_Union[Service, _Mapping]]] = ...) -> None: ...

class ServiceChange(_message.Message):
    __slots__ = ("kind", "service")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[ServiceChange.Kind]
        ADDED: _ClassVar[ServiceChange.Kind]
        RENEWED: _ClassVar[ServiceChange.Kind]
        EXPIRED: _ClassVar[ServiceChange.Kind]
    KIND_UNSPECIFIED: ServiceChange.Kind
    ADDED: ServiceChange.Kind
    RENEWED: ServiceChange.Kind
    EXPIRED: ServiceChange.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    kind: ServiceChange.Kind
    service: Service
    def __init__(self, kind: _Optional[_Union[ServiceChange.Kind, str]] = ..., service: _Optional[_Union[Service, _Mapping]] = ...) -> None: ...

class WatchTicksRequest(_message.Message):
    __slots__ = ("slot",)
    SLOT_FIELD_NUMBER: _ClassVar[int]
    slot: int
    def __init__(self, slot: _Optional[int] = ...) -> None: ...

class Tick(_message.Message):
    __slots__ = ("slot", "number", "due_ms", "sent_ms", "instance")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    DUE_MS_FIELD_NUMBER: _ClassVar[int]
    SENT_MS_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    slot: int
    number: int
    due_ms: int
    sent_ms: int
    instance: str
    def __init__(self, slot: _Optional[int] = ..., number: _Optional[int] = ..., due_ms: _Optional[int] = ..., sent_ms: _Optional[int] = ..., instance: _Optional[str] = ...) -> None: ...

class WatchRoutingRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RoutingUpdate(_message.Message):
    __slots__ = ("instance", "table")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    instance: str
    table: _cluster_pb2.RoutingTable
    def __init__(self, instance: _Optional[str] = ..., table: _Optional[_Union[_cluster_pb2.RoutingTable, _Mapping]] = ...) -> None: ...

class PublishRequest(_message.Message):
    __slots__ = ("slot", "message", "client_id", "message_id")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    slot: int
    message: bytes
    client_id: str
    message_id: int
    def __init__(self, slot: _Optional[int] = ..., message: _Optional[bytes] = ..., client_id: _Optional[str] = ..., message_id: _Optional[int] = ...) -> None: ...

class PublishReply(_message.Message):
    __slots__ = ("message_id", "delivered", "failed", "taken_by")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    TAKEN_BY_FIELD_NUMBER: _ClassVar[int]
    message_id: int
    delivered: int
    failed: int
    taken_by: str
    def __init__(self, message_id: _Optional[int] = ..., delivered: _Optional[int] = ..., failed: _Optional[int] = ..., taken_by: _Optional[str] = ...) -> None: ...

class MembershipRequest(_message.Message):
    __slots__ = ("slot", "client_id")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    slot: int
    client_id: str
    def __init__(self, slot: _Optional[int] = ..., client_id: _Optional[str] = ...) -> None: ...

class MembershipReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClientMessage(_message.Message):
    __slots__ = ("hello", "ack")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    ack: Ack
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("client_id", "slots")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    slots: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, client_id: _Optional[str] = ..., slots: _Optional[_Iterable[int]] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("message_id",)
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    message_id: int
    def __init__(self, message_id: _Optional[int] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("slot", "message_id", "payload", "publisher")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PUBLISHER_FIELD_NUMBER: _ClassVar[int]
    slot: int
    message_id: int
    payload: bytes
    publisher: str
    def __init__(self, slot: _Optional[int] = ..., message_id: _Optional[int] = ..., payload: _Optional[bytes] = ..., publisher: _Optional[str] = ...) -> None: ...

class AcquireRequest(_message.Message):
    __slots__ = ("slot", "key", "tokens")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    slot: int
    key: str
    tokens: int
    def __init__(self, slot: _Optional[int] = ..., key: _Optional[str] = ..., tokens: _Optional[int] = ...) -> None: ...

class AcquireReply(_message.Message):
    __slots__ = ("granted", "remaining", "reset_ms")
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    RESET_MS_FIELD_NUMBER: _ClassVar[int]
    granted: int
    remaining: int
    reset_ms: int
    def __init__(self, granted: _Optional[int] = ..., remaining: _Optional[int] = ..., reset_ms: _Optional[int] = ...) -> None: ...

class AcquireBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[AcquireRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[AcquireRequest, _Mapping]]] = ...) -> None: ...

class AcquireBatchReply(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[AcquireOutcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[AcquireOutcome, _Mapping]]] = ...) -> None: ...

class AcquireOutcome(_message.Message):
    __slots__ = ("reply", "failure")
    REPLY_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    reply: AcquireReply
    failure: AcquireFailure
    def __init__(self, reply: _Optional[_Union[AcquireReply, _Mapping]] = ..., failure: _Optional[_Union[AcquireFailure, _Mapping]] = ...) -> None: ...

class AcquireFailure(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class CallRequest(_message.Message):
    __slots__ = ("slot", "op", "payload")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    slot: int
    op: str
    payload: bytes
    def __init__(self, slot: _Optional[int] = ..., op: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class CallReply(_message.Message):
    __slots__ = ("payload",)
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    def __init__(self, payload: _Optional[bytes] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("instance", "version", "config_generation", "slots", "routing", "peers")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_GENERATION_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    instance: str
    version: str
    config_generation: int
    slots: _containers.RepeatedCompositeFieldContainer[SlotStatus]
    routing: _cluster_pb2.RoutingTable
    peers: _containers.RepeatedCompositeFieldContainer[PeerStatus]
    def __init__(self, instance: _Optional[str] = ..., version: _Optional[str] = ..., config_generation: _Optional[int] = ..., slots: _Optional[_Iterable[_Union[SlotStatus, _Mapping]]] = ..., routing: _Optional[_Union[_cluster_pb2.RoutingTable, _Mapping]] = ..., peers: _Optional[_Iterable[_Union[PeerStatus, _Mapping]]] = ...) -> None: ...

class PeerStatus(_message.Message):
    __slots__ = ("id", "address", "healthy", "rtt_us", "epoch", "config_generation")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    RTT_US_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    CONFIG_GENERATION_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    healthy: bool
    rtt_us: int
    epoch: int
    config_generation: int
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ..., healthy: _Optional[bool] = ..., rtt_us: _Optional[int] = ..., epoch: _Optional[int] = ..., config_generation: _Optional[int] = ...) -> None: ...

class SlotStatus(_message.Message):
    __slots__ = ("id", "type", "calls", "errors", "restarts", "delivered", "failed_deliveries")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    FAILED_DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    id: int
    type: str
    calls: int
    errors: int
    restarts: int
    delivered: int
    failed_deliveries: int
    def __init__(self, id: _Optional[int] = ..., type: _Optional[str] = ..., calls: _Optional[int] = ..., errors: _Optional[int] = ..., restarts: _Optional[int] = ..., delivered: _Optional[int] = ..., failed_deliveries: _Optional[int] = ...) -> None: ...
