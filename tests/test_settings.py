from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
import typer
from typer.testing import CliRunner

from anyres_data.cli.app import app as cli
from anyres_data.cli.flags import typer_options
from anyres_data.settings import from_dict, resolve, setting, to_dict


@dataclass(frozen=True)
class Inner:
    rate: float = setting(1.5, "a rate")


@dataclass(frozen=True)
class Bare:
    query: str = setting("", "a query")


@dataclass(frozen=True)
class Demo:
    size: int = setting(256, "a size in pixels")
    name: str | None = setting(None, "a name")
    mode: Literal["a", "b"] = setting("a", "a mode")
    licenses: tuple[int, ...] = setting((4, 5), "licenses")
    flip: bool = setting(True, "flip")
    out: Path = setting(Path("out"), "output")
    inner: Inner = setting(Inner(), "nested")
    bare: Bare = setting(Bare(), "nested, bare flags", cli_prefix="")


def test_from_dict_coerces_and_round_trips():
    d = from_dict(Demo, {"size": "512", "licenses": "1, 2,3", "inner": {"rate": 2}, "out": "x/y"})
    assert d.size == 512 and d.licenses == (1, 2, 3) and d.inner.rate == 2.0 and d.out == Path("x/y")
    assert from_dict(Demo, to_dict(d)) == d


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sise": 3}, "unknown setting"),
        ({"size": 2.5}, "expected an integer"),
        ({"mode": "c"}, "not one of"),
        ({"flip": "maybe"}, "true/false"),
        ({"inner": {"rat": 1}}, "inner: unknown setting"),
    ],
)
def test_from_dict_rejects_bad_input_with_a_clear_message(data, message):
    with pytest.raises(ValueError, match=message):
        from_dict(Demo, data)


def test_resolve_yaml_then_overrides(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("size: 128\nname: yaml\ninner:\n  rate: 3\n")
    d = resolve(Demo, config=cfg, overrides={"name": "cli", "size": None})
    assert (d.size, d.name, d.inner.rate) == (128, "cli", 3.0)


def test_typer_options_share_defaults_and_help(tmp_path):
    seen = {}

    def run(settings: Demo, target: str = typer.Argument(...)) -> None:
        """Run the demo."""
        seen["settings"], seen["target"] = settings, target

    app = typer.Typer()
    app.command()(typer_options(Demo, run))
    app.command("noop")(lambda: None)
    runner = CliRunner()
    args = ["run", "T", "--size", "64", "--licenses", "9,10", "--no-flip", "--inner-rate", "0.5", "--query", "q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen["target"] == "T"
    assert seen["settings"] == Demo(size=64, licenses=(9, 10), flip=False, inner=Inner(rate=0.5), bare=Bare("q"))
    result = runner.invoke(app, ["run", "T"])
    assert seen["settings"] == Demo()
    result = runner.invoke(app, ["run", "T", "--mode", "z"])
    assert result.exit_code != 0 and "not one of" in result.output
    help_text = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).output
    assert "a size in pixels" in help_text and "256" in help_text


def recording_app(cls: type) -> tuple[typer.Typer, dict]:
    """A typer app whose `run` command, made from `cls`, records its settings in seen["s"]."""
    seen: dict = {}

    def run(settings) -> None:
        seen["s"] = settings

    app = typer.Typer()
    app.command()(typer_options(cls, run))
    app.command("noop")(lambda: None)
    return app, seen


@dataclass(frozen=True)
class Outer:
    inner: Inner = setting(Inner(rate=9.0), "nested with a non-class default")


def test_nested_fields_start_from_the_field_default_not_the_class_default():
    assert from_dict(Outer, {}).inner.rate == 9.0
    assert from_dict(Outer, {"inner": {}}).inner.rate == 9.0
    app, seen = recording_app(Outer)
    runner = CliRunner()
    assert runner.invoke(app, ["run"]).exit_code == 0
    assert seen["s"].inner.rate == 9.0
    assert "9.0" in runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).output


