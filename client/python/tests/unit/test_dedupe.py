from vss.dedupe import Seen


def test_repeats_are_caught_and_the_window_is_bounded() -> None:
    seen = Seen(2)
    assert seen.first(1, 10)
    assert not seen.first(1, 10)
    assert seen.first(2, 10), "same id on another slot is another message"
    assert seen.first(1, 11)
    # (1, 10) fell out of the window of 2.
    assert seen.first(1, 10)
    assert len(seen) == 2


def test_a_zero_window_still_catches_an_immediate_repeat() -> None:
    seen = Seen(0)
    assert seen.first(1, 1)
    assert not seen.first(1, 1)
