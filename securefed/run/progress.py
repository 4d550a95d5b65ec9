"""Progress bars for rounds and client training (rich), or silence in tests and pipes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress


class Progress:
    """A thin facade: the round loop reports work, this decides whether anyone sees it."""

    def __init__(self, console: Console | None = None, enabled: bool = True) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self._bars: RichProgress | None = None

    def __enter__(self) -> Progress:
        if self.enabled:
            self._bars = RichProgress(
                TextColumn("{task.description:<12}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self._bars.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._bars is not None:
            self._bars.__exit__(*exc)
            self._bars = None

    def iterate(
        self, items: Iterable, description: str, total: int, completed: int = 0
    ) -> Iterator:
        if self._bars is None:
            yield from items
            return
        task = self._bars.add_task(description, total=total, completed=completed)
        for item in items:
            yield item
            self._bars.advance(task)

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[], None]]:
        if self._bars is None:
            yield lambda: None
            return
        task = self._bars.add_task(description, total=total)
        try:
            yield lambda: self._bars.advance(task)
        finally:
            self._bars.remove_task(task)

    def log(self, message: str) -> None:
        if self.enabled:
            self.console.log(message)

    @staticmethod
    def metrics(values: dict[str, float]) -> str:
        """``accuracy 0.812, macro_f1 0.790``: metrics as the log lines show them."""
        return ", ".join(f"{k} {v:.3f}" for k, v in values.items())
