"""The configuration reference page, generated from the pydantic schema at docs build time.

Every key, its type, its allowed values and its default come from ``RunConfig``'s JSON schema
(``securefed.config``), so a key added to the schema appears here with nothing else to edit.
Each key's description is its comment in the embedded ``default.yaml`` (the file
``securefed simulate`` reads when no config is given), and the value it holds there is shown
beside the schema's default (the value a config file that leaves the key out gets).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from securefed.config import RunConfig, load_config
from securefed.config_yaml import default_config_path

# A key line; "# key: value  # comment" is a key documented but left unset (``name``).
_KEY_LINE = re.compile(r"^(?P<indent> *)(?:# )?(?P<key>[A-Za-z_][A-Za-z0-9_]*):(?P<rest>\s.*|)$")
_COMMENT_LINE = re.compile(r"^ *#\s?(?P<text>.*)$")
_JSON_TYPES = {"integer": "int", "number": "float", "string": "str", "boolean": "bool"}
_BOUNDS = (
    ("minimum", ">="),
    ("exclusiveMinimum", ">"),
    ("maximum", "<="),
    ("exclusiveMaximum", "<"),
)


@dataclass(frozen=True)
class Key:
    """One leaf key of the config: its dotted name and its JSON-schema node."""

    dotted: str
    node: dict[str, Any]


def yaml_comments(text: str) -> dict[str, str]:
    """Dotted key -> its comment in a commented YAML file: the comment on the key's line and
    the comment-only lines under it. PyYAML drops comments, so they are read line by line."""
    comments: dict[str, list[str]] = {}
    parents: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    current: str | None = None
    for line in text.splitlines():
        match = _KEY_LINE.match(line)
        if match:
            indent = len(match["indent"])
            parents = [(i, k) for i, k in parents if i < indent]
            current = ".".join([k for _, k in parents] + [match["key"]])
            parents.append((indent, match["key"]))
            _, _, comment = match["rest"].partition(" #")
            comments[current] = [comment.strip()] if comment.strip() else []
            continue
        continuation = _COMMENT_LINE.match(line)
        if continuation and current is not None and line.index("#") > 0:
            comments[current].append(continuation["text"].strip())
        else:
            current = None  # a comment at column 0 or a blank line belongs to no key
    return {key: " ".join(lines) for key, lines in comments.items() if lines}


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    return defs[ref.rsplit("/", 1)[1]] if ref else node


def section_keys(schema: dict[str, Any]) -> Iterator[tuple[str, str, list[Key]]]:
    """(section, its description, its leaf keys) for the top level and every nested model."""
    defs = schema.get("$defs", {})

    def walk(prefix: str, model: dict[str, Any]) -> Iterator[tuple[str, str, list[Key]]]:
        leaves, nested = [], []
        for name, node in model["properties"].items():
            target = _resolve(node, defs)
            dotted = f"{prefix}{name}"
            if "properties" in target:
                nested.append((dotted, target))
            else:
                leaves.append(Key(dotted, node))
        if leaves:
            yield prefix.rstrip(".") or "top level", model.get("description", ""), leaves
        for dotted, target in nested:
            yield from walk(f"{dotted}.", target)

    yield from walk("", schema)


def type_text(node: dict[str, Any]) -> str:
    """A JSON-schema node's type as a reader writes it: ``int or auto``, ``list[str] or null``."""
    if "anyOf" in node:
        return " or ".join(type_text(branch) for branch in node["anyOf"])
    if "const" in node:
        return json.dumps(node["const"])
    if node.get("type") == "array":
        return f"list[{type_text(node.get('items', {}))}]"
    if node.get("type") == "null":
        return "null"
    return _JSON_TYPES.get(node.get("type", ""), node.get("type", "any"))


def allowed_text(node: dict[str, Any]) -> str:
    """The values a node accepts beyond its type: enumerations, bounds, patterns."""
    parts = []
    for branch in node.get("anyOf", [node]):
        if "enum" in branch:
            parts.append("one of " + ", ".join(f"`{v}`" for v in branch["enum"]))
        if branch.get("type") == "array" and "enum" in branch.get("items", {}):
            parts.append("each one of " + ", ".join(f"`{v}`" for v in branch["items"]["enum"]))
        bounds = [f"{sign} {_number(branch[key])}" for key, sign in _BOUNDS if key in branch]
        if bounds:
            parts.append(", ".join(bounds))
        if "pattern" in branch:
            parts.append(f"matches `{branch['pattern']}`")
    return "; ".join(parts)


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _value(value: Any) -> str:
    return f"`{json.dumps(value)}`"


def _embedded_value(config: RunConfig, dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def _prose_cell(text: str) -> str:
    return text.replace("|", "\\|")  # a pipe inside a code span needs no escape, in prose it does


def render() -> str:
    """The configuration reference page, in Markdown."""
    schema = RunConfig.model_json_schema()
    default_file = default_config_path()
    comments = yaml_comments(default_file.read_text())
    embedded = load_config()
    lines = [
        "# Configuration reference",
        "",
        "Generated from the pydantic schema in `securefed/config.py` (`RunConfig`) each time the",
        "site is built: every key, its type, the values it accepts and its default. **Schema",
        "default** is what a config file that leaves the key out gets; **`securefed simulate`**",
        "is the value in the embedded `default.yaml` that runs when no config is given",
        "(`configs/default.yaml` is the same file). The description is the key's comment there.",
        "",
        "Override any key with `--set dotted.key=value`. An unknown key, a wrong type or a value",
        "outside what is allowed is refused at load with one line naming the key and what is",
        "allowed (exit status 2); rules across keys (a cohort larger than the clients, a",
        "secure-aggregation threshold above the cohort, a fixed-point range that could overflow",
        "the sum) are checked at the same time.",
    ]
    for section, description, keys in section_keys(schema):
        lines += ["", f"## `{section}`" if section != "top level" else "## Top-level keys", ""]
        if description:
            lines += [" ".join(description.split()), ""]
        lines += [
            "| key | type | allowed | schema default | `securefed simulate` | description |",
            "|---|---|---|---|---|---|",
        ]
        for key in keys:
            row = [
                f"`{key.dotted}`",
                type_text(key.node),
                allowed_text(key.node),
                _value(key.node.get("default")),
                _value(_embedded_value(embedded, key.dotted)),
                _prose_cell(comments.get(key.dotted, "")),
            ]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
