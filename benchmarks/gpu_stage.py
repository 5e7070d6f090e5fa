"""Anchor-stage training throughput of ViT-B/32 at 224 px, and the fraction of peak it reaches.

    python benchmarks/gpu_stage.py [--batch-size 512] [--steps 20] [--warmup 5]
                                   [--peak-tflops 989] [--device cuda]
    python benchmarks/gpu_stage.py --device cpu --steps 2 --warmup 1 --batch-size 2   # slow

What is timed is the paper's anchor step as the stage trainer runs it: the satellite student
(open_clip ``ViT-B-32-quickgelu``, random weights) embeds a batch of 224 px tiles under bf16
autocast on a GPU (fp32 on the CPU), symmetric InfoNCE against cached (frozen) teacher
embeddings, backward, AdamW step with geobind's parameter groups, temperature clamp. Inputs are
synthetic tensors already on the device, so data loading is not measured. ``warmup`` untimed
steps come first; then ``steps`` steps are timed between ``torch.cuda.synchronize()`` calls.

Fraction of peak = (samples/s x FLOPs per sample) / peak. FLOPs per sample are counted on this
very step by ``torch.utils.flop_counter.FlopCounterMode`` (one multiply-add = 2 FLOPs): about
26 GFLOPs for ViT-B/32 forward + backward, i.e. 3 x 8.8 GFLOPs. (open_clip's table lists
ViT-B/32 at 4.4 "GFLOPs": that count, from fvcore, is of multiply-adds, so 3 x 4.4 G is half
the FLOPs the hardware executes; pass ``--flops-per-sample 13.2e9`` to use that convention.)
``--peak-tflops`` defaults to 989, the dense bf16 tensor-core peak of an H100/H200 SXM (1979 is
with 2:4 sparsity); an A100 is 312.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def build(device: torch.device, batch_size: int, arch: str = "ViT-B-32-quickgelu"):
    """The anchor stage's trainable parts on ``device``: encoder, loss, optimiser, a batch."""
    import geobind
    from geobind.train.loss import ContrastiveLoss
    from geobind.train.stage import StageModel, param_groups

    student = geobind.build_encoder("satellite", {"arch": arch})
    size = student.config.image_size
    model = StageModel(student, None, ContrastiveLoss()).to(device).train()
    optimizer = torch.optim.AdamW(param_groups(model, 0.2), lr=5e-5, betas=(0.9, 0.98), eps=1e-6)
    pixels = torch.randn(batch_size, 3, size, size, device=device)
    teacher = F.normalize(torch.randn(batch_size, student.embed_dim, device=device), dim=-1)
    return model, optimizer, {"satellite": pixels}, teacher


def step(model, optimizer, batch, teacher, device: torch.device) -> None:
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        loss = model(batch, teacher)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    model.loss.clamp()


def count_flops(model, optimizer, batch, teacher, device: torch.device) -> float:
    """FLOPs of one training step per sample (forward + backward; the optimiser is ~free)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step(model, optimizer, batch, teacher, device)
    return counter.get_total_flops() / len(teacher)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--arch",
        default="ViT-B-32-quickgelu",
        help="open_clip architecture (or model-config JSON) of the anchor",
    )
    parser.add_argument("--batch-size", type=int, default=512, help="the paper's: 512")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=989.0,
        help="dense bf16 peak of the accelerator (H100/H200 SXM: 989)",
    )
    parser.add_argument(
        "--flops-per-sample",
        type=float,
        default=None,
        help="override the FLOPs per sample counted on the step",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    model, optimizer, batch, teacher = build(device, args.batch_size, args.arch)
    flops = args.flops_per_sample or count_flops(model, optimizer, batch, teacher, device)
    for _ in range(args.warmup):
        step(model, optimizer, batch, teacher, device)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step(model, optimizer, batch, teacher, device)
    synchronize(device)
    seconds = time.perf_counter() - start
    rate = args.steps * args.batch_size / seconds
    achieved = rate * flops / 1e12
    result = {
        "arch": args.arch,
        "device": str(device),
        "name": (torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"),
        "batch_size": args.batch_size,
        "steps": args.steps,
        "step_ms": 1000 * seconds / args.steps,
        "samples_per_s": rate,
        "gflops_per_sample": flops / 1e9,
        "achieved_tflops": achieved,
        "peak_tflops": args.peak_tflops,
        "fraction_of_peak": achieved / args.peak_tflops,
        "max_memory_gib": (
            torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        ),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{args.arch} anchor step on {result['name']}, batch {args.batch_size}: "
            f"{result['step_ms']:.1f} ms/step, {rate:.1f} samples/s; "
            f"{flops / 1e9:.1f} GFLOPs/sample -> {achieved:.2f} TFLOP/s = "
            f"{100 * result['fraction_of_peak']:.2f}% of {args.peak_tflops:g} TFLOP/s peak"
        )
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
