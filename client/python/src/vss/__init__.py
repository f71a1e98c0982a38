"""`vss`: a client for VSS clusters, with the guarantees of the Rust
`vss-client`.

    async with vss.Client(["127.0.0.1:7700", "127.0.0.1:7710", "127.0.0.1:7720"]) as client:
        grant = await client.acquire(0)

It connects to every instance at once, follows the routing table and
calls each slot's owner first, fails over on instance failures only (never
on request errors), coalesces concurrent acquires into `AcquireBatch`
calls, and hands each signal once across instances. `vss.sync.Client` is
the same for code without an event loop. The generated protobuf and gRPC
stubs are in `vss.v1`.
"""

from .client import DEFAULT_CALL_TIMEOUT, MAX_PUBLISH_WAIT, Client
from .replies import Grant, Published
from .errors import (
    ConfigurationError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    ServerError,
    UnauthenticatedError,
    UnreachableError,
    VssError,
    is_instance_failure,
)
from .security import Security
from .subscription import Delivery, Subscription
from .v1.cluster_pb2 import RoutingTable, SlotRoute
from .v1.vss_pb2 import (
    AnnounceReply,
    CounterValue,
    GetReply,
    KeyValue,
    ListKeysReply,
    Service,
    ServiceChange,
    StatusReply,
    Tick,
    Version,
    WithdrawReply,
    WriteReply,
)
from .watches import ServiceWatch, TickWatch

__all__ = [
    "DEFAULT_CALL_TIMEOUT",
    "MAX_PUBLISH_WAIT",
    "AnnounceReply",
    "Client",
    "ConfigurationError",
    "CounterValue",
    "Delivery",
    "FailedPreconditionError",
    "GetReply",
    "Grant",
    "InvalidArgumentError",
    "KeyValue",
    "ListKeysReply",
    "NotFoundError",
    "PermissionDeniedError",
    "Published",
    "ResourceExhaustedError",
    "RoutingTable",
    "Security",
    "ServerError",
    "Service",
    "ServiceChange",
    "ServiceWatch",
    "SlotRoute",
    "StatusReply",
    "Subscription",
    "Tick",
    "TickWatch",
    "UnauthenticatedError",
    "UnreachableError",
    "Version",
    "VssError",
    "WithdrawReply",
    "WriteReply",
    "is_instance_failure",
]
