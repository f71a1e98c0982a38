"""Failover classification and the error hierarchy."""

import grpc
import pytest

from vss.errors import (
    INSTANCE_FAILURES,
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
    server_error,
    status_code,
)

# The Rust client's `is_instance_failure` (client/src/lib.rs).
RUST_INSTANCE_FAILURES = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "UNKNOWN"}


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda c: c.name)
def test_only_the_rust_clients_instance_failures_move_to_another_instance(
    code: grpc.StatusCode,
) -> None:
    assert is_instance_failure(code) == (code.name in RUST_INSTANCE_FAILURES)


def test_the_set_is_exactly_four_codes() -> None:
    assert {c.name for c in INSTANCE_FAILURES} == RUST_INSTANCE_FAILURES


def test_numeric_codes_of_batch_failures_map_back() -> None:
    assert status_code(3) is grpc.StatusCode.INVALID_ARGUMENT
    assert status_code(14) is grpc.StatusCode.UNAVAILABLE
    assert status_code(999) is grpc.StatusCode.UNKNOWN


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgumentError),
        (grpc.StatusCode.NOT_FOUND, NotFoundError),
        (grpc.StatusCode.FAILED_PRECONDITION, FailedPreconditionError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ResourceExhaustedError),
        (grpc.StatusCode.PERMISSION_DENIED, PermissionDeniedError),
        (grpc.StatusCode.UNAUTHENTICATED, UnauthenticatedError),
        (grpc.StatusCode.INTERNAL, ServerError),
    ],
)
def test_refusals_carry_code_slot_endpoint_and_message(
    code: grpc.StatusCode, cls: type[ServerError]
) -> None:
    e = server_error(code, "`message` is 37 bytes, at most 36 allowed", endpoint="h:1", slot=10)
    assert type(e) is cls
    assert isinstance(e, VssError)
    assert e.code is code and e.slot == 10 and e.endpoint == "h:1"
    assert e.message == "`message` is 37 bytes, at most 36 allowed"
    assert str(e) == f"slot 10: {code.name}: `message` is 37 bytes, at most 36 allowed"


def test_unreachable_lists_what_each_instance_did() -> None:
    e = UnreachableError(["a:1: UNAVAILABLE refused", "b:2: DEADLINE_EXCEEDED"], slot=3)
    assert e.code is None and e.slot == 3
    assert str(e) == "no VSS instance reachable: a:1: UNAVAILABLE refused; b:2: DEADLINE_EXCEEDED"
