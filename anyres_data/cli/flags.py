"""Settings as CLI flags: one `--flag` per field of a settings dataclass, with the field's default and help.

A flag that is not given leaves the field to the YAML file (`--config`) or the default. For a field
that may be None, the word `none` sets it to None (`--tile none` renders in one pass), even where
its default or the YAML file gives a value.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from anyres_data.cli.errors import fail
from anyres_data.settings import from_dict, load_yaml, merge

NONE_WORD = "none"


def flat_fields(
    cls: type, prefix: str = "", defaults: Any = None
) -> list[tuple[str, tuple[str, ...], Any, dataclasses.Field, Any]]:
    """(flag name, path of field names, type hint, field, default) for every CLI-visible leaf field.

    Defaults of nested fields come from the parent field's default instance.
    """
    out = []
    hints = typing.get_type_hints(cls)
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


def _optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def _cli_type(hint: Any) -> Any:
    """The type typer parses for a field; tuples and Literals travel as strings, checked by from_dict.

    A field that may be None travels as a string too, so that it can take the word `none`.
    """
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        inner = _cli_type(args[0])
        return bool if inner is bool else str
    if hint in (bool, int, float, str, Path):
        return hint
    return str


def _default_text(default: Any) -> str:
    if default is dataclasses.MISSING:
        default = None
    if isinstance(default, tuple):
        default = ",".join(map(str, default))
    return "" if default is None else str(default)


def _put(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def typer_options(cls: type, command: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap `command(settings, **rest)` as a typer command with one flag per field of `cls`.

    `command`'s own parameters after the first stay as they are (positional arguments, extra
    options); every field of `cls` becomes `--field-name`, with help and default from the field.
    `--config FILE.yaml` loads a YAML file first; flags given on the command line win.
    """
    own = list(inspect.signature(command, eval_str=True).parameters.values())[1:]
    flat = flat_fields(cls)
    names = [name for name, *_ in flat] + [p.name for p in own] + ["config"]
    clashes = sorted({n for n in names if names.count(n) > 1})
    assert not clashes, f"{cls.__name__}: CLI flags defined twice: {clashes}"
    params = list(own)
    params.append(
        inspect.Parameter(
            "config",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(None, "--config", help="YAML file with these settings; flags override it."),
            annotation=typing.Optional[Path],  # noqa: UP045 (typer reads the annotation at run time)
        )
    )
    for name, _path, hint, f, default in flat:
        cli_type = _cli_type(hint)
        flag = "--" + name.replace("_", "-")
        decls = [f"{flag}/--no-{flag[2:]}"] if cli_type is bool else [flag]
        help_text = f.metadata.get("help", "")
        shown = _default_text(default)
        if shown:
            unset = f"; {NONE_WORD}: unset" if _optional(hint) and cli_type is not bool else ""
            help_text = f"{help_text} (default: {shown}{unset})"
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(None, *decls, help=help_text, show_default=False),
                annotation=typing.Optional[cli_type],  # noqa: UP045
            )
        )

    def wrapper(**kwargs: Any) -> Any:
        given: dict[str, Any] = {}
        unset: list[tuple[str, ...]] = []
        for name, path, hint, _f, _default in flat:
            value = kwargs.pop(name)
            if value is None:
                continue
            if _optional(hint) and isinstance(value, str) and value.lower() == NONE_WORD:
                unset.append(path)
            else:
                _put(given, path, value)
        config = kwargs.pop("config")
        try:
            data = merge(load_yaml(config) if config else {}, given)
            for path in unset:
                _put(data, path, None)
            settings = from_dict(cls, data)
        except ValueError as err:
            fail(str(err))
        return command(settings, **kwargs)

    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__doc__ = command.__doc__
    wrapper.__name__ = command.__name__
    return wrapper
