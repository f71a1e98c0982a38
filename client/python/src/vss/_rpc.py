"""Typed callables for the `vss.v1.Vss` methods over one `grpc.aio`
channel.

The generated `vss_pb2_grpc.VssStub` builds the same callables but is
untyped; building them here from the generated messages keeps the rest
of the package checked by mypy --strict.
"""

from __future__ import annotations

from google.protobuf.message import Message
from grpc import aio

from .v1 import vss_pb2 as pb

_SERVICE = "/vss.v1.Vss/"


class VssCalls:
    """The client API of one instance."""

    def __init__(self, channel: aio.Channel) -> None:
        def unary(name: str, req: type[Message], reply: type[Message]) -> aio.UnaryUnaryMultiCallable:  # type: ignore[type-arg]
            return channel.unary_unary(
                _SERVICE + name,
                request_serializer=req.SerializeToString,
                response_deserializer=reply.FromString,
            )

        self.acquire: aio.UnaryUnaryMultiCallable[pb.AcquireRequest, pb.AcquireReply] = unary(
            "Acquire", pb.AcquireRequest, pb.AcquireReply
        )
        self.acquire_batch: aio.UnaryUnaryMultiCallable[
            pb.AcquireBatchRequest, pb.AcquireBatchReply
        ] = unary("AcquireBatch", pb.AcquireBatchRequest, pb.AcquireBatchReply)
        self.call: aio.UnaryUnaryMultiCallable[pb.CallRequest, pb.CallReply] = unary(
            "Call", pb.CallRequest, pb.CallReply
        )
        self.status: aio.UnaryUnaryMultiCallable[pb.StatusRequest, pb.StatusReply] = unary(
            "Status", pb.StatusRequest, pb.StatusReply
        )
        self.publish: aio.UnaryUnaryMultiCallable[pb.PublishRequest, pb.PublishReply] = unary(
            "Publish", pb.PublishRequest, pb.PublishReply
        )
        self.register: aio.UnaryUnaryMultiCallable[
            pb.MembershipRequest, pb.MembershipReply
        ] = unary("Register", pb.MembershipRequest, pb.MembershipReply)
        self.deregister: aio.UnaryUnaryMultiCallable[
            pb.MembershipRequest, pb.MembershipReply
        ] = unary("Deregister", pb.MembershipRequest, pb.MembershipReply)
        self.events: aio.StreamStreamMultiCallable[pb.ClientMessage, pb.Event] = (
            channel.stream_stream(
                _SERVICE + "Events",
                request_serializer=pb.ClientMessage.SerializeToString,
                response_deserializer=pb.Event.FromString,
            )
        )
        self.watch_routing: aio.UnaryStreamMultiCallable[
            pb.WatchRoutingRequest, pb.RoutingUpdate
        ] = channel.unary_stream(
            _SERVICE + "WatchRouting",
            request_serializer=pb.WatchRoutingRequest.SerializeToString,
            response_deserializer=pb.RoutingUpdate.FromString,
        )
        self.increment: aio.UnaryUnaryMultiCallable[pb.CounterChange, pb.CounterValue] = (
            unary("Increment", pb.CounterChange, pb.CounterValue)
        )
        self.decrement: aio.UnaryUnaryMultiCallable[pb.CounterChange, pb.CounterValue] = (
            unary("Decrement", pb.CounterChange, pb.CounterValue)
        )
        self.read_counter: aio.UnaryUnaryMultiCallable[
            pb.ReadCounterRequest, pb.CounterValue
        ] = unary("ReadCounter", pb.ReadCounterRequest, pb.CounterValue)
        self.set: aio.UnaryUnaryMultiCallable[pb.SetRequest, pb.WriteReply] = unary(
            "Set", pb.SetRequest, pb.WriteReply
        )
        self.get: aio.UnaryUnaryMultiCallable[pb.GetRequest, pb.GetReply] = unary(
            "Get", pb.GetRequest, pb.GetReply
        )
        self.delete: aio.UnaryUnaryMultiCallable[pb.DeleteRequest, pb.WriteReply] = unary(
            "Delete", pb.DeleteRequest, pb.WriteReply
        )
        self.list_keys: aio.UnaryUnaryMultiCallable[pb.ListKeysRequest, pb.ListKeysReply] = (
            unary("ListKeys", pb.ListKeysRequest, pb.ListKeysReply)
        )
        self.announce: aio.UnaryUnaryMultiCallable[pb.AnnounceRequest, pb.AnnounceReply] = (
            unary("Announce", pb.AnnounceRequest, pb.AnnounceReply)
        )
        self.withdraw: aio.UnaryUnaryMultiCallable[pb.WithdrawRequest, pb.WithdrawReply] = (
            unary("Withdraw", pb.WithdrawRequest, pb.WithdrawReply)
        )
        self.list_services: aio.UnaryUnaryMultiCallable[
            pb.ListServicesRequest, pb.ListServicesReply
        ] = unary("ListServices", pb.ListServicesRequest, pb.ListServicesReply)
        self.watch_services: aio.UnaryStreamMultiCallable[
            pb.ListServicesRequest, pb.ServiceChange
        ] = channel.unary_stream(
            _SERVICE + "WatchServices",
            request_serializer=pb.ListServicesRequest.SerializeToString,
            response_deserializer=pb.ServiceChange.FromString,
        )
        self.watch_ticks: aio.UnaryStreamMultiCallable[pb.WatchTicksRequest, pb.Tick] = (
            channel.unary_stream(
                _SERVICE + "WatchTicks",
                request_serializer=pb.WatchTicksRequest.SerializeToString,
                response_deserializer=pb.Tick.FromString,
            )
        )
