"""Training throughput and peak memory of the flood-water-s2 model (flood-water-s1 as baseline).

Runs real optimisation steps (AdamW, cross-entropy, the package's patch size and bands) on
patches cut from the Sen1Floods11 chip, on CPU and, when present, on CUDA. Prints samples/s,
seconds per step and peak memory (CPU: the process's peak resident set; CUDA: the peak
allocated by torch). The S1 small U-Net runs in the same process as a baseline, so the ratio
holds even when the shared CPU is busy.

    .venv/bin/python bench/train_step.py [--steps 5] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import sys
import time
from pathlib import Path

import torch
from torch import nn

from geomlops.ml.data import IGNORE
from geomlops.ml.runner import prepared_scene, training_patches
from geomlops.ml.spec import load_package

PACKAGES = Path(__file__).resolve().parents[1] / "model_packages"


def build_model_of(package_dir: Path) -> object:
    """The package's ``build_model``, imported from its ``model.py`` by path."""
    spec = importlib.util.spec_from_file_location(
        f"{package_dir.name}_model", package_dir / "model.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_model


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(name: str, device: torch.device, steps: int, batch_size: int) -> float:
    package = load_package(PACKAGES / name)
    scene, scaled, split = prepared_scene(package, None)
    x, y = training_patches(scaled, scene.label, split, package.spec.input.patch_size, 32)
    x, y = x[:batch_size].to(device), y[:batch_size].to(device)
    model = build_model_of(PACKAGES / name)(x.shape[1], len(package.spec.output.classes))
    model = model.to(device).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss(ignore_index=IGNORE)

    def step() -> None:
        optimiser.zero_grad()
        loss_fn(model(x), y).backward()
        optimiser.step()

    for _ in range(2):  # warm-up: allocator, cuDNN autotuning, lazy init
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    rate = steps * len(x) / elapsed
    memory = (
        f"peak CUDA allocated {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
        if device.type == "cuda"
        else f"process peak RSS {peak_rss_mib():.0f} MiB"
    )
    parameters = sum(p.numel() for p in model.parameters())
    print(
        f"{name:15s} {device.type:4s} batch {len(x):3d} x {tuple(x.shape[1:])} "
        f"params {parameters / 1e6:5.2f} M: {rate:7.1f} samples/s, "
        f"{elapsed / steps:.3f} s/step, {memory}"
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    print(
        f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, "
        f"CUDA {'yes: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no'}"
    )
    for device in devices:
        baseline = measure("flood-water-s1", device, args.steps, args.batch_size)
        s2 = measure("flood-water-s2", device, args.steps, args.batch_size)
        print(
            f"  {device.type}: S2 trains at {s2 / baseline:.2f}x the samples/s of the S1 baseline"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
