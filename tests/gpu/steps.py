"""The six steps of the GPU check; `tests/gpu/check.py` runs each in its own process under a time box.

A step records what it measures case by case (`Record.case`): a case that raises is recorded with
its error and the step goes on with the next one, so one broken path (say torch.compile) does not
hide the numbers of the others, and the record is written after every case, so a step stopped at
its time box keeps what it measured. Steps call the library's public functions (train, render,
evaluate, the ops and their references); nothing here re-implements them.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib
import importlib.metadata
import itertools
import math
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from unittest import mock

import numpy as np
import torch
from PIL import Image

from anyres_data.spec import PatchSpec
from anyres_model.networks import discriminator as discriminator_module
from anyres_model.networks.discriminator import Discriminator
from anyres_model.networks.generator import Generator
from anyres_model.networks.presets import preset
from anyres_model.ops import FAST_OPS, REFERENCE_OPS, Ops, upfirdn2d, upfirdn2d_ref
from anyres_model.render import default_border, latent, render, tile_layout, to_numpy_image, zoom_specs, zoom_strip
from tests.gpu.check import CheckSettings, pinned_requirements, write_json

if TYPE_CHECKING:
    from anyres_model.training.config import TrainConfig

# Training and evaluation (tensorboard, torch-fidelity, pandas, the build) are imported in the steps
# that use them: every step is a process of its own, and the others need not pay for those imports.

T = TypeVar("T")
STYLEGAN3_T_S_PER_KIMG = 49.8  # StyleGAN3-T at 256², one A100: the published training speed to compare with
PHASE1_STEPS = 1  # a fresh phase-1 state: one step, so that phase 2 starts from a checkpoint phase 1 wrote
MIN_MEASURED_STEPS = 2  # phase-2 steps after calibration: the first (loader restart) is left out of the means


class CheckFailed(Exception):
    """A measurement outside its tolerance, or a case that could not run."""


def require(ok: bool, message: str) -> None:
    if not ok:
        raise CheckFailed(message)


def needs(value: T | None, what: str) -> T:
    """value, or a failure saying that the case depends on an earlier one that failed."""
    if value is None:
        raise CheckFailed(f"not run: needs {what}, which failed")
    return value


def describe(err: BaseException) -> str:
    """The error's type and message, and where it was raised: what the report keeps of a failed case."""
    frames = traceback.extract_tb(err.__traceback__)
    text = f"{type(err).__name__}: {err}"
    if frames:
        text += f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})"
    return text[:2000]


class Record:
    """What a step measured, case by case, and the files it wrote; saved to its JSON file after every case."""

    def __init__(self, path: Path, out: Path) -> None:
        self.path, self.out = path, out
        self.results: dict[str, dict[str, Any]] = {}
        self.errors: list[str] = []
        self.files: list[str] = []

    @contextmanager
    def case(self, name: str) -> Iterator[dict[str, Any]]:
        """Yield the case's result dict; an exception marks the case failed (with its text) and is not re-raised."""
        entry: dict[str, Any] = {}
        self.results[name] = entry
        self.save()  # a case without "passed" is the one a time box stopped
        start = time.perf_counter()
        try:
            yield entry
            entry["passed"] = True
        except Exception as err:
            traceback.print_exc()
            entry["passed"] = False
            entry["error"] = describe(err)
            self.errors.append(f"{name}: {entry['error']}")
        finally:
            entry["seconds"] = round(time.perf_counter() - start, 3)
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # a failed case (out of memory, say) leaves nothing behind for the next
            self.save()

    def file(self, path: Path) -> Path:
        self.files.append(str(path.relative_to(self.out)))
        return path

    def save(self) -> None:
        write_json(self.path, {"results": self.results, "errors": self.errors, "files": self.files})


@dataclass
class Context:
    out: Path
    settings: CheckSettings
    record: Record
    deadline: float  # time.monotonic() by which the step's process is stopped

    @property
    def device(self) -> torch.device:
        if self.settings.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"CUDA is not available (torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
                "on a machine without a GPU run the check with --cpu-rehearsal"
            )
        return torch.device(self.settings.device)

    @property
    def work(self) -> Path:
        return self.out / "work"


