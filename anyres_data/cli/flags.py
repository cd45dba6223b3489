"""Settings as CLI flags: one `--flag` per field of a settings dataclass, with the field's default and help.

A flag that is not given leaves the field to the YAML file (`--config`) or the default. For a field
that may be None, the word `none` sets it to None (`--tile none` renders in one pass), even where
its default or the YAML file gives a value. The YAML file may name a setting nested
(`sources: {demo: {count: 3}}`) or as its flag (`demo_count: 3`, `anyres_data.settings.nest_flags`).
--help shows defaults in typer's style, `[default: X]`, and a Literal field's choices.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import typer
from rich.markup import escape

from anyres_data.cli.errors import fail
from anyres_data.settings import flat_fields, from_dict, load_yaml, merge, nest_flags

NONE_WORD = "none"


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


_HELP_DEFAULT = re.compile(r"\s*\(default: ([^()]*)\)$")  # a help text's own "(default: X)" at its end


def _choices(hint: Any) -> list[str]:
    """The values of a Literal field (also inside Optional), as the CLI lists them; [] for other types."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        return _choices(args[0])
    if typing.get_origin(hint) is Literal and all(isinstance(a, str) for a in typing.get_args(hint)):
        return list(typing.get_args(hint))
    return []


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
        # defaults in typer's own style, "[default: X]", as in the CLIs that are plain typer functions
        help_text = escape(f.metadata.get("help", ""))
        stated = _HELP_DEFAULT.search(help_text)  # a default the help text words itself
        shown = stated.group(1) if stated else _default_text(default)
        help_text = help_text[: stated.start()] if stated else help_text
        unsettable = _optional(hint) and cli_type is not bool
        if shown and "default" not in help_text:
            unset = f"; {NONE_WORD}: unset" if unsettable and _default_text(default) else ""
            help_text = f"{help_text} {escape(f'[default: {shown}{unset}]')}"
        choices = _choices(hint)
        if choices and unsettable and NONE_WORD not in choices:
            choices.append(NONE_WORD)
        # a Literal's values listed in --help; from_dict checks them (one `error:` line, "did you mean")
        metavar = f"<{'|'.join(choices)}>" if choices else None
        if len("|".join(choices)) > 40:  # a long list: in the help text, not as the metavar
            metavar = "<str>"
            help_text += "" if all(c in help_text for c in choices) else f" (one of {', '.join(choices)})"
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(None, *decls, help=help_text, show_default=False, metavar=metavar),
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
            data = merge(nest_flags(cls, load_yaml(config)) if config else {}, given)  # YAML: nested or flag names
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
