"""The GPU check: one command for a GPU's first contact, rehearsed on the CPU so it cannot rot.

    tests/gpu/check.sh OUT                          # on a CUDA machine, under 8 minutes
    python -m tests.gpu.check OUT                   # the same
    python -m tests.gpu.check OUT --cpu-rehearsal   # the same code path on the CPU at tiny sizes (tests run it)
    python -m tests.gpu.check OUT --steps training,rendering    # rerun some steps into OUT
    python -m tests.gpu.check --print-requirements  # the packages to prepare as local wheels (docs/training.md)

Steps, in order: environment, ops (fast against reference, fp32/bf16/fp16, values and gradients),
generator (forward and forward+backward, batches, fp32/AMP, torch.compile off/on), training (about
2 minutes of phase 2 from a fresh phase-1 state on a demo dataset), rendering (a 4096² tiled render;
tiled against one pass), metrics (pSWD, FID features on a random-weight Inception). See
docs/training.md for what the report's fields mean.

GPU time is rare and each start costs minutes, so every step runs in its own process under its
own time box: a crash, a hang, running out of memory or a broken CUDA context in one step cannot
take the others down, and a step stopped at its box keeps what it had measured (steps write their
record after every case). OUT/report.json is rewritten after every step; OUT/logs/STEP.log holds a
step's output. This module imports only the standard library, so it runs, and reports what is
missing, on a machine where the project's packages are not all installed; the steps themselves
are in `tests.gpu.steps`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STEPS = ("environment", "ops", "generator", "training", "rendering", "metrics")
REQUIREMENT = re.compile(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^;\s]+)$")
CUDA_WHEELS = ("torch", "torchvision")  # CUDA builds, from the PyTorch index rather than PyPI


@dataclass(frozen=True)
class CheckSettings:
    """Sizes, tolerances and time boxes of one check. The defaults are the GPU check's; see CPU_REHEARSAL."""

    device: str = "cuda"  # torch device of every step
    cpu_threads: int = 0  # torch threads on the CPU; 0: torch's default (training picks its own)
    preset: str = "paper"  # model size of the generator, training, rendering and metrics steps
    # ops: max|fast − reference| / max|reference|, the reference in float64 on the same (rounded) inputs
    op_batch: int = 2  # batch of the forward pass whose op calls are replayed (1 is checked too)
    op_calls: int = 0  # calls replayed per op, spread over the layers; 0: every call
    op_tolerances: tuple[tuple[str, float], ...] = (("float32", 1e-4), ("bfloat16", 3e-2), ("float16", 1e-2))
    # generator
    gen_batches: tuple[int, ...] = (8, 1)
    gen_repeats: int = 3  # timed calls per case after the first (which includes compilation)
    compile_backend: str = "inductor"  # torch.compile backend; the rehearsal traces with "eager" (no codegen)
    compile_tolerances: tuple[float, float] = (5e-3, 5e-2)  # max |compiled − eager| output, fp32 and AMP
    # training
    train_batch: int = 32  # the paper preset's batch (StyleGAN3's at 256²)
    train_workers: int = 8  # loader worker processes
    train_seconds: float = 120.0  # wall time of phase 2, start-up included
    calibration_steps: int = 3  # phase-2 steps run first to measure a step's time
    max_train_steps: int = 100_000  # cap on phase-2 steps
    train_amp: bool = True  # bfloat16 autocast (`--amp`); CUDA only
    train_compile: bool = False  # `--compile`; see the generator step for what compilation costs
    train_lpips: str = "random"  # LPIPS trunk: random costs what AlexNet costs and needs no weights file
    demo_count: int = 32  # images of the demo dataset built for training and metrics
    demo_min_side: int = 256  # px
    demo_max_side: int = 2048  # px
    # rendering
    render_size: int = 4096  # px across the tiled render
    render_tile: int = 512  # px, as anyres-render's default
    agree_size: int = 1024  # px: rendered both in one pass and tiled
    agree_tile: int = 256  # px
    agree_tolerance: float = 2e-3  # max |tiled − one pass|, outputs in [-1, 1] (an 8-bit step is 7.8e-3)
    # metrics
    pswd_patches: int = 1000  # real and fake patches for pSWD (and pFID on the random Inception)
    fid_images: int = 1000  # images through the random-weight Inception for the images/s figure
    metrics_batch: int = 32
    # seconds per step, in STEPS order, process start-up included; their sum stays under 8 minutes
    time_boxes: tuple[float, ...] = (25.0, 45.0, 120.0, 165.0, 45.0, 60.0)

    def __post_init__(self) -> None:
        if len(self.time_boxes) != len(STEPS):
            raise ValueError(f"time_boxes needs one entry per step ({', '.join(STEPS)}), got {len(self.time_boxes)}")

    def time_box(self, step: str) -> float:
        return self.time_boxes[STEPS.index(step)]

    @classmethod
    def from_json(cls, data: dict) -> CheckSettings:
        def tuples(value):
            return tuple(tuples(v) for v in value) if isinstance(value, list) else value

        return cls(**{k: tuples(v) for k, v in data.items()})


