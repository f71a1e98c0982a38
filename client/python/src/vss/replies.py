"""What the limiter and signal verbs return."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Grant(NamedTuple):
    """What an acquire got (a tuple: cheap to make on the acquire path)."""

    # Tokens granted; 0 when refused.
    granted: int
    # Tokens left right after this call.
    remaining: int
    # Milliseconds until the next refill, or until there is room.
    reset_ms: int


@dataclass(frozen=True)
class Published:
    """What a publish achieved."""

    message_id: int
    # Deliveries acknowledged in time.
    delivered: int
    # Deliveries that failed or timed out.
    failed: int
    # Random slots: the client that took the message.
    taken_by: str | None
