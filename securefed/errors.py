"""The error hierarchy: every failure a user or a peer can cause has one typed home.

The CLI prints any ``SecurefedError`` as one line and exits non-zero; anything else is a
bug and keeps its traceback.

May import: the standard library only (every layer imports it).
"""

from __future__ import annotations


class SecurefedError(Exception):
    """Base of every error securefed raises on purpose."""


class ConfigError(SecurefedError, ValueError):
    """A config key, value or combination that is not allowed; raised before any work starts."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"config error: {key}={value!r}: {allowed}")


class DataError(SecurefedError):
    """A dataset file or hub dataset that does not have the schema its task needs."""


class ProtocolAbort(SecurefedError):
    """Secure aggregation stopped this round (too few survivors or a protocol violation)."""

    def __init__(self, message: str, *, round_index: int | None = None) -> None:
        self.round_index = round_index
        prefix = f"round {round_index}: " if round_index is not None else ""
        super().__init__(f"secure aggregation aborted: {prefix}{message}")


class InvalidMessage(ProtocolAbort):
    """One opaque error for every failed tag, signature, session or sender check."""

    def __init__(self, *, round_index: int | None = None) -> None:
        super().__init__("invalid message", round_index=round_index)


class AdapterCorrupted(SecurefedError):
    """A DP-SGD step left an adapter parameter non-finite or unchanged (Opacus issue 820)."""


class RunFolderError(SecurefedError):
    """A run folder that is missing, incomplete, or does not match what was asked of it."""


class OutputError(SecurefedError):
    """An output path (``--out``, ``output.dir``) that is not a folder or cannot be written."""


class NoInstitutionJoined(SecurefedError):
    """No node joined a Flower run (each refused the run's settings, or none answered)."""
