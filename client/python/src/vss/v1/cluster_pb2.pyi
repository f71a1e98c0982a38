from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FetchStateRequest(_message.Message):
    __slots__ = ()
    FROM_FIELD_NUMBER: _ClassVar[int]
    def __init__(self, **kwargs) -> None: ...

class FetchStateReply(_message.Message):
    __slots__ = ("slots", "synced")
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    SYNCED_FIELD_NUMBER: _ClassVar[int]
    slots: _containers.RepeatedCompositeFieldContainer[SlotState]
    synced: bool
    def __init__(self, slots: _Optional[_Iterable[_Union[SlotState, _Mapping]]] = ..., synced: _Optional[bool] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("epoch",)
    FROM_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    def __init__(self, epoch: _Optional[int] = ..., **kwargs) -> None: ...

class HeartbeatReply(_message.Message):
    __slots__ = ("epoch", "leader", "config_generation", "hears", "held", "leaving")
    FROM_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    CONFIG_GENERATION_FIELD_NUMBER: _ClassVar[int]
    HEARS_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    LEAVING_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    leader: str
    config_generation: int
    hears: _containers.RepeatedScalarFieldContainer[str]
    held: _containers.RepeatedCompositeFieldContainer[SlotPart]
    leaving: bool
    def __init__(self, epoch: _Optional[int] = ..., leader: _Optional[str] = ..., config_generation: _Optional[int] = ..., hears: _Optional[_Iterable[str]] = ..., held: _Optional[_Iterable[_Union[SlotPart, _Mapping]]] = ..., leaving: _Optional[bool] = ..., **kwargs) -> None: ...

class SlotPart(_message.Message):
    __slots__ = ("slot", "partition")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    slot: int
    partition: int
    def __init__(self, slot: _Optional[int] = ..., partition: _Optional[int] = ...) -> None: ...

class RoutingTable(_message.Message):
    __slots__ = ("epoch", "leader", "fallback_leader", "members", "routes")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_LEADER_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    leader: str
    fallback_leader: str
    members: _containers.RepeatedScalarFieldContainer[str]
    routes: _containers.RepeatedCompositeFieldContainer[SlotRoute]
    def __init__(self, epoch: _Optional[int] = ..., leader: _Optional[str] = ..., fallback_leader: _Optional[str] = ..., members: _Optional[_Iterable[str]] = ..., routes: _Optional[_Iterable[_Union[SlotRoute, _Mapping]]] = ...) -> None: ...

class SlotRoute(_message.Message):
    __slots__ = ("slot", "owner", "standby", "partitions")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    STANDBY_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    slot: int
    owner: str
    standby: str
    partitions: _containers.RepeatedCompositeFieldContainer[PartitionRoute]
    def __init__(self, slot: _Optional[int] = ..., owner: _Optional[str] = ..., standby: _Optional[str] = ..., partitions: _Optional[_Iterable[_Union[PartitionRoute, _Mapping]]] = ...) -> None: ...

class PartitionRoute(_message.Message):
    __slots__ = ("owner", "standby")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    STANDBY_FIELD_NUMBER: _ClassVar[int]
    owner: str
    standby: str
    def __init__(self, owner: _Optional[str] = ..., standby: _Optional[str] = ...) -> None: ...

class InstallRoutingReply(_message.Message):
    __slots__ = ("epoch",)
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    def __init__(self, epoch: _Optional[int] = ...) -> None: ...

class ReplicateRequest(_message.Message):
    __slots__ = ("epoch", "slots")
    FROM_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    slots: _containers.RepeatedCompositeFieldContainer[SlotState]
    def __init__(self, epoch: _Optional[int] = ..., slots: _Optional[_Iterable[_Union[SlotState, _Mapping]]] = ..., **kwargs) -> None: ...

class SlotState(_message.Message):
    __slots__ = ("slot", "state", "partition")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    slot: int
    state: bytes
    partition: int
    def __init__(self, slot: _Optional[int] = ..., state: _Optional[bytes] = ..., partition: _Optional[int] = ...) -> None: ...

class ReplicateReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeliverRequest(_message.Message):
    __slots__ = ("slot", "message_id", "payload", "publisher", "timeout_ms", "all_except", "clients")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PUBLISHER_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    ALL_EXCEPT_FIELD_NUMBER: _ClassVar[int]
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    slot: int
    message_id: int
    payload: bytes
    publisher: str
    timeout_ms: int
    all_except: ClientList
    clients: ClientList
    def __init__(self, slot: _Optional[int] = ..., message_id: _Optional[int] = ..., payload: _Optional[bytes] = ..., publisher: _Optional[str] = ..., timeout_ms: _Optional[int] = ..., all_except: _Optional[_Union[ClientList, _Mapping]] = ..., clients: _Optional[_Union[ClientList, _Mapping]] = ...) -> None: ...

class ClientList(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeliverReply(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[DeliveryOutcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[DeliveryOutcome, _Mapping]]] = ...) -> None: ...

class DeliveryOutcome(_message.Message):
    __slots__ = ("client", "delivered")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    client: str
    delivered: bool
    def __init__(self, client: _Optional[str] = ..., delivered: _Optional[bool] = ...) -> None: ...

class ApplyConfigRequest(_message.Message):
    __slots__ = ("config_yaml", "generation")
    CONFIG_YAML_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    config_yaml: str
    generation: int
    def __init__(self, config_yaml: _Optional[str] = ..., generation: _Optional[int] = ...) -> None: ...

class ApplyConfigReply(_message.Message):
    __slots__ = ("generation",)
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    generation: int
    def __init__(self, generation: _Optional[int] = ...) -> None: ...
