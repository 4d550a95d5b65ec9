"""A kill at a chosen point of a run, for the resume tests."""

from __future__ import annotations

from securefed.run.progress import Progress


class CrashAfterRound(Progress):
    """Simulates a kill (Ctrl-C) right after round ``n`` was recorded."""

    def __init__(self, n: int) -> None:
        super().__init__(enabled=False)
        self.n = n

    def log(self, message: str) -> None:
        if message.startswith(f"round {self.n}:"):
            raise KeyboardInterrupt