CPU_REHEARSAL = CheckSettings(
    device="cpu",
    cpu_threads=1,  # a shared 2-core machine: more threads than free cores makes every op wait
    preset="tiny",
    op_calls=3,
    gen_batches=(2,),
    gen_repeats=1,
    compile_backend="eager",
    train_batch=4,
    train_workers=1,
    train_seconds=4.0,
    calibration_steps=2,
    max_train_steps=4,
    train_amp=False,  # anyres-train refuses --amp and --compile on the CPU
    demo_count=12,
    demo_min_side=40,
    demo_max_side=160,
    render_size=128,
    render_tile=64,
    agree_size=97,
    agree_tile=32,
    pswd_patches=8,
    fid_images=2,
    metrics_batch=2,
    time_boxes=(60.0, 90.0, 120.0, 120.0, 90.0, 60.0),
)


def pinned_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[tuple[str, str, str]]:
    """The project's runtime requirements as (name, extras, version), from pyproject.toml's `==` pins."""
    pins = []
    for line in tomllib.loads(pyproject.read_text())["project"]["dependencies"]:
        match = REQUIREMENT.match(line.strip())
        assert match, f"pyproject.toml: {line!r} is not pinned as NAME==VERSION"
        pins.append((match.group(1), match.group(2) or "", match.group(3)))
    return pins


def wheel_requirements() -> list[str]:
    """What the check needs beyond CUDA builds of torch and torchvision, one `NAME==VERSION` per line."""
    return [f"{name}{extras}=={version}" for name, extras, version in pinned_requirements() if name not in CUDA_WHEELS]


def write_json(path: Path, data: dict) -> None:
    """Write atomically (a temporary file, then rename): a reader never sees half a report."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def _log_tail(path: Path, lines: int = 20) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def run_step(out: Path, name: str, box: float) -> dict:
    """Run one step in its own process group under its time box; its record, status and timing."""
    log = out / "logs" / f"{name}.log"
    record_path = out / "steps" / f"{name}.json"
    record_path.unlink(missing_ok=True)
    # The project without installing it; unbuffered, so that a stopped step's log shows how far it got.
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1"}
    start = time.monotonic()
    deadline = time.time() + box  # wall clock: the step's process reads it, its start-up included
    cmd = [sys.executable, "-m", "tests.gpu.check", str(out), "--run-step", name, "--deadline", str(deadline)]
    timed_out = False
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True)
        try:
            proc.wait(timeout=box)
        except subprocess.TimeoutExpired:
            timed_out = True
        _stop(proc)  # the step, or what it left running (loader or compiler workers)
        returncode = proc.returncode
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    errors = list(record.get("errors", []))
    results = record.get("results", {})
    for case, entry in results.items():
        if "passed" not in entry:  # started, never finished: the step was stopped (or died) in it
            entry.update(passed=False, error="stopped while running")
            errors.append(f"{case}: stopped while running")
    if timed_out:
        errors.append(f"timed out: stopped after its time box of {box:g} s (what it measured until then is kept)")
    elif returncode != 0:
        errors.append(f"exited with status {returncode}; end of {log.relative_to(out)}:\n{_log_tail(log)}")
    status = "timed_out" if timed_out else "failed" if errors or returncode != 0 else "passed"
    return {
        "name": name,
        "status": status,
        "seconds": round(time.monotonic() - start, 2),
        "time_box_s": box,
        "returncode": returncode,
        "errors": errors,
        "results": results,
        "files": record.get("files", []),
        "log": str(log.relative_to(out)),
    }


def _stop(proc: subprocess.Popen) -> None:
    """End the step's process group (the step and any loader or compiler workers it started): TERM, then KILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)  # the group the step leads (start_new_session), nothing else
        except ProcessLookupError:
            return  # nothing left
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue
        time.sleep(0.5)  # let workers see their parent go before the group is checked again


