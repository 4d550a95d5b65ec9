"""The one Flower release that securefed's changes to Flower's own code were written against.

securefed shortens three of Flower 1.42's hard-coded waits, each where it was read:
``supernode`` (the SuperNode's idle poll and its look for the ClientApp's reply) and
``object_pulls`` (the first retry of an object pull that came too early). Each refuses any
other installed flwr, so an upgrade is a conscious step: read the new code, move the pin
(``pyproject.toml`` pins flwr to this version) and run ``tests/flower/test_supernode_poll.py``
and ``tests/flower/test_object_pulls.py``.
"""

from __future__ import annotations

import importlib.metadata

from securefed.errors import SecurefedError

PATCHED_FLWR_VERSION = "1.42.0"


class FlowerPatchError(SecurefedError):
    """The installed Flower is not the code securefed's changes to it were written for."""


def require_patched_flwr(change: str, otherwise: str) -> None:
    """Raise ``FlowerPatchError`` unless the installed flwr is ``PATCHED_FLWR_VERSION``;
    ``change`` says what securefed changes, ``otherwise`` what the user can do instead."""
    installed = importlib.metadata.version("flwr")
    if installed != PATCHED_FLWR_VERSION:
        raise FlowerPatchError(
            f"{change} flwr {PATCHED_FLWR_VERSION}'s code; flwr {installed} is installed. "
            f"{otherwise}install flwr=={PATCHED_FLWR_VERSION}"
        )
