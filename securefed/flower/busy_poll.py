"""A poll interval that is short for a moment after a node replies, and long while it idles.

A securefed round is five message exchanges in a row: once a node has pushed its reply, the
server's next message for it comes as soon as the slowest node has answered, a fraction of a
second later (protocol stages; up to a second or two after the training stage, whose nodes
finish apart). A node that then waits its idle interval (the SuperNode's pull from the
SuperLink, 0.2 s; the warm executor's acquire of a task from its SuperNode, 0.1 s) makes
every exchange wait for its slowest node's poll: for 3 nodes about three quarters of that
interval, on each of the five exchanges (deploy/README.md, "The SuperNode's polls").

``BusyPoll`` answers ``busy_s`` for ``window_s`` seconds after ``replied()`` and ``idle_s``
otherwise: a node that is not in a run (it has replied to nothing for ``window_s``) polls
exactly as often as before, and a reply buys at most ``window_s / busy_s`` quicker polls.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

from securefed.errors import ConfigError

BUSY_POLL_S = 0.05  # securefed's default: how often a node polls just after a reply ...
BUSY_WINDOW_S = 2.0  # ... for this long (the training stage's nodes finish up to ~1.5 s apart)


def add_busy_arguments(parser: argparse.ArgumentParser, idle_flag: str) -> None:
    """``--busy-poll`` and ``--busy-window`` on a node's command line, whose idle interval is
    ``idle_flag``."""
    parser.add_argument(
        "--busy-poll", type=float, help=f"seconds (default {BUSY_POLL_S}, at most {idle_flag})"
    )
    parser.add_argument("--busy-window", type=float, default=BUSY_WINDOW_S, help="seconds")


def busy_seconds(busy_poll: float | None, idle_s: float) -> float:
    """The ``--busy-poll`` given, else the default, never longer than the idle poll."""
    return min(BUSY_POLL_S, idle_s) if busy_poll is None else busy_poll


class BusyPoll:
    """How long to wait before polling again: ``busy_s`` within ``window_s`` seconds of the
    last ``replied()``, else ``idle_s``."""

    def __init__(
        self,
        idle_s: float,
        busy_s: float,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < busy_s <= idle_s:
            raise ConfigError("--busy-poll", busy_s, f"seconds in (0, {idle_s}] (the idle poll)")
        if window_s < 0:
            raise ConfigError("--busy-window", window_s, "seconds >= 0 (0: always the idle poll)")
        self.idle_s, self.busy_s, self.window_s, self.clock = idle_s, busy_s, window_s, clock
        self._replied_at = -math.inf

    def replied(self) -> None:
        """The node has just handed over a reply: its next message is due shortly."""
        self._replied_at = self.clock()

    def interval(self) -> float:
        """Seconds to wait before the next poll."""
        busy = self.clock() - self._replied_at < self.window_s
        return self.busy_s if busy else self.idle_s
