"""Which instance the client tries first: the slot's owner, then its
standby, then the rest in the order given (client/src/routing.rs)."""

from vss.routing import Routing, newer
from vss.v1 import cluster_pb2
from vss.v1 import vss_pb2 as pb


def routing_with(ids: list[str], owner: str, standby: str, epoch: int) -> Routing:
    r = Routing(len(ids))
    for i, id_ in enumerate(ids):
        r.offer(i, pb.RoutingUpdate(instance=id_))
    r.offer(
        0,
        pb.RoutingUpdate(
            instance=ids[0],
            table=cluster_pb2.RoutingTable(
                epoch=epoch,
                leader="a",
                routes=[cluster_pb2.SlotRoute(slot=4, owner=owner, standby=standby)],
            ),
        ),
    )
    return r


def test_owner_then_standby_then_the_rest() -> None:
    r = routing_with(["a", "b", "c"], "c", "b", 3)
    assert r.order(4, 3) == [2, 1, 0]
    assert r.first(4) == 2
    assert r.first(5) == 0
    # A slot without a route, or no slot: the given order.
    assert r.order(5, 3) == [0, 1, 2]
    assert r.order(None, 3) == [0, 1, 2]


def test_unknown_ids_fall_back_to_the_given_order() -> None:
    assert Routing(3).order(4, 3) == [0, 1, 2]
    r = routing_with(["a", "b", "c"], "z", "", 1)
    assert r.order(4, 3) == [0, 1, 2]
    assert r.first(4) == 0


def test_a_standby_alone_is_tried_first_when_the_owner_is_unknown() -> None:
    r = routing_with(["a", "b", "c"], "z", "b", 1)
    assert r.order(4, 3) == [1, 0, 2]


def test_only_newer_tables_replace_the_held_one() -> None:
    r = routing_with(["a", "b", "c"], "c", "b", 3)
    held = r.table
    assert held is not None
    older = cluster_pb2.RoutingTable()
    older.CopyFrom(held)
    older.epoch = 2
    assert not newer(older, held)
    r.offer(1, pb.RoutingUpdate(instance="b", table=older))
    assert r.table is not None and r.table.epoch == 3
    tie = cluster_pb2.RoutingTable()
    tie.CopyFrom(held)
    tie.leader = "b"
    assert newer(tie, held), "ties go to the higher leader id, as on the servers"
    assert newer(held, None)


def test_an_update_without_a_table_still_names_the_instance() -> None:
    r = Routing(2)
    r.offer(1, pb.RoutingUpdate(instance="b"))
    assert r.ids == [None, "b"]
    assert r.table is None
