"""Typed settings: one frozen dataclass per component, shared by Python, YAML and the CLI.

A settings class is a frozen dataclass whose fields are declared with `setting(...)`, so each
field carries its help text. `from_dict` builds it strictly (unknown keys and wrong types are
errors that say what is allowed), `to_dict` makes it JSON/YAML-ready, and the CLIs turn the same
fields into flags (`anyres_data.cli.flags`): the default and the help live in one place only.
This module imports no CLI library, and fsspec only when a settings file is read, so the
networks, which declare their settings here too, load without either.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

T = TypeVar("T")


def setting(default: Any, help: str, *, cli: bool = True, cli_prefix: str | None = None) -> Any:
    """A dataclass field with help text.

    `cli=False` keeps it out of the CLI flags (`anyres_data.cli.flags`). For a nested settings field,
    `cli_prefix` is put before its fields' flag names (default: the field's name and '_';
    "" gives bare flags such as `--query` for `flickr.query`).
    """
    return dataclasses.field(default=default, metadata={"help": help, "cli": cli, "cli_prefix": cli_prefix})


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, hint: Any, where: str, base: Any = None) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        others = [arg for arg in args if arg is not type(None)]
        if len(others) == 1:  # Optional[X]: X's own message (not a typing.Optional[...] repr)
            return _coerce(value, others[0], where, base)
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except (TypeError, ValueError) as err:
                errors.append(str(err))
        raise ValueError(f"{where}: {value!r} does not fit {hint}: {'; '.join(errors)}")
    if origin is Literal:
        if value not in args:
            near = difflib.get_close_matches(str(value), [str(a) for a in args], n=1, cutoff=0.6)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}{hint}")
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ValueError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a mapping of {hint.__name__} settings, got {value!r}")
        return from_dict(hint, value, where=where, base=base)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ValueError(f"{where}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ValueError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, bool):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(f"{where}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, Path):
            return str(value)
        raise ValueError(f"{where}: expected a string, got {value!r}")
    if hint is Path:
        if isinstance(value, str | Path):
            return Path(value)
        raise ValueError(f"{where}: expected a path, got {value!r}")
    raise TypeError(f"{where}: unsupported settings type {hint!r}")


def from_dict(cls: type[T], data: Mapping[str, Any], *, where: str = "", base: T | None = None) -> T:
    """Build settings of type `cls` from a mapping; missing keys keep their defaults.

    Defaults are those of `base` when given, else the class's; a nested settings field starts
    from the field's own default (which may differ from its class's defaults).
    Raises ValueError naming the offending key when a key is unknown or a value has the wrong type.
    """
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    defaults = {f.name: getattr(base, f.name) if base is not None else f.default for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        prefix = f"{where}: " if where else ""
        flags = [name for name, *_ in flat_fields(cls)]
        near = [m for name in unknown for m in difflib.get_close_matches(name, names + flags, n=1, cutoff=0.6)]
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise ValueError(f"{prefix}unknown setting(s) {', '.join(unknown)}{hint}; known: {', '.join(names)}")
    values = {}
    for name, value in data.items():
        values[name] = _coerce(value, hints[name], f"{where}.{name}" if where else name, defaults[name])
    if base is not None:
        return dataclasses.replace(base, **values)
    return cls(**values)


def to_dict(obj: Any) -> dict[str, Any]:
    """Settings as plain JSON/YAML types (tuples become lists, paths strings)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    return plain(obj)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from any fsspec location.

    Only plain YAML is read (`yaml.safe_load`): a Python object tag such as `!!python/object` is
    refused. Raises ValueError, naming the file, when it cannot be read or is not a plain mapping.
    """
    import fsspec  # here, not at the top: see the module's docstring

    try:
        with fsspec.open(str(path), "r") as f:
            data = yaml.safe_load(f) or {}
    except yaml.constructor.ConstructorError as err:
        tag = f" {err.problem.split('tag ', 1)[-1]}" if err.problem and "tag" in err.problem else ""
        line = f" (line {err.problem_mark.line + 1})" if err.problem_mark else ""
        raise ValueError(
            f"{path}: the YAML tag{tag} is not allowed{line}; "
            "settings files hold only mappings, lists, strings, numbers and booleans"
        ) from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read the settings file {path}: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a YAML mapping at the top level, got {type(data).__name__}")
    return data


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge `overrides` into `base`; None in overrides means 'not given'."""
    out = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def flatten(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a.b": value} for nested settings (as `to_dict` gives them)."""
    out = {}
    for name, value in settings.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{name}."))
        else:
            out[prefix + name] = value
    return out


def changed_settings(
    first: Mapping[str, Any], now: Mapping[str, Any], *, may_change: Callable[[str], bool]
) -> list[tuple[str, Any, Any]]:
    """(dotted name, first value, current value) of every nested setting that differs, sorted by name.

    A resumed job compares its first run's settings with the current ones; `may_change(name)` is True
    for settings that change how a job runs, not what it produces. A name missing on one side counts
    as None there.
    """
    before, after = flatten(first), flatten(now)
    return [
        (name, before.get(name), after.get(name))
        for name in sorted(set(before) | set(after))
        if not may_change(name) and before.get(name) != after.get(name)
    ]


def nest_flags(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """`data` with top-level keys named as CLI flags (`demo_count`, `min_size`) moved to their nested place
    (`sources: {demo: {count: ...}}`), so a YAML file may use either vocabulary.

    Raises ValueError when a setting is given both ways.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    paths = {name: path for name, path, *_ in flat_fields(cls) if len(path) > 1}
    out: dict[str, Any] = {key: value for key, value in data.items() if key in names or key not in paths}
    for key, value in data.items():
        if key in names or key not in paths:
            continue
        node = out
        *parents, leaf = paths[key]
        for parent in parents:
            node = node.setdefault(parent, {})
            if not isinstance(node, dict):
                raise ValueError(f"{parent}: expected a mapping of settings, got {node!r}")
        if leaf in node:
            raise ValueError(f"{key} is given twice: as {key} and as {'.'.join(paths[key])}")
        node[leaf] = value
    return out


def resolve(cls: type[T], *, config: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> T:
    """Defaults, then a YAML file (optional; nested or flag names, see `nest_flags`), then explicit overrides
    (None = not given)."""
    data: dict[str, Any] = nest_flags(cls, load_yaml(config)) if config else {}
    return from_dict(cls, merge(data, overrides or {}))


def flat_fields(
    cls: type, prefix: str = "", defaults: Any = None
) -> list[tuple[str, tuple[str, ...], Any, dataclasses.Field, Any]]:
    """(flag name, path of field names, type hint, field, default) for every CLI-visible leaf field.

    The flag names are those of the CLI (`anyres_data.cli.flags`) and the ones a YAML file may use
    instead of the nested names (`nest_flags`). Defaults of nested fields come from the parent
    field's default instance.
    """
    out = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True):
            continue
        hint = hints[f.name]
        default = getattr(defaults, f.name) if defaults is not None else f.default
        if dataclasses.is_dataclass(hint):
            sub_prefix = f.metadata.get("cli_prefix")
            sub_prefix = f.name + "_" if sub_prefix is None else sub_prefix
            for name, path, sub_hint, sub_field, sub_default in flat_fields(hint, prefix + sub_prefix, default):
                out.append((name, (f.name, *path), sub_hint, sub_field, sub_default))
        else:
            out.append((prefix + f.name, (f.name,), hint, f, default))
    return out
