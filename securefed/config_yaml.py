"""Config files and ``--set`` overrides as raw dicts: YAML read strictly (UTF-8, no repeated
key, one ``ConfigError`` naming the line), dotted overrides applied. Validation into a
``RunConfig`` happens in ``securefed.config``; its errors become one ``ConfigError`` naming
the key here (``validation_error``).

May import: yaml, pydantic, ``errors``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from securefed.errors import ConfigError


def _coerce_scalar(text: str) -> Any:
    """Parse a ``--set`` value with YAML rules, so ``--set a=1e-4`` is a float and ``null`` None."""
    return yaml.safe_load(text) if text != "" else ""


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides to a raw config dict (validation happens later)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(item, None, "overrides look like dotted.key=value")
        dotted, text = item.split("=", 1)
        parts = dotted.strip().split(".")
        node = raw
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(dotted, text, f"{part} is not a section")
            node = child
        node[parts[-1]] = _coerce_scalar(text)
    return raw


def default_config_path() -> Path:
    """The embedded default config, shipped inside the package."""
    return Path(str(resources.files("securefed") / "default.yaml"))


def _repeated_key(node: yaml.Node, path: tuple[str, ...] = ()) -> tuple[str, Any, int, int] | None:
    """The first key given twice in one mapping (PyYAML silently keeps the last, so a second
    ``dp:`` block would quietly replace the first): its dotted name, the repeated value and
    both lines; None if every key is unique."""
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            if found := _repeated_key(item, (*path, str(i))):
                return found
    if not isinstance(node, yaml.MappingNode):
        return None
    first_line: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = str(key_node.value)
        dotted = ".".join((*path, key))
        line = key_node.start_mark.line + 1
        if key in first_line:
            value = value_node.value if isinstance(value_node, yaml.ScalarNode) else "..."
            return dotted, value, first_line[key], line
        first_line[key] = line
        if found := _repeated_key(value_node, (*path, key)):
            return found
    return None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file's top-level mapping; any problem is one ``ConfigError`` naming the line."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("config", str(p), "a path to an existing YAML file")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            "config", str(p), f"UTF-8 text; line {line} holds byte 0x{raw[exc.start]:02x}"
        ) from None
    try:
        repeated = _repeated_key(yaml.compose(text, Loader=yaml.SafeLoader))
        if repeated:
            key, value, first, again = repeated
            raise ConfigError(key, value, f"set once; {p} sets it on lines {first} and {again}")
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise ConfigError("config", str(p), f"valid YAML ({problem}{where})") from None
    if not isinstance(data, dict):
        raise ConfigError("config", str(p), "a YAML mapping at the top level")
    return data


def validation_error(err: ValidationError, root: type[BaseModel]) -> ConfigError:
    """pydantic's first error as one ``ConfigError``: the dotted key, the value, what is
    allowed (for an unknown key, the keys ``root`` allows in that section)."""
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "<root>"
    value, kind, msg = first.get("input"), first["type"], first["msg"]
    if kind == "extra_forbidden":
        parent_loc = first["loc"][:-1]
        allowed = _allowed_keys(root, parent_loc)
        return ConfigError(key, value, f"unknown key; allowed keys here: {', '.join(allowed)}")
    if kind == "literal_error":
        return ConfigError(key, value, msg.replace("Input should be", "allowed:"))
    if isinstance(first.get("ctx", {}).get("error"), ConfigError):
        return first["ctx"]["error"]
    return ConfigError(key, value, msg)


def _allowed_keys(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    model = root
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type):
            return []
        if not issubclass(field.annotation, BaseModel):
            return []
        model = field.annotation
    return sorted(model.model_fields)
