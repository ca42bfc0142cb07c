"""The convolutional families' training step against the machine's limit: img/s and FLOP/s of
a bare step (forward, backward, SGD update) of each structure, in fp32 and under bf16 autocast,
channels-last, as shares of the fp32 and bf16 matmul peaks measured in the same run.

    python bench/conv_peak.py [--nets dcnn:small,dcnn:large,cnn:medium] [--batch 256]

Writes bench/results/conv_peak.json."""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from bench_results import matmul_peak, write
from torch.utils.flop_counter import FlopCounterMode

from lightning_modules.config import ModelConfig, native_bf16
from lightning_modules.nets import build_net

SHAPE = (3, 32, 32)


def step_rate(net: torch.nn.Module, batch: int, bf16: bool, steps: int = 6) -> float:
    """Median img/s of training steps after two warm-up steps."""
    net = net.to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.01,
                          momentum=0.9)
    x = torch.randn(batch, *SHAPE).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    times = []
    for _ in range(steps + 2):
        t = time.perf_counter()
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
    return batch / statistics.median(times[2:])


def forward_flops(net: torch.nn.Module) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, *SHAPE))
    return counter.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="dcnn:small,dcnn:medium,dcnn:large,cnn:medium")
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    rows = {}
    for spec in args.nets.split(","):
        family, preset = spec.split(":")
        cfg = ModelConfig(family=family, preset=preset, activation="gelu", dropout=0.0)
        net = build_net(cfg, SHAPE, 10)
        train_flops = 3 * forward_flops(net)  # backward ≈ twice the forward
        for precision in ("fp32", "bf16"):
            if precision == "bf16" and not native_bf16("cpu"):
                rows[f"{spec} bf16"] = {"skipped": "no native bf16 on this CPU (AVX512-BF16, "
                                        "AMX): autocast would only add conversions"}
                continue
            rate = step_rate(net, args.batch, precision == "bf16")
            rows[f"{spec} {precision}"] = {
                "img_per_s": round(rate, 1), "gflop_s": round(rate * train_flops / 1e9, 1),
                **{f"share_of_{k}_peak": round(rate * train_flops / v, 3)
                   for k, v in peaks.items()}}
            print(spec, precision, rows[f"{spec} {precision}"], file=sys.stderr)
    print(write("conv_peak", {"command": " ".join(["python", *sys.argv]), "batch": args.batch,
                              "threads": torch.get_num_threads(),
                              "peaks_gflop_s": {k: round(v / 1e9, 1) for k, v in peaks.items()},
                              "nets": rows}))


if __name__ == "__main__":
    main()
