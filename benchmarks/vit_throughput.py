"""ViT training throughput of the real trainer: `python -m train --max-steps`, timed by its own log.

    python benchmarks/vit_throughput.py --data DATA --base-model BASE [--batch-size 256] [--steps 30]
        [--warmup-steps 5] [--workers 12] [--image-size HxW] [--random-init | --random-vit-base]
        [--augment-at scan|input] [--mixed-precision auto|no|fp16|bf16]

Runs the trainer for --warmup-steps + --steps optimizer steps (real scans: decode, augmentation,
processor, forward, backward, AdamW) and reads its tracker log (OUT/logs/metrics.jsonl): training
images per second over the timed steps, counting the time spent waiting for data, and what that
implies for one epoch of the full Kermany training set (83,484 scans). Use a dataset with more scans
than the steps need (e.g. benchmarks/synthetic_dataset.py's), so no epoch boundary falls in the
timed steps. Throughput does not depend on the weights: --random-init measures BASE's architecture with random
weights (BASE then needs only its config and processor files, so a GPU machine need not be sent the checkpoint),
and --random-vit-base a randomly initialised ViT-B/16 at 224x224 instead of BASE. --augment-at is the trainer's
(with input, the scans are decoded once before the first step, which the timed steps do not include).
--mixed-precision is the trainer's too (auto: bf16 where the hardware computes in it); the precision used is printed.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from octcore.plots import read_training_log
from train.loop import base_problem, native_mixed_precision
from train.options import AUGMENT_AT, DEFAULT_AUGMENT_AT, MIXED_PRECISION

FULL_TRAIN = 83_484


def random_init(base: str, folder: str | Path) -> str:
    """Save BASE's architecture with random weights, and its processor, in folder (for --random-init, and the loader
    runs of benchmarks/gpu_figures.sh): only BASE's config and processor files are read."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    AutoModel.from_config(AutoConfig.from_pretrained(base)).save_pretrained(folder)
    AutoImageProcessor.from_pretrained(base).save_pretrained(folder)
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--base-model", help="a folder or Hub id (not needed with --random-vit-base)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--image-size", help="HxW (default: the trainer's for the base model)")
    parser.add_argument("--split-file", help="skip the trainer's own split (which decodes every scan once)")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--random-init", action="store_true", help="BASE's architecture with random weights")
    weights.add_argument("--random-vit-base", action="store_true", help="a randomly initialised ViT-B/16 at 224x224")
    parser.add_argument(
        "--augment-at",
        choices=AUGMENT_AT,
        default=DEFAULT_AUGMENT_AT,
        help=f"the trainer's (default {DEFAULT_AUGMENT_AT})",
    )
    parser.add_argument("--mixed-precision", choices=MIXED_PRECISION, default="auto")
    args = parser.parse_args()
    if not (args.base_model or args.random_vit_base):
        parser.error("--base-model is required (unless --random-vit-base)")
    work = Path(tempfile.mkdtemp(prefix="vit-throughput-"))
    base = args.base_model
    if args.random_vit_base:
        from transformers import ViTConfig, ViTModel

        base = str(work / "vit-base")
        ViTModel(ViTConfig(), add_pooling_layer=False).save_pretrained(base)
    elif args.random_init:
        problem = base_problem(args.base_model)  # the trainer's own check, made here before it would run
        if problem:
            parser.error(f"--base-model {args.base_model!r} cannot be loaded ({problem})")
        base = random_init(args.base_model, work / "random-init")
    command = [
        sys.executable,
        "-m",
        "train",
        "--data",
        args.data,
        "--base-model",
        base,
        "--out",
        str(work / "run"),
        "--batch-size",
        str(args.batch_size),
        "--workers",
        str(args.workers),
        "--epochs",
        "1000",
        "--max-steps",
        str(args.warmup_steps + args.steps),
        "--augment-at",
        args.augment_at,
        "--mixed-precision",
        args.mixed_precision,
    ]
    command += ["--image-size", args.image_size] if args.image_size else []
    command += ["--split-file", args.split_file] if args.split_file else []
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"the trainer failed:\n{result.stderr[-3000:]}")

    steps = [r for r in read_training_log(work / "run" / "logs" / "metrics.jsonl") if "train/images_per_s" in r]
    timed = steps[args.warmup_steps :]
    seconds = sum(args.batch_size / r["train/images_per_s"] for r in timed)
    waiting = sum(r["train/data_wait_s"] for r in timed)
    rate = len(timed) * args.batch_size / seconds
    import torch

    precision = native_mixed_precision() if args.mixed_precision == "auto" else args.mixed_precision
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(
        f"{'ViT-B/16 (random init)' if args.random_vit_base else args.base_model}"
        f"{' (random init)' if args.random_init else ''}, batch {args.batch_size}, "
        f"{args.workers} loader workers, augmented at the {args.augment_at}, {device}, mixed precision {precision}: "
        f"{rate:.1f} training images/s "
        f"over {len(timed)} steps "
        f"({waiting / seconds:.0%} of the time waiting for data) -> {FULL_TRAIN / rate / 60:.1f} min per epoch "
        f"of the full training set ({FULL_TRAIN:,} scans); the model alone (steps less their wait for data): "
        f"{len(timed) * args.batch_size / max(seconds - waiting, 1e-9):.1f} images/s"
    )


if __name__ == "__main__":
    main()
