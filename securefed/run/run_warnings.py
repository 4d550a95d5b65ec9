"""Each warning once per run: shown above the progress bars and kept for the run folder.

Libraries and securefed warn through ``warnings.warn``. Python shows a warning once per call
site only until some code changes the warning filters, which Opacus and our DP-SGD wrapper do
every time an institution trains, so the same warning used to print once per institution per
round. Inside ``RunWarnings`` every warning that the filters let through goes to one hook that
shows each distinct (category, message) once and keeps it; ``simulate`` writes them to the run
folder's ``warnings.json`` and the audit lists them.

A library's notice about its own API (``DeprecationWarning``, ``PendingDeprecationWarning``,
``FutureWarning``: transformers deprecating ``is_gradient_checkpointing``, say) is not a
finding about the run: it is neither shown nor kept. Everything else is, whoever warns (Opacus
saying its noise is not from a CSPRNG is about this run).
"""

from __future__ import annotations

import warnings
from types import TracebackType

from rich.console import Console

LIBRARY_NOTICES = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


class RunWarnings:
    """Collects warnings while active; ``records`` holds each distinct one, first seen first."""

    def __init__(self, console: Console, earlier: list[dict[str, str]] | None = None) -> None:
        self.console = console
        self.records: list[dict[str, str]] = list(earlier or [])  # a resumed run's, kept
        self._saved = warnings.showwarning

    def __enter__(self) -> RunWarnings:
        self._saved = warnings.showwarning
        warnings.showwarning = self._show
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        warnings.showwarning = self._saved

    def _show(self, message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, LIBRARY_NOTICES):
            return
        record = {"category": category.__name__, "message": str(message)}
        if record in self.records:
            return
        self.records.append(record)
        self.console.print(f"warning: {message}", highlight=False, soft_wrap=True, markup=False)
