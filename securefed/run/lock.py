"""One writer per run folder: an OS file lock (``flock``) held for the run's life.

Two ``securefed simulate --out SAME`` at once used to interleave their records in one folder.
The writer holds an exclusive ``flock`` on the folder's lock file, with its pid written in it,
from the moment the folder is created (or ``--resume`` opens it) until the run ends; a second
writer is refused in one line naming the holder. The operating system drops the lock when the
holder exits, killed or not, so a crashed run never leaves its folder locked.

A process may take its own folder's lock again (the audit written at the end of a run): the
locks this process holds are counted here, since ``flock`` on a second descriptor of the same
file would refuse its own holder.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from securefed.errors import OutputError, RunFolderError

LOCK = ".lock"

_held: dict[Path, list[int]] = {}  # resolved folder -> [times this process holds it, fd]


class RunLock:
    """The exclusive lock on one run folder (which must exist); a context manager."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._key = self.folder.resolve()
        self._holding = False

    def acquire(self) -> RunLock:
        """Take the lock, or raise ``RunFolderError`` naming the process that holds it."""
        if self._holding:
            return self
        if self._key in _held:
            _held[self._key][0] += 1
            self._holding = True
            return self
        try:
            fd = os.open(self.folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(
                f"{self.folder}: cannot open its lock file {LOCK} ({exc.strerror}); the run "
                "folder must exist and be writable (the audit binds its hashes into it)"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderError(
                f"{self.folder} is being written by another securefed process (pid {holder}); "
                "one run folder has one writer: wait for it to end, or use another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _held[self._key] = [1, fd]
        self._holding = True
        return self

    def release(self) -> None:
        if not self._holding:
            return
        self._holding = False
        _held[self._key][0] -= 1
        if _held[self._key][0] == 0:
            fd = _held.pop(self._key)[1]
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def release_folder(folder: str | Path) -> None:
    """Drop this process's lock on ``folder``, however many times it was taken (the end of
    the run that holds it); nothing if it holds none."""
    entry = _held.pop(Path(folder).resolve(), None)
    if entry is not None:
        fcntl.flock(entry[1], fcntl.LOCK_UN)
        os.close(entry[1])
