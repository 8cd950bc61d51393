"""GPU check: MixUnlearn on CUDA matches the CPU result, then throughput of training and MixUnlearn on ResNet-18.

Usage: python -m components.bench.gpu [--out DIR] [--steps N]

1. Correctness: the same MixUnlearn run (small CNN, random 1x8x8 inputs, identical initial weights and random
   draws, fp32, deterministic kernels) on CPU and on CUDA; prints the largest weight and output differences.
2. Speed: ResNet-18 at 3x32x32, batch 128, synthetic inputs (no CIFAR here), in images per second:
   supervised training steps and MixUnlearn steps (forget+retain batches of 128; a generator step every 4),
   each in fp32 and in bfloat16 mixed precision.
Prints a table and writes DIR/gpu.json. Without CUDA it says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from components.models.backbones import build_backbone
from components.training import TrainConfig, make_optimizer
from components.unlearning.base import LabeledTensors, UnlearningTask
from components.unlearning.mixunlearn import MixUnlearn, MixUnlearnConfig


def tiny_task(device: torch.device) -> UnlearningTask:
    """A small CNN 'original' model and random data, identical on every device."""
    torch.manual_seed(0)
    model = build_backbone("small_cnn", (1, 8, 8), 10)
    images = torch.randn(96, 1, 8, 8)
    labels = torch.randint(0, 10, (96,))
    forget = LabeledTensors(images[:32].to(device), labels[:32].to(device))
    retain = LabeledTensors(images[32:].to(device), labels[32:].to(device))
    return UnlearningTask(
        original=model.to(device).eval(),
        forget=forget,
        retain=retain,
        num_classes=10,
        seed=0,
        build_model=lambda: build_backbone("small_cnn", (1, 8, 8), 10),
        train_config=TrainConfig(),
    )


def check_against_cpu() -> dict[str, float]:
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    config = MixUnlearnConfig(epochs=3, batch_size=16, lr=1e-3, amp=False, generator_interval=2)
    results = {}
    for name in ("cpu", "cuda"):
        device = torch.device(name)
        task = tiny_task(device)
        model = MixUnlearn(config, task).run().model
        probe = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(1)).to(device)
        with torch.no_grad():
            results[name] = (
                {k: v.detach().cpu() for k, v in model.state_dict().items()},
                torch.softmax(model(probe), 1).cpu(),
            )
    weight_diff = max((results["cpu"][0][k] - results["cuda"][0][k]).abs().max().item() for k in results["cpu"][0])
    output_diff = (results["cpu"][1] - results["cuda"][1]).abs().max().item()
    agree = (results["cpu"][1].argmax(1) == results["cuda"][1].argmax(1)).float().mean().item() * 100
    return {"max_weight_diff": weight_diff, "max_prob_diff": output_diff, "argmax_agreement_pct": agree}


def time_block(device: torch.device, steps: int, step) -> float:
    for _ in range(3):
        step()
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize(device)
    return time.perf_counter() - start


def training_throughput(device: torch.device, amp: bool, steps: int, batch: int = 128) -> float:
    torch.manual_seed(0)
    model = build_backbone("resnet18", (3, 32, 32), 10).to(device).train()
    optimizer = make_optimizer(list(model.parameters()), "sgd", 0.1, 5e-4, 0.9)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return steps * batch / time_block(device, steps, step)


def mixunlearn_throughput(device: torch.device, amp: bool, steps: int, batch: int = 128) -> float:
    """Forget images processed per second (each step also runs a retain batch and a mixed batch)."""
    torch.manual_seed(0)
    original = build_backbone("resnet18", (3, 32, 32), 10).to(device).eval()
    n = batch * (steps + 8)
    forget = LabeledTensors(torch.randn(n, 3, 32, 32, device=device), torch.randint(0, 10, (n,), device=device))
    retain = LabeledTensors(torch.randn(n, 3, 32, 32, device=device), torch.randint(0, 10, (n,), device=device))
    task = UnlearningTask(
        original=original,
        forget=forget,
        retain=retain,
        num_classes=10,
        seed=0,
        build_model=lambda: build_backbone("resnet18", (3, 32, 32), 10),
        train_config=TrainConfig(),
    )
    unlearner = MixUnlearn(MixUnlearnConfig(batch_size=batch, amp=amp, tau_mix=20, tau_real=20), task)
    counter = {"i": 0}

    def step() -> None:
        i = counter["i"] % (steps + 8)
        counter["i"] += 1
        sl = slice(i * batch, (i + 1) * batch)
        pair = unlearner.make_batch(forget.images[sl], forget.labels[sl], retain.images[sl], retain.labels[sl])
        if i % unlearner.config.generator_interval == 0:
            unlearner.generator_step(pair)
        unlearner.unlearner_step(pair)

    return steps * batch / time_block(device, steps, step)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("artifacts/gpu"))
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("error: python -m components.bench.gpu needs a CUDA device; none is available here", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    report: dict[str, object] = {"device": torch.cuda.get_device_name(device), "torch": torch.__version__}
    report["cpu_vs_cuda"] = check_against_cpu()
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.deterministic = False
    rows = []
    for amp in (False, True):
        precision = "bf16-amp" if amp else "fp32"
        rows.append(
            {
                "workload": "train resnet18 32x32",
                "precision": precision,
                "images_per_s": training_throughput(device, amp, args.steps),
            }
        )
        rows.append(
            {
                "workload": "mixunlearn resnet18 32x32",
                "precision": precision,
                "images_per_s": mixunlearn_throughput(device, amp, args.steps),
            }
        )
    report["throughput"] = rows
    check = report["cpu_vs_cuda"]
    print(f"device: {report['device']} (torch {report['torch']})")
    print(
        f"MixUnlearn CPU vs CUDA: max weight diff {check['max_weight_diff']:.2e}, "
        f"max prob diff {check['max_prob_diff']:.2e}, argmax agreement {check['argmax_agreement_pct']:.1f}%"
    )
    print(f"| {'workload':28s} | {'precision':9s} | images/s |")
    print(f"|{'-' * 30}|{'-' * 11}|----------|")
    for row in rows:
        print(f"| {row['workload']:28s} | {row['precision']:9s} | {row['images_per_s']:8.0f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