def test_typer_options_reads_postponed_annotations():
    namespace: dict = {}
    exec(
        "from __future__ import annotations\n"
        "import typer\n"
        "def run(settings, quiet: bool = typer.Option(False, '--quiet')) -> None:\n"
        "    seen['quiet'] = quiet\n",
        {"seen": namespace} | {"__name__": "x"},
        namespace,
    )
    app = typer.Typer()
    app.command()(typer_options(Inner, namespace["run"]))
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(app, ["run", "--quiet"])
    assert result.exit_code == 0, result.output


def test_a_yaml_object_tag_is_a_clear_error_not_a_traceback(tmp_path):
    config = tmp_path / "evil.yaml"
    config.write_text('source: demo\nout: !!python/object/apply:os.system ["touch pwned"]\n')
    with pytest.raises(ValueError, match=r"evil\.yaml: the YAML tag .*python/object/apply:os\.system.* not allowed"):
        resolve(Demo, config=config)
    result = CliRunner().invoke(
        cli, ["build", "--config", str(config), "--out", str(tmp_path / "o")], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "not allowed" in result.output and not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    config.write_text("source: [demo\n")
    with pytest.raises(ValueError, match="is not valid YAML"):
        resolve(Demo, config=config)


@dataclass(frozen=True)
class Tiled:
    tile: int | None = setting(512, "tile size; None: one pass")
    label: str | None = setting(None, "a label")


def test_the_word_none_sets_an_optional_field_back_to_none(tmp_path):
    app, seen = recording_app(Tiled)
    runner = CliRunner()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("tile: 64\nlabel: yaml\n")
    assert runner.invoke(app, ["run", "--tile", "none"]).exit_code == 0
    assert seen["s"] == Tiled(tile=None)
    assert runner.invoke(app, ["run", "--config", str(cfg), "--tile", "None", "--label", "none"]).exit_code == 0
    assert seen["s"] == Tiled(tile=None, label=None)
    assert runner.invoke(app, ["run", "--config", str(cfg), "--tile", "32"]).exit_code == 0
    assert seen["s"] == Tiled(tile=32, label="yaml")
    result = runner.invoke(app, ["run", "--tile", "big"])
    assert result.exit_code == 2 and "tile" in result.output
    assert "none: unset" in runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).output


def test_a_yaml_file_takes_the_flags_names_too_and_suggests_the_nearest_key(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("inner_rate: 0.25\nquery: q\nsize: 64\n")  # the names of --inner-rate, --query
    assert resolve(Demo, config=config) == Demo(size=64, inner=Inner(rate=0.25), bare=Bare("q"))
    config.write_text("inner_rate: 0.25\ninner:\n  rate: 0.5\n")
    with pytest.raises(ValueError, match="inner_rate is given twice"):
        resolve(Demo, config=config)
    config.write_text("inner_rte: 0.25\n")
    with pytest.raises(ValueError, match=r"unknown setting\(s\) inner_rte \(did you mean inner_rate\?\)"):
        resolve(Demo, config=config)
    with pytest.raises(ValueError, match=r"inner: unknown setting\(s\) rat \(did you mean rate\?\)"):
        from_dict(Demo, {"inner": {"rat": 1}})
    demo = tmp_path / "demo.yaml"
    demo.write_text("source: demo\ndemo_count: 3\nsources:\n  demo:\n    max_side: 300\n")
    from anyres_data.build import BuildSettings

    settings = resolve(BuildSettings, config=demo)
    assert (settings.sources.demo.count, settings.sources.demo.max_side) == (3, 300)


def test_messages_and_help_speak_in_flags_not_python_types():
    with pytest.raises(ValueError) as err:
        from_dict(Demo, {"name": 3})
    assert "Optional" not in str(err.value) and "expected a string" in str(err.value)
    runner = CliRunner()
    result = runner.invoke(cli, ["build", "--source", "demoo", "--out", "x"], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "typing" not in result.output and "'demo'" in result.output
    help_text = " ".join(runner.invoke(cli, ["build", "--help"], env={"COLUMNS": "200"}).output.split())
    assert "<truncated|error|warning>" in help_text  # --fail-on lists its choices
    assert "[default: error]" in help_text and "(default:" not in help_text  # one style, typer's own
    result = runner.invoke(
        cli, ["build", "--source", "demo", "--out", "x", "--workers", "3", "--scheduler", "tcp://h:1"]
    )
    assert result.exit_code == 2 and "drop --workers" in " ".join(result.output.split())
