"""A run's warnings are about the run: a library's deprecation notice is not one of them."""

from __future__ import annotations

import io
import warnings

from rich.console import Console

from securefed.run.run_warnings import RunWarnings


def test_library_notices_are_not_the_runs_warnings():
    printed = io.StringIO()
    with RunWarnings(Console(file=printed)) as run_warnings, warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("`is_gradient_checkpointing` is deprecated", FutureWarning, stacklevel=1)
        warnings.warn("old API", DeprecationWarning, stacklevel=1)
        warnings.warn("Secure RNG turned off", UserWarning, stacklevel=1)
        warnings.warn("Secure RNG turned off", UserWarning, stacklevel=1)
    assert run_warnings.records == [{"category": "UserWarning", "message": "Secure RNG turned off"}]
    assert printed.getvalue() == "warning: Secure RNG turned off\n"
