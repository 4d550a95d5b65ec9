"""A round's start waits, bounded, for invited nodes the SuperLink lists as offline."""

from __future__ import annotations

import time

from securefed.flower.exchange import await_online


class _Grid:
    """``get_node_ids`` as a SuperLink answers it: node 3 is offline for its first calls."""

    def __init__(self, offline_calls: int) -> None:
        self.calls, self.offline_calls = 0, offline_calls

    def get_node_ids(self) -> list[int]:
        self.calls += 1
        return [1, 2] if self.calls <= self.offline_calls else [1, 2, 3]


def test_a_node_coming_back_within_the_wait_is_waited_for():
    grid = _Grid(offline_calls=3)
    assert await_online(grid, [1, 2, 3], timeout_s=5.0, poll_s=0.01) == set()
    assert grid.calls == 4  # asked until node 3 was listed, not once more


def test_a_node_still_offline_after_the_wait_is_returned_and_the_wait_is_bounded():
    grid = _Grid(offline_calls=10**9)
    started = time.perf_counter()
    assert await_online(grid, [1, 3], timeout_s=0.2, poll_s=0.01) == {3}
    assert 0.2 <= time.perf_counter() - started < 2.0


def test_all_online_returns_at_once_and_uninvited_offline_nodes_are_not_waited_for():
    grid = _Grid(offline_calls=10**9)
    assert await_online(grid, [1, 2], timeout_s=60.0, poll_s=0.01) == set()
    assert grid.calls == 1
