"""Benchmark: the generator's fast ops against the reference ops, and tiled rendering's speed and memory.

    python -m tests.bench.bench_model            # paper preset, batch 1 and 4, all render sizes
    python -m tests.bench.bench_model --quick    # batch 1, forward only, 1024² and 2048² renders

1. G at p = 256 (`paper` preset, the published StyleGAN3-T layer sizes), forward and forward+backward,
   with the fast ops and, in the same run, the same network on the reference ops (StyleGAN3's
   pure-PyTorch fallback: zero-stuffed upsampling, full-rate filtering, grouped convolutions).
   Filtered-lrelu time is broken out: in the forward pass by timing every call; for forward+backward by
   replaying every layer's filtered-lrelu (same inputs) forward and backward on its own.
2. Tiled rendering of the whole image at 1024², 2048², 4096²: seconds and peak memory (growth of the
   process's peak RSS, Linux VmHWM, over the RSS before rendering; each size in a fresh process).
   Every tile renders the same (tile + 2 border)² spec, so the time of a whole render is measured for
   `--render-tiles` tiles and extrapolated to all of them (labelled); peak memory is reached in the
   first tile (the canvas is allocated before it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field

import psutil
import torch

from anyres_data.spec import PatchSpec
from anyres_model.networks.generator import Generator
from anyres_model.networks.presets import preset
from anyres_model.ops import FAST_OPS, REFERENCE_OPS, Ops
from anyres_model.render import default_border, iter_tiles, tile_layout

QUOTED_REFERENCE_S = 12.8  # one p = 256 StyleGAN3-T forward with StyleGAN3's pure-PyTorch ops, 2 CPU threads


@dataclass
class OpTimes:
    """Seconds spent in each op, and the filtered-lrelu calls (inputs and arguments) for replay."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    flrelu_calls: list[tuple[torch.Tensor, dict]] = field(default_factory=list)
    record: bool = False


