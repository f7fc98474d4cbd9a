"""ViT training throughput through the whole pipeline: JPEG decode, augmentation, processor, forward, backward.

    python benchmarks/vit_throughput.py --base-model ID_OR_PATH [--data DIR] [--batch-size 32] [--steps 20]
        [--workers N] [--mixed-precision bf16] [--size 224x224] [--replicate 2000]

Uses the real scans at their real resolution, replicated to --replicate items (so the loader never
runs dry), the trainer's own dataset, processor and augmentation, and an AdamW step per batch.
Prints images/s over the timed steps (after warm-up) and the time this implies for one epoch of
the full Kermany training set (83,484 scans). On a GPU, pass the batch size and workers it can feed.
"""

import argparse
import time

import torch
from accelerate import Accelerator
from transformers import AutoModelForImageClassification

from octcore.data import discover
from octcore.labels import CLASSES
from train.data import ScanDataset, input_size, make_processor

FULL_TRAIN = 83_484

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--base-model", required=True)
parser.add_argument("--data", default="../shared/data/kermany-oct-sample")
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--steps", type=int, default=20)
parser.add_argument("--warmup-steps", type=int, default=3)
parser.add_argument("--workers", type=int, default=2)
parser.add_argument("--mixed-precision", default="no", choices=("no", "fp16", "bf16"))
parser.add_argument("--size", help="HxW input size (default: the trainer's for this base model)")
parser.add_argument("--replicate", type=int, default=2000)
parser.add_argument("--freeze-layers", type=int, default=0)
args = parser.parse_args()

accelerator = Accelerator(mixed_precision=args.mixed_precision)
scans = discover(args.data)
scans = (scans * (args.replicate // len(scans) + 1))[: args.replicate]
size = tuple(int(v) for v in args.size.split("x")) if args.size else input_size(args.base_model)
data = ScanDataset(scans, make_processor(args.base_model, size), augment_seed=0)
loader = torch.utils.data.DataLoader(
    data,
    batch_size=args.batch_size,
    shuffle=True,
    num_workers=args.workers,
    drop_last=True,
    pin_memory=torch.cuda.is_available(),
    persistent_workers=args.workers > 0,
)
model = AutoModelForImageClassification.from_pretrained(
    args.base_model, num_labels=len(CLASSES), ignore_mismatched_sizes=True
)
if args.freeze_layers:
    for module in [model.base_model.embeddings, *model.base_model.encoder.layer[: args.freeze_layers]]:
        module.requires_grad_(False)
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
model, optimizer, loader = accelerator.prepare(model, optimizer, loader)

batches, seen, start = iter(loader), 0, None
for step in range(args.warmup_steps + args.steps):
    if step == args.warmup_steps:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start, seen = time.perf_counter(), 0
    batch = next(batches)
    loss = model(**batch).loss
    accelerator.backward(loss)
    optimizer.step()
    optimizer.zero_grad()
    seen += len(batch["labels"])
if torch.cuda.is_available():
    torch.cuda.synchronize()
rate = seen / (time.perf_counter() - start)
print(
    f"{args.base_model} at {size[0]}x{size[1]}, batch {args.batch_size}, {args.mixed_precision}, "
    f"{accelerator.device}, {args.workers} loader workers: {rate:.1f} training images/s "
    f"-> {FULL_TRAIN / rate / 60:.1f} min per epoch of the full training set ({FULL_TRAIN:,} scans)"
)
