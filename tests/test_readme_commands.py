"""The README's commands are valid as written, and its links lead somewhere.

Every line of the README's ``bash`` blocks is one of: a make target the Makefile has, a
``securefed`` command the CLI parses (its config or sweep validates, the folders it reads
exist), or a ``python`` script that exists. Running them is left to the tests that own each
command (the default run, the sweep, the audit, the Flower deployment); this test is cheap.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from securefed.cli import build_parser
from securefed.config import load_config
from securefed.sweep import load_spec

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```bash\n(.*?)^```", re.M | re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# the five things a user does, each shown once: the command that shows it
USES = {"simulate", "plan", "sweep", "audit", "deploy/localhost.py"}


def _commands(text: str) -> list[list[str]]:
    lines = (line for block in FENCE.findall(text) for line in block.splitlines())
    return [argv for line in lines if (argv := shlex.split(line, comments=True))]


def _make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*):", makefile, re.M))


def check_command(argv: list[str]) -> str:
    """Fail unless ``argv`` is valid as written; return what it does (the subcommand or script)."""
    program, args = argv[0], argv[1:]
    if program == "make":
        assert set(args) <= _make_targets(), f"no make target {args}"
        return "make"
    if program == "python":
        assert (ROOT / args[0]).is_file(), f"no script {args[0]}"
        return args[0]
    assert program == "securefed", f"the README shows a command the test does not know: {argv}"
    try:
        parsed = build_parser().parse_args(args)
    except SystemExit as exit_:
        raise AssertionError(f"securefed does not parse {shlex.join(argv)}") from exit_
    if parsed.command in ("simulate", "plan"):
        config = parsed.config and ROOT / parsed.config
        assert config is None or config.is_file(), f"no config {parsed.config}"
        load_config(config, parsed.set)  # raises ConfigError naming the key
    elif parsed.command == "sweep":
        load_spec(ROOT / parsed.sweep)
    elif parsed.command == "audit":
        assert (ROOT / parsed.run_dir).is_dir(), f"no folder {parsed.run_dir}"
    return parsed.command


def test_every_readme_command_is_valid_and_the_five_uses_are_shown():
    commands = _commands(README.read_text())
    assert len(commands) >= 7
    shown = {check_command(argv) for argv in commands}
    assert shown >= USES, f"the README shows no example of {USES - shown}"


@pytest.mark.parametrize(
    "line",
    [
        "make deploy",
        "securefed simulate --sett x=1",
        "securefed simulate configs/missing.yaml",
        "securefed simulate --set training.rounds=0",
        "securefed audit --verify audits/missing",
        "python benchmarks/missing.py",
        "pip install securefed",
    ],
)
def test_an_invalid_command_fails_the_check(line):
    with pytest.raises(Exception):  # noqa: B017  (assertion, parse failure or ConfigError alike)
        check_command(shlex.split(line))


def test_every_relative_link_in_the_readme_leads_to_a_file_and_heading():
    for target in LINK.findall(README.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        assert (ROOT / path).exists(), f"README links to a missing {path}"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", (ROOT / path).read_text(), re.M)
            slugs = {re.sub(r"[^\w\- ]", "", h.lower()).strip().replace(" ", "-") for h in headings}
            assert anchor in slugs, f"README links to a missing heading {target}"
