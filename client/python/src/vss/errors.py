"""Why a call failed: one hierarchy, each error carrying what a caller
can act on.

- `ServerError` (and a subclass per gRPC code): an instance refused the
  request itself. Another instance would give the same answer, so the
  client never retries it elsewhere. `message` is the server's own text,
  which names the field and the limit (`` `message` is 37 bytes, at most
  36 allowed ``).
- `UnreachableError`: no instance could answer (each was down, or timed
  out) within the call's passes.
- `ConfigurationError`: the client cannot be built as asked (no
  endpoints, a bad endpoint, unusable TLS or token settings).

The mapping from gRPC codes to these classes lives in `server_error`,
and which codes mean "this instance cannot answer now" in
`is_instance_failure`: the same four codes as the Rust client.
"""

from __future__ import annotations

import grpc
from grpc import aio

# Codes that say "this instance cannot answer now", not "this request is
# wrong": the Rust client's `is_instance_failure`.
INSTANCE_FAILURES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
    }
)


def is_instance_failure(code: grpc.StatusCode) -> bool:
    """Whether another instance may answer where this one failed."""
    return code in INSTANCE_FAILURES


_CODES_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}


def status_code(number: int) -> grpc.StatusCode:
    """The `grpc.StatusCode` of a numeric code (google.rpc.Code), as an
    `AcquireFailure` carries it; UNKNOWN for a number gRPC does not know."""
    return _CODES_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


class VssError(Exception):
    """Base of every error this client raises."""

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        slot: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.slot = slot


class ConfigurationError(VssError):
    """The client cannot be built as asked; `what` names the setting."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what}: {reason}")
        self.what = what
        self.reason = reason


class UnreachableError(VssError):
    """No instance answered; `failures` says what each one did."""

    def __init__(self, failures: list[str], *, slot: int | None = None) -> None:
        detail = "; ".join(failures) if failures else "no instance tried"
        super().__init__(f"no VSS instance reachable: {detail}", slot=slot)
        self.failures = failures


class ServerError(VssError):
    """An instance refused the request; retrying elsewhere would not help.

    `code` is the gRPC status code, `message` the server's text (it names
    the field and the limit), `endpoint` the instance that answered and
    `slot` the slot of the call, when it had one.
    """

    code: grpc.StatusCode

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode,
        endpoint: str,
        slot: int | None = None,
    ) -> None:
        super().__init__(message, code=code, slot=slot)
        self.code = code
        self.endpoint = endpoint

    def __str__(self) -> str:
        name = self.code.name
        where = f"slot {self.slot}: " if self.slot is not None else ""
        return f"{where}{name}: {self.message}"


class InvalidArgumentError(ServerError):
    """A field is out of its limits (INVALID_ARGUMENT)."""


class NotFoundError(ServerError):
    """The slot is not configured, or the thing asked for is not there
    (NOT_FOUND)."""


class FailedPreconditionError(ServerError):
    """The slot is of another type than the verb needs (FAILED_PRECONDITION)."""


class ResourceExhaustedError(ServerError):
    """A bound was reached: a full queue, too many clients, too many calls
    per second (RESOURCE_EXHAUSTED). The message names the limit."""


class PermissionDeniedError(ServerError):
    """The token may not do this on this slot (PERMISSION_DENIED)."""


class UnauthenticatedError(ServerError):
    """No token, a malformed one, or one the cluster does not hold
    (UNAUTHENTICATED)."""


_BY_CODE: dict[grpc.StatusCode, type[ServerError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
}


def server_error(
    code: grpc.StatusCode, message: str, *, endpoint: str, slot: int | None
) -> ServerError:
    """The error for a refusal with `code`: the one place codes map to
    classes."""
    cls = _BY_CODE.get(code, ServerError)
    return cls(message, code=code, endpoint=endpoint, slot=slot)


async def refusal(call: aio.Call) -> tuple[grpc.StatusCode, str] | None:
    """How the instance answered the opening of a stream: None when it
    accepted it, else the code and message it refused it with (an
    instance that is down answers UNAVAILABLE). A refusal comes as the
    response's headers and status at once (trailers-only), so it is known
    as soon as the headers are."""
    try:
        await call.initial_metadata()
    except aio.AioRpcError as e:
        return e.code(), e.details() or ""
    if call.done():
        code = await call.code()
        if code is not grpc.StatusCode.OK:
            return code, (await call.details()) or ""
    return None