def run_check(out: Path, settings: CheckSettings, *, mode: str, steps: tuple[str, ...] = STEPS) -> dict:
    """Run the steps in order, each in its own process; write OUT/report.json after each. Returns the report."""
    out = out.resolve()
    for folder in ("logs", "steps", "work"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    write_json(out / "settings.json", dataclasses.asdict(settings))
    start = time.monotonic()
    report = {
        "check": "anyres GPU check (tests/gpu/check.py)",
        "mode": mode,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": dataclasses.asdict(settings),
        "steps": [],
        "passed": False,
        "seconds": 0.0,
    }
    for name in steps:
        step = run_step(out, name, settings.time_box(name))
        report["steps"].append(step)
        report["passed"] = all(s["status"] == "passed" for s in report["steps"])
        report["seconds"] = round(time.monotonic() - start, 2)
        write_json(out / "report.json", report)
        print(f"{name:12s} {step['status']:9s} {step['seconds']:7.1f} s", flush=True)
        for error in step["errors"]:
            print(f"    {error}", flush=True)
    return report


def _child(out: Path, name: str, deadline: float) -> None:
    """Inside a step's process: run it with the settings the check saved in OUT, until `deadline` (epoch s)."""
    from tests.gpu import steps  # the heavy imports (torch, the project) happen here, in the step's process

    settings = CheckSettings.from_json(json.loads((out / "settings.json").read_text()))
    steps.run(name, out=out, settings=settings, deadline=time.monotonic() + deadline - time.time())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", type=Path, help="folder for report.json, PNGs, logs and work files")
    parser.add_argument("--cpu-rehearsal", action="store_true", help="the same steps on the CPU at tiny sizes")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    parser.add_argument("--print-requirements", action="store_true", help="print the wheels to prepare, and exit")
    parser.add_argument("--run-step", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.print_requirements:
        print("\n".join(wheel_requirements()))
        return
    if args.out is None:
        parser.error("give the output folder OUT")
    if args.run_step:
        _child(args.out.resolve(), args.run_step, args.deadline)
        return
    requested = {s for s in args.steps.split(",") if s}
    unknown = sorted(requested - set(STEPS))
    if unknown:
        parser.error(f"unknown step(s) {', '.join(unknown)}; choose from {', '.join(STEPS)}")
    steps = tuple(s for s in STEPS if s in requested)  # always in the check's order
    settings = CPU_REHEARSAL if args.cpu_rehearsal else CheckSettings()
    report = run_check(args.out, settings, mode="cpu-rehearsal" if args.cpu_rehearsal else "cuda", steps=steps)
    print(f"{'passed' if report['passed'] else 'FAILED'} in {report['seconds']:.0f} s: {args.out / 'report.json'}")
    sys.exit(0 if report["passed"] else 1)


if __name__ == "__main__":
    main()