def significant(value: float) -> float:
    """Three significant digits: what an error or a difference is reported with."""
    return float(f"{value:.3g}")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory of a block: CUDA's peak allocation on a GPU; growth of the process's peak RSS on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mib = math.nan

    @staticmethod
    def _status(key: str) -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

    def __enter__(self) -> PeakMemory:
        sync(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.base = self._status("VmRSS")
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
        return self

    def __exit__(self, *exc: object) -> None:
        sync(self.device)
        if self.device.type == "cuda":
            self.peak_mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self.peak_mib = (self._status("VmHWM") - self.base) / 2**20

    def as_dict(self) -> dict[str, Any]:
        kind = "cuda_max_allocated" if self.device.type == "cuda" else "cpu_peak_rss_growth"
        return {"peak_memory_mib": round(self.peak_mib, 1), "memory_kind": kind}


def make_generator(ctx: Context, *, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    return Generator(preset(ctx.settings.preset)[0]).to(ctx.device)


def demo_dataset(ctx: Context) -> Path:
    """The demo dataset of the training and metrics steps, built once per OUT with the library's build."""
    from tests.support.tiny_data import build_demo

    out = ctx.work / "demo-hr"
    if not (out / "manifest.parquet").exists():
        shutil.rmtree(out, ignore_errors=True)  # a build stopped by a time box: start again
        s = ctx.settings
        build_demo(out, count=s.demo_count, min_side=s.demo_min_side, max_side=s.demo_max_side, seed=0)
    return out


# 1. Environment ----------------------------------------------------------------------------------


def environment(ctx: Context) -> None:
    with ctx.record.case("python") as r:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        r.update(version=platform.python_version(), executable=sys.executable, platform=platform.platform())
        r.update(cpus=os.cpu_count(), memory_gib=round(memory / 2**30, 1))
    with ctx.record.case("packages") as r:
        missing, other_versions = [], {}
        for name, _, version in pinned_requirements():
            try:
                installed = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                missing.append(name)
                continue
            if installed.split("+")[0] != version:
                other_versions[name] = f"{installed} (pinned {version})"
        r.update(missing=missing, other_versions=other_versions)
        for module in ("anyres_data.build.job", "anyres_model.training.train", "anyres_model.metrics.evaluate"):
            importlib.import_module(module)
        require(
            not missing,
            f"not installed: {', '.join(missing)}; prepare local wheels as docs/training.md says "
            "(python -m tests.gpu.check --print-requirements)",
        )
    with ctx.record.case("torch") as r:
        r.update(version=torch.__version__, cuda_build=torch.version.cuda, cudnn=torch.backends.cudnn.version())
        r.update(cuda_available=torch.cuda.is_available(), threads=torch.get_num_threads())
        r.update(cudnn_tf32=torch.backends.cudnn.allow_tf32, matmul_tf32=torch.backends.cuda.matmul.allow_tf32)
        try:
            r["triton"] = importlib.metadata.version("triton")
        except importlib.metadata.PackageNotFoundError:
            r["triton"] = None  # torch.compile's inductor backend needs it on a GPU
        r["c_compiler"] = shutil.which("cc") or shutil.which("gcc")
    with ctx.record.case("device") as r:
        device = ctx.device
        r["device"] = str(device)
        if device.type == "cuda":
            props = torch.cuda.get_device_properties(device)
            free, total = torch.cuda.mem_get_info(device)
            r.update(name=props.name, capability=f"{props.major}.{props.minor}", count=torch.cuda.device_count())
            r.update(memory_gib=round(total / 2**30, 1), free_gib=round(free / 2**30, 1))
            r.update(multiprocessors=props.multi_processor_count, bf16=torch.cuda.is_bf16_supported())
            if shutil.which("nvidia-smi"):
                query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
                r["nvidia_smi"] = subprocess.run(query, capture_output=True, text=True, timeout=20).stdout.strip()


# 2. Ops ------------------------------------------------------------------------------------------


@dataclass
class OpCall:
    """One call of an op in a real forward pass: its differentiable inputs and the rest of its arguments."""

    op: str
    index: int  # position among the calls of this op (the layer or resampling, in order)
    tensors: dict[str, torch.Tensor]
    kwargs: dict[str, Any]


OP_INPUTS = {"modulated_conv2d": ("x", "weight", "styles"), "filtered_lrelu": ("x",), "upfirdn2d": ("x", "f")}
OP_DIFFERENTIABLE = {"modulated_conv2d": ("x", "weight", "styles"), "filtered_lrelu": ("x", "b"), "upfirdn2d": ("x",)}
# What the op gets under autocast: activations (and styles, from a linear layer) in half precision, not weights.
OP_HALF_INPUTS = {"modulated_conv2d": ("x", "styles"), "filtered_lrelu": ("x", "b"), "upfirdn2d": ("x",)}
OP_FUNCTIONS = {  # (fast, reference): the synthesis layers' two implementations, and D's resampling
    **{name: (getattr(FAST_OPS, name), getattr(REFERENCE_OPS, name)) for name in Ops._fields},
    "upfirdn2d": (upfirdn2d, upfirdn2d_ref),
}


def recorder(op: str, fn: Callable, calls: list[OpCall]) -> Callable:
    """fn, also recording each call's arguments (detached copies) in `calls`."""

    def call(*args: Any, **kwargs: Any) -> Any:
        named = {**dict(zip(OP_INPUTS[op], args, strict=False)), **kwargs}
        tensors = {k: named.pop(k).detach().clone() for k in OP_DIFFERENTIABLE[op]}
        calls.append(OpCall(op, sum(c.op == op for c in calls), tensors, named))
        return fn(*args, **kwargs)

    return call


def record_op_calls(ctx: Context) -> list[OpCall]:
    """The op calls of one forward pass of the preset's G (synthesis ops) and D (FIR resampling)."""
    calls: list[OpCall] = []
    g_cfg, d_cfg = preset(ctx.settings.preset)
    torch.manual_seed(0)
    ops = Ops(*(recorder(name, fn, calls) for name, fn in zip(Ops._fields, FAST_OPS, strict=True)))
    G = Generator(g_cfg, ops=ops).to(ctx.device)
    D = Discriminator(d_cfg).to(ctx.device)
    with torch.no_grad():
        images = G(torch.randn(ctx.settings.op_batch, g_cfg.z_dim, device=ctx.device))
        with mock.patch.object(discriminator_module, "upfirdn2d", recorder("upfirdn2d", upfirdn2d, calls)):
            D(images)
    return calls


def spread(n: int, k: int) -> set[int]:
    """k indices spread evenly over range(n), first and last included (all of them when k ≥ n)."""
    return {round(i * (n - 1) / max(k - 1, 1)) for i in range(min(k, n))}


def device_randn(shape: torch.Size, *, seed: int, device: torch.device) -> torch.Tensor:
    """Seeded float64 normal noise drawn where it is used (a CPU draw of a large activation's size is slow)."""
    return torch.randn(shape, generator=torch.Generator(device).manual_seed(seed), dtype=torch.float64, device=device)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """max|a − b| / max|b|, in float64."""
    return float((a.double() - b).abs().max() / b.abs().max().clamp_min(1e-30))


def compare_op(call: OpCall, dtype: torch.dtype, *, seed: int) -> dict[str, float]:
    """Relative errors of the fast op against its float64 reference; in half precision as AMP runs it.

    Half precision: the inputs autocast hands the op are rounded to dtype and the op runs under
    autocast. Both get the same rounded inputs, so only the arithmetic differs. Gradients: one
    backward of the same random output gradient through both.
    """
    fast_fn, ref_fn = OP_FUNCTIONS[call.op]
    inputs = {k: v.to(dtype) if k in OP_HALF_INPUTS[call.op] else v for k, v in call.tensors.items()}
    fast_in = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    ref_in = {k: v.to(torch.float64).requires_grad_() for k, v in inputs.items()}
    ref_kwargs = {k: v.to(torch.float64) if isinstance(v, torch.Tensor) else v for k, v in call.kwargs.items()}
    device = call.tensors["x"].device.type
    with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
        out = fast_fn(**fast_in, **call.kwargs)
    expected = ref_fn(**ref_in, **ref_kwargs)
    require(out.dtype == dtype, f"output is {out.dtype}, expected {dtype}")
    grad = device_randn(expected.shape, seed=seed, device=expected.device)
    out.backward(grad.to(out.dtype))
    expected.backward(grad)
    errors = {"value": relative_error(out, expected)}
    errors.update({f"grad_{k}": relative_error(fast_in[k].grad, ref_in[k].grad) for k in inputs})
    return errors


def double_backward_error(call: OpCall) -> float:
    """R1 differentiates D's resampling twice: d/dw ‖∂(op(x)·w)/∂x‖², fast against reference (float64)."""
    results = []
    for fn, dtype in ((upfirdn2d, torch.float32), (upfirdn2d_ref, torch.float64)):
        x = call.tensors["x"].to(dtype).requires_grad_()
        kwargs = {k: v.to(dtype) if isinstance(v, torch.Tensor) else v for k, v in call.kwargs.items()}
        y = fn(x, **kwargs)
        w = device_randn(y.shape, seed=1, device=y.device).to(dtype).requires_grad_()
        (gx,) = torch.autograd.grad((y * w).sum(), x, create_graph=True)
        (gw,) = torch.autograd.grad(gx.square().sum(), w)
        results.append(gw)
    return relative_error(*results)


def ops(ctx: Context) -> None:
    # Plain float32 for the float32 comparison: TF32 would round inputs to 10 bits and hide a 1e-4 error.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    calls: list[OpCall] = []
    with ctx.record.case("record") as r:
        calls = record_op_calls(ctx)
        r.update({op: sum(c.op == op for c in calls) for op in OP_FUNCTIONS}, batch=ctx.settings.op_batch)
        r["tf32"] = False
    if ctx.settings.op_calls:  # a spread of layers: the first, the last (toRGB) and between
        counts = Counter(c.op for c in calls)
        calls = [c for c in calls if c.index in spread(counts[c.op], ctx.settings.op_calls)]
    cases = list(calls)
    cases += [  # a batch of one takes another path (modulation folded into the weights): tiled rendering's
        dataclasses.replace(c, tensors={k: v if k == "weight" else v[:1] for k, v in c.tensors.items()})
        for c in calls
        if c.op == "modulated_conv2d"
    ]
    for dtype_name, tolerance in ctx.settings.op_tolerances:
        dtype = getattr(torch, dtype_name)
        for i, call in enumerate(cases):
            batch = call.tensors["x"].shape[0]
            with ctx.record.case(f"{call.op}/{call.index:02d}/b{batch}/{dtype_name}") as r:
                errors = compare_op(call, dtype, seed=i)
                r.update({k: significant(v) for k, v in errors.items()}, tolerance=tolerance)
                worst = max(errors, key=errors.__getitem__)
                require(errors[worst] <= tolerance, f"{worst} error {errors[worst]:.2e} > {tolerance:.0e}")
    with ctx.record.case("upfirdn2d/double_backward/float32") as r:
        tolerance = dict(ctx.settings.op_tolerances)["float32"]
        call = needs(next((c for c in calls if c.op == "upfirdn2d"), None), "the recorded calls")
        r["relative_error"] = error = significant(double_backward_error(call))
        require(error <= tolerance, f"double-backward error {error:.2e} > {tolerance:.0e}")


# 3. Generator ------------------------------------------------------------------------------------


def dynamo_summary() -> dict[str, Any]:
    """How torch.compile split G (its counters are private API, so a failure to read them is just noted)."""
    try:
        from torch._dynamo.utils import counters

        breaks = counters["graph_break"]
        limit_hits = sum(v for k, v in counters["unimplemented"].items() if "recompile limit" in k.lower())
        reasons = sorted(breaks.items(), key=lambda kv: -kv[1])[:5]
        return {
            "unique_graphs": int(counters["stats"]["unique_graphs"]),
            "graph_breaks": int(sum(breaks.values())),
            "recompile_limit_hits": int(limit_hits),
            "top_break_reasons": [f"{count}× {reason.splitlines()[0]}" for reason, count in reasons],
        }
    except Exception as err:
        return {"error": describe(err)}


@dataclass(frozen=True)
class GeneratorCase:
    compiled: bool
    batch: int
    amp: bool  # bfloat16 autocast, as `anyres-train --amp`
    backward: bool

    @property
    def name(self) -> str:
        passes = "forward+backward" if self.backward else "forward"
        return f"{'compiled' if self.compiled else 'eager'}/{'amp' if self.amp else 'fp32'}/b{self.batch}/{passes}"


def time_generator(model: torch.nn.Module, G: Generator, case: GeneratorCase, *, repeats: int) -> dict[str, Any]:
    """First call (compilation included) and the median of `repeats` more, of one case; its output for comparison."""
    device = next(G.parameters()).device
    z = torch.randn(case.batch, G.cfg.z_dim, generator=torch.Generator().manual_seed(case.batch)).to(device)

    def call() -> torch.Tensor:
        with torch.set_grad_enabled(case.backward), torch.autocast(device.type, torch.bfloat16, enabled=case.amp):
            out = model(z)
        if case.backward:
            out.float().square().mean().backward()
            G.zero_grad(set_to_none=True)
        sync(device)
        return out.detach().float()

    start = time.perf_counter()
    out = call()
    first = time.perf_counter() - start
    times = []
    with PeakMemory(device) as memory:
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    ms = 1000 * float(np.median(times)) / case.batch
    return {"output": out, "first_call_s": round(first, 3), "ms_per_image": round(ms, 2), **memory.as_dict()}


def generator(ctx: Context) -> None:
    s = ctx.settings
    G = make_generator(ctx)
    compiled = None  # built at the first compiled case, which is where compilation starts
    eager: dict[tuple[int, bool, bool], dict[str, Any]] = {}
    # Compiled cases last (their compilation may run into the time box), and AMP forward+backward first
    # among them: what `anyres-train --amp --compile` runs.
    flags = itertools.product((False, True), s.gen_batches, (True, False), (True, False))
    for case in (GeneratorCase(*f) for f in flags):
        with ctx.record.case(case.name) as r:
            if case.compiled and compiled is None:
                compiled = torch.compile(G, backend=s.compile_backend, dynamic=False)
            timing = time_generator(compiled if case.compiled else G, G, case, repeats=s.gen_repeats)
            out = timing.pop("output")
            r.update(batch=case.batch, calls=s.gen_repeats, **timing)
            require(bool(torch.isfinite(out).all()), "non-finite output")
            key = (case.batch, case.amp, case.backward)
            if not case.compiled:
                eager[key] = {"ms_per_image": timing["ms_per_image"], "output": out}
                continue
            r["dynamo"] = dynamo_summary()
            if key in eager:
                r["speedup_vs_eager"] = round(eager[key]["ms_per_image"] / timing["ms_per_image"], 3)
                diff = float((out - eager[key]["output"]).abs().max())
                tolerance = s.compile_tolerances[case.amp]
                r.update(max_abs_diff_vs_eager=significant(diff), tolerance=tolerance)
                require(diff <= tolerance, f"compiled output differs from eager by {diff:.2e} > {tolerance:.0e}")


# 4. Training -------------------------------------------------------------------------------------


def train_config(ctx: Context, data: Path, **fields: Any) -> TrainConfig:
    from anyres_data.settings import from_dict
    from anyres_model.training.config import TrainConfig

    s = ctx.settings
    p = preset(s.preset)[0].patch_size
    cuda = s.device == "cuda"
    base = {
        "preset": s.preset,
        "lpips": s.train_lpips,
        "snapshot_kimg": 1e6,  # checkpoints only at the end of each call
        "image_kimg": 0,
        "log_every": 1,  # one log row per step: the step's s/kimg and time shares
        "device": s.device,
        "amp": s.train_amp,
        "compile": s.train_compile,
        "data": {
            "hr": str(data),
            "batch_size": s.train_batch,
            "workers": s.train_workers,
            "shuffle_buffer": 64,  # encoded images per worker: the default 1000 would hold gigabytes here
            "pin_memory": cuda,
        },
        "sampler": {"p": p},
    }
    return from_dict(TrainConfig, {**base, **fields})


def kimg(steps: int, batch: int) -> float:
    return steps * batch / 1000


def training(ctx: Context) -> None:
    import pandas as pd

    from anyres_model.checkpoint import load_generator
    from anyres_model.training.run_log import save_image_grid
    from anyres_model.training.train import GRID_LATENTS, train

    s = ctx.settings
    device = ctx.device
    data = phase1 = last = None
    with ctx.record.case("dataset") as r:
        data = demo_dataset(ctx)
        manifest = pd.read_parquet(data / "manifest.parquet")
        r.update(images=len(manifest), min_side=int(manifest[["width", "height"]].min(axis=1).min()))
        r["max_side"] = int(manifest[["width", "height"]].max(axis=1).max())
    run1, run2 = ctx.work / "phase1", ctx.work / "phase2"
    for run_dir in (run1, run2):
        shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run every time the step runs
    with ctx.record.case("phase1") as r:
        data = needs(data, "the dataset")
        cfg1 = train_config(ctx, data, run_dir=str(run1), phase="global", total_kimg=kimg(PHASE1_STEPS, s.train_batch))
        start = time.perf_counter()
        phase1 = train(cfg1)
        r.update(steps=PHASE1_STEPS, seconds_with_startup=round(time.perf_counter() - start, 2), checkpoint=phase1.name)
    with ctx.record.case("phase2") as r:
        start = time.monotonic()
        end = min(start + s.train_seconds, ctx.deadline - 15)  # leave time for the grid and the record
        calibration = s.calibration_steps
        fields = dict(run_dir=str(run2), phase="patch", init=str(needs(phase1, "phase 1")))
        cfg2 = train_config(ctx, needs(data, "the dataset"), **fields, total_kimg=kimg(calibration, s.train_batch))
        train(cfg2)
        calibration_s = time.monotonic() - start
        step_s = float(pd.read_csv(run2 / "log.csv")["speed/s_per_kimg"].iloc[-1]) * s.train_batch / 1000
        startup_s = max(calibration_s - calibration * step_s, 0.0)  # what a train() call costs besides its steps
        more = int((end - time.monotonic() - startup_s) / step_s)
        more = max(MIN_MEASURED_STEPS, min(more, s.max_train_steps - calibration))
        with PeakMemory(device) as memory:
            last = train(dataclasses.replace(cfg2, resume=True, total_kimg=kimg(calibration + more, s.train_batch)))
        log = pd.read_csv(run2 / "log.csv")
        resumed = log[log["kimg"] > kimg(calibration, s.train_batch) + 1e-9]
        measured = resumed.iloc[1:]  # the first resumed step includes the loader's restart
        s_per_kimg = float(measured["speed/s_per_kimg"].mean())
        r.update(
            batch=s.train_batch,
            calibration_steps=calibration,
            calibration_s=round(calibration_s, 2),
            measured_steps=len(measured),
            wall_s=round(time.monotonic() - start, 2),
            s_per_kimg=round(s_per_kimg, 2),
            samples_per_s=round(1000 / s_per_kimg, 2),
            reference_s_per_kimg=STYLEGAN3_T_S_PER_KIMG,
            vs_stylegan3_t=round(s_per_kimg / STYLEGAN3_T_S_PER_KIMG, 3),
            data_share=round(float(measured["time/data"].mean()), 4),
            shares={part: round(float(measured[f"time/{part}"].mean()), 4) for part in ("G", "D", "teacher", "lpips")},
            amp=s.train_amp,
            compile=s.train_compile,
            **memory.as_dict(),
        )
        for column in ("loss/G", "loss/D", "loss/teacher_l1"):
            require(bool(np.isfinite(log[column].dropna()).all()), f"{column} is not finite")
    with ctx.record.case("grid") as r:
        G_ema = load_generator(needs(last, "phase 2"), map_location=device)
        z = torch.randn(GRID_LATENTS, G_ema.cfg.z_dim, generator=torch.Generator().manual_seed(0)).to(device)
        path = ctx.record.file(ctx.out / "training-grid.png")
        save_image_grid(G_ema, z, path)
        r["png"] = path.name


# 5. Rendering ------------------------------------------------------------------------------------


def rendering(ctx: Context) -> None:
    s = ctx.settings
    device = ctx.device
    G = make_generator(ctx).eval()
    z = latent(0, G.cfg.z_dim, device)
    with ctx.record.case("tiled") as r:
        tiles = tile_layout(
            PatchSpec.global_(s.render_size), tile=s.render_tile, border=default_border(G), step=G.synthesis.grid_step
        )
        with PeakMemory(device) as memory:
            start = time.perf_counter()
            image = render(G, z, s.render_size, tile=s.render_tile)
            sync(device)
            seconds = time.perf_counter() - start
        r.update(size=s.render_size, tile=s.render_tile, tiles=len(tiles), rendered_square=tiles[0].spec.p)
        r.update(seconds=round(seconds, 2), s_per_tile=round(seconds / len(tiles), 4), **memory.as_dict())
        require(bool(torch.isfinite(image).all()), "non-finite pixels")
        pixels = Image.fromarray(to_numpy_image(image[0]))
        del image
        preview = min(1024, s.render_size)
        pixels.resize((preview, preview), Image.Resampling.LANCZOS).save(
            ctx.record.file(ctx.out / "render-preview.png")
        )
        crop, offset = min(512, s.render_size), (s.render_size - min(512, s.render_size)) // 2
        pixels.crop((offset, offset, offset + crop, offset + crop)).save(ctx.record.file(ctx.out / "render-crop.png"))
    with ctx.record.case("tiled_vs_one_pass") as r:
        with PeakMemory(device) as memory:
            full = render(G, z, s.agree_size)
        tiled = render(G, z, s.agree_size, tile=s.agree_tile)
        diff = float((tiled - full).abs().max())
        r.update(size=s.agree_size, tile=s.agree_tile, max_abs_diff=significant(diff), tolerance=s.agree_tolerance)
        r["one_pass_peak_memory_mib"] = memory.as_dict()["peak_memory_mib"]
        require(diff <= s.agree_tolerance, f"tiled and one-pass renders differ by {diff:.2e} > {s.agree_tolerance:.0e}")
    with ctx.record.case("zoom") as r:
        specs = zoom_specs(G.patch_size, levels=4, centre=(0.5, 0.5))
        zoom_strip(G, z, specs).save(ctx.record.file(ctx.out / "render-zoom.png"))
        r["scales"] = [spec.s for spec in specs]


# 6. Metrics --------------------------------------------------------------------------------------


def metrics(ctx: Context) -> None:
    import pandas as pd

    from anyres_model.metrics.evaluate import EvalSettings, evaluate
    from anyres_model.metrics.fakes import global_images, latents
    from anyres_model.metrics.inception import load_inception

    s = ctx.settings
    device = ctx.device
    data = None
    with ctx.record.case("dataset") as r:
        data = demo_dataset(ctx)
        r["images"] = len(pd.read_parquet(data / "manifest.parquet"))
    G = make_generator(ctx).eval()
    with ctx.record.case("pswd") as r:
        settings = EvalSettings(
            data=str(needs(data, "the dataset")),
            metrics=("pswd", "pfid"),
            n=s.pswd_patches,
            swd_n=s.pswd_patches,
            batch=s.metrics_batch,
            inception_weights="random",  # plumbing only: the values of pfid mean nothing
            cache_dir=str(ctx.work / "eval-cache"),
        )
        start = time.perf_counter()
        results = evaluate(G, settings, progress=False)
        seconds = time.perf_counter() - start
        pswd, pfid = results["metrics"]["pswd"], results["metrics"]["pfid"]
        r.update(patches=s.pswd_patches, pswd=round(pswd["value"], 3), pswd_levels=pswd["levels"])
        r.update(pfid_random_inception=round(pfid["value"], 3), seconds=round(seconds, 2))
        r["patches_per_s"] = round(s.pswd_patches / seconds, 2)  # real and fake patches, both metrics
        require(math.isfinite(pswd["value"]) and pswd["value"] > 0, f"pSWD is {pswd['value']}")
        require(math.isfinite(pfid["value"]), f"pFID is {pfid['value']}")
    with ctx.record.case("fid_features") as r:
        inception = load_inception("random", device=device)
        images = global_images(G, latents(0, range(s.metrics_batch), G.cfg.z_dim).to(device))  # uint8 (B, 3, P, P)
        inception.features(images)  # warm-up: cuDNN picks its algorithms
        calls = -(-s.fid_images // s.metrics_batch)
        with PeakMemory(device) as memory:
            start = time.perf_counter()
            for _ in range(calls):
                features = inception.features(images)  # returns on the CPU: synchronised
            seconds = time.perf_counter() - start
        r.update(images=calls * s.metrics_batch, image_size=images.shape[-1], batch=s.metrics_batch)
        r.update(
            seconds=round(seconds, 3), images_per_s=round(calls * s.metrics_batch / seconds, 1), **memory.as_dict()
        )
        require(features.shape == (s.metrics_batch, 2048) and bool(torch.isfinite(features).all()), "bad features")


STEP_FUNCTIONS: dict[str, Callable[[Context], None]] = {
    "environment": environment,
    "ops": ops,
    "generator": generator,
    "training": training,
    "rendering": rendering,
    "metrics": metrics,
}


def run(name: str, *, out: Path, settings: CheckSettings, deadline: float) -> None:
    """Run one step; its record goes to OUT/steps/NAME.json (an error outside any case is recorded too)."""
    record = Record(out / "steps" / f"{name}.json", out)
    if settings.device == "cpu" and settings.cpu_threads:
        torch.set_num_threads(settings.cpu_threads)
    try:
        STEP_FUNCTIONS[name](Context(out=out, settings=settings, record=record, deadline=deadline))
    except Exception as err:
        traceback.print_exc()
        record.errors.append(f"step: {describe(err)}")
    finally:
        record.save()