def timed(ops: Ops, times: OpTimes) -> Ops:
    def wrap(name, fn):
        def call(*args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            times.seconds[name] += time.perf_counter() - start
            if times.record and name == "filtered_lrelu":
                times.flrelu_calls.append((args[0].detach().clone(), kwargs))
            return out

        return call

    return Ops(*(wrap(name, fn) for name, fn in zip(Ops._fields, ops, strict=True)))


def time_generator(G: Generator, times: OpTimes, *, batch: int, backward: bool, record: bool = False) -> dict:
    z = torch.randn(batch, G.cfg.z_dim, generator=torch.Generator().manual_seed(0))
    times.seconds.clear()
    times.record = record
    start = time.perf_counter()
    if backward:
        G(z).square().mean().backward()
        G.zero_grad(set_to_none=True)
    else:
        with torch.no_grad():
            G(z)
    total = time.perf_counter() - start
    times.record = False
    return {"total": total, "flrelu": times.seconds["filtered_lrelu"], "conv": times.seconds["modulated_conv2d"]}


def replay_flrelu(calls: list[tuple[torch.Tensor, dict]], fn) -> float:
    """Forward + backward of every recorded filtered-lrelu call, on its own (after one untimed call)."""
    total = 0.0
    for i, (x, kwargs) in enumerate([calls[0], *calls]):
        x = x.clone().requires_grad_()
        bias = kwargs["b"].detach().clone().requires_grad_()
        start = time.perf_counter()
        out = fn(x, **{**kwargs, "b": bias})
        out.backward(torch.ones_like(out))
        total += (time.perf_counter() - start) if i else 0.0
    return total


def enough_memory(gib: float) -> bool:
    return psutil.virtual_memory().available > gib * 2**30


def bench_generator(args) -> list[str]:
    g_cfg, _ = preset(args.preset)
    fast_times, ref_times = OpTimes(), OpTimes()
    torch.manual_seed(0)
    G = Generator(g_cfg, ops=timed(FAST_OPS, fast_times))
    G_ref = Generator(g_cfg, ops=timed(REFERENCE_OPS, ref_times))
    G_ref.load_state_dict(G.state_dict())
    time_generator(G, fast_times, batch=1, backward=False)  # warm-up (allocator, oneDNN primitives)

    rows = []
    for batch in args.batches:
        fast_fwd = time_generator(G, fast_times, batch=batch, backward=False, record=batch == 1 and args.backward)
        ref_fwd = time_generator(G_ref, ref_times, batch=batch, backward=False)
        row = {"batch": batch, "fast_fwd": fast_fwd, "ref_fwd": ref_fwd}
        if args.backward:
            row["fast_fwdbwd"] = time_generator(G, fast_times, batch=batch, backward=True)["total"]
            if batch == 1 and enough_memory(12):  # the reference keeps every full-rate intermediate for backward
                row["ref_fwdbwd"] = time_generator(G_ref, ref_times, batch=batch, backward=True)["total"]
            if batch == 1:
                calls = fast_times.flrelu_calls
                row["fast_flrelu_fwdbwd"] = replay_flrelu(calls, FAST_OPS.filtered_lrelu)
                row["ref_flrelu_fwdbwd"] = replay_flrelu(calls, REFERENCE_OPS.filtered_lrelu)
                fast_times.flrelu_calls.clear()
        rows.append(row)
        print(f"  batch {batch} done", file=sys.stderr, flush=True)

    def fmt(v):
        return "n/a" if v is None else f"{v:.2f}"

    def ratio(a, b):
        return "n/a" if a is None or b is None else f"{a / b:.1f}×"

    lines = [
        f"G `{args.preset}` preset, p = {g_cfg.patch_size}, CPU, {args.threads} threads, seconds per call "
        f"(one call each, after one warm-up call of the fast G):",
        "",
        "| batch | pass | reference ops | fast ops | speed-up |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        b = row["batch"]
        lines.append(
            f"| {b} | forward | {fmt(row['ref_fwd']['total'])} | {fmt(row['fast_fwd']['total'])} "
            f"| {ratio(row['ref_fwd']['total'], row['fast_fwd']['total'])} |"
        )
        lines.append(
            f"| {b} | └ filtered-lrelu in forward | {fmt(row['ref_fwd']['flrelu'])} | {fmt(row['fast_fwd']['flrelu'])} "
            f"| {ratio(row['ref_fwd']['flrelu'], row['fast_fwd']['flrelu'])} |"
        )
        lines.append(
            f"| {b} | └ modulated conv in forward | {fmt(row['ref_fwd']['conv'])} | {fmt(row['fast_fwd']['conv'])} "
            f"| {ratio(row['ref_fwd']['conv'], row['fast_fwd']['conv'])} |"
        )
        if "fast_fwdbwd" in row:
            ref, fast = row.get("ref_fwdbwd"), row["fast_fwdbwd"]
            lines.append(f"| {b} | forward+backward | {fmt(ref)} | {fmt(fast)} | {ratio(ref, fast)} |")
        if "fast_flrelu_fwdbwd" in row:
            lines.append(
                f"| {b} | └ filtered-lrelu forward+backward (replayed per layer) | {fmt(row['ref_flrelu_fwdbwd'])} "
                f"| {fmt(row['fast_flrelu_fwdbwd'])} | {ratio(row['ref_flrelu_fwdbwd'], row['fast_flrelu_fwdbwd'])} |"
            )
    one = next((row for row in rows if row["batch"] == 1), None)
    if one is not None and args.preset == "paper":
        fast = one["fast_fwd"]["total"]
        lines += [
            "",
            f"Forward at batch 1 against the reference ops run here: {one['ref_fwd']['total'] / fast:.1f}×; "
            f"against the {QUOTED_REFERENCE_S} s quoted for StyleGAN3's fallback on 2 CPU threads: "
            f"{QUOTED_REFERENCE_S / fast:.1f}× (target ≥ 5×).",
        ]
    return lines


def render_probe(preset_name: str, size: int, tile: int, max_tiles: int, threads: int) -> dict:
    """In this (fresh) process: peak RSS growth and seconds of the first max_tiles tiles of a size² render."""

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

    torch.set_num_threads(threads)
    g_cfg, _ = preset(preset_name)
    torch.manual_seed(0)
    G = Generator(g_cfg).eval()
    z = torch.randn(1, g_cfg.z_dim)
    window = PatchSpec.global_(size)
    layout = tile_layout(window, tile=tile, border=default_border(G), step=G.synthesis.grid_step)
    base = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS to the current RSS
    start = time.perf_counter()
    with torch.no_grad():
        ws = G.mapping(z)
        canvas = torch.empty(1, 3, size, size)  # what render() returns
        done = 0
        for t, img in iter_tiles(G, ws, window, tile=tile):
            canvas[:, :, t.top : t.top + t.height, t.left : t.left + t.width] = img
            done += 1
            if done == max_tiles:
                break
    seconds = time.perf_counter() - start
    return {
        "tiles": len(layout),
        "measured": done,
        "seconds": seconds,
        "span": layout[0].spec.p,
        "growth": status("VmHWM") - base,
        "canvas": canvas.numel() * 4,
    }


def bench_render(args) -> list[str]:
    lines = [
        f"Tiled render of the whole image, `{args.render_preset}` preset, tile {args.tile} "
        f"(+ border, rendered as one spec per tile), CPU, {args.threads} threads:",
        "",
        "| size | tiles | rendered square | seconds per tile | seconds for the image | peak memory growth "
        "| of which output canvas |",
        "|---|---|---|---|---|---|---|",
    ]
    for size in args.render_sizes:
        cmd = [sys.executable, "-m", "tests.bench.bench_model", "--render-probe", f"{args.render_preset},{size}"]
        cmd += ["--tile", str(args.tile), "--render-tiles", str(args.render_tiles), "--threads", str(args.threads)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=os.getcwd())
        m = json.loads(done.stdout.strip().splitlines()[-1])
        per_tile = m["seconds"] / m["measured"]
        total = per_tile * m["tiles"]
        label = f"{total:.1f}" if m["measured"] == m["tiles"] else f"{total:.0f} (extrapolated from {m['measured']})"
        lines.append(
            f"| {size}² | {m['tiles']} | {m['span']}² | {per_tile:.2f} | {label} | {m['growth'] / 2**20:.0f} MiB "
            f"| {m['canvas'] / 2**20:.0f} MiB |"
        )
        print(f"  render {size} done", file=sys.stderr, flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="batch 1, forward only, renders 1024² and 2048²")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--preset", default="paper", help="generator preset for the op benchmark (default paper)")
    parser.add_argument("--batches", default="1,4", help="batch sizes (default 1,4)")
    parser.add_argument("--no-backward", dest="backward", action="store_false", help="forward only")
    parser.add_argument("--skip-generator", action="store_true", help="only the render benchmark")
    parser.add_argument("--skip-render", action="store_true", help="only the generator benchmark")
    parser.add_argument("--render-preset", default="paper", help="preset of the render benchmark (default paper)")
    parser.add_argument("--render-sizes", default="1024,2048,4096", help="image sizes (default 1024,2048,4096)")
    parser.add_argument("--tile", type=int, default=512, help="render tile size (default 512)")
    parser.add_argument("--render-tiles", type=int, default=1, help="tiles timed per size; 0 = all (default 1)")
    parser.add_argument("--render-probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.render_probe:
        name, size = args.render_probe.split(",")
        print(json.dumps(render_probe(name, int(size), args.tile, args.render_tiles or 10**9, args.threads)))
        return
    args.batches = [int(b) for b in args.batches.split(",")]
    args.render_sizes = [int(s) for s in args.render_sizes.split(",")]
    if args.quick:
        args.batches, args.backward, args.render_sizes = [1], False, [1024, 2048]
    print(f"torch {torch.__version__}, {args.threads} threads, {psutil.cpu_count()} CPUs\n")
    if not args.skip_generator:
        print("\n".join(bench_generator(args)) + "\n")
    if not args.skip_render:
        print("\n".join(bench_render(args)))


if __name__ == "__main__":
    main()
