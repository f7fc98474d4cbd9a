"""Fine-tune a Vision Transformer on OCT B-scans with Accelerate, evaluate it and save a Hub-ready folder.

    accelerate launch -m train --data DIR --base-model ID_OR_PATH --out DIR [options]
    python -m train --data DIR --base-model ID_OR_PATH --out DIR [options]      (one process)

The scans are split by patient: with --split-file (from `python -m octcore.split` or another model's
folder), exactly its patients; otherwise the split is made here and saved in OUT as split.json. It
trains on train, picks the best epoch on val and reports the held-out patients (test) with
octcore's metrics. Rerunning the same command after an
interruption resumes from the last checkpoint in OUT/checkpoints and ends with the same model
(OUT/checkpoints is left for that; delete it once the folder is final, it is never uploaded).
The finished folder is written beside OUT and renamed into place, so OUT is never half-written.
`--check-base` only checks that the base checkpoint can be loaded (exit 0, or 3 with the reason).
"""

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from tqdm.auto import tqdm
from transformers import AutoModelForImageClassification, get_cosine_schedule_with_warmup

from octcore.data import DataError, discover, select, split_scans
from octcore.hub import push_folder
from octcore.labels import CLASSES
from octcore.metrics import evaluate
from train.card import render_card
from train.data import ScanDataset, input_size, make_processor
from train.loop import (
    Progress,
    base_problem,
    latest_checkpoint,
    param_groups,
    predict,
    save_checkpoint,
    save_model_folder,
)

DEFAULT_BASE = "facebook/dinov2-small"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="dataset folder (flat or train/val/test layout); required")
    parser.add_argument("--base-model", default=DEFAULT_BASE, help=f"Hub id or local folder (default {DEFAULT_BASE})")
    parser.add_argument("--out", help="model folder to write (checkpoints go in OUT/checkpoints); required")
    parser.add_argument("--split-file", help="use exactly this split's patients (default: split here and save it)")
    parser.add_argument(
        "--image-size",
        metavar="HxW",
        help="input size (default: 126x252 for DINOv2, which interpolates "
        "its position embeddings; the checkpoint's square size for ViT/DeiT)",
    )
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16, help="per process")
    parser.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    parser.add_argument(
        "--lr", type=float, default=1e-4, help="peak learning rate of the head; layers below decay from it"
    )
    parser.add_argument("--layer-decay", type=float, default=0.75, help="layer-wise learning-rate decay (1 = none)")
    parser.add_argument(
        "--freeze-layers", type=int, default=0, help="freeze the embeddings and this many lowest blocks"
    )
    parser.add_argument("--warmup", type=float, default=0.1, help="fraction of steps spent warming up")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument(
        "--mixed-precision",
        choices=("no", "fp16", "bf16"),
        default=None,
        help="default: whatever `accelerate config` says",
    )
    parser.add_argument("--checkpoint-every", type=int, default=0, help="also checkpoint every N optimizer steps")
    parser.add_argument("--workers", type=int, default=2, help="data-loading processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the finished folder to this Hub repo")
    parser.add_argument(
        "--check-base",
        action="store_true",
        help="only check that --base-model can be loaded: exit 0 if so, 3 with the reason if not",
    )
    args = parser.parse_args(argv)
    if not args.check_base and not (args.data and args.out):
        parser.error("--data and --out are required")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem = base_problem(args.base_model)
    if problem:
        print(
            f"error: cannot load the base checkpoint {args.base_model!r} ({problem}); give a local folder "
            "or a reachable Hub id with --base-model",
            file=sys.stderr,
        )
        return 3
    if args.check_base:
        print(f"base checkpoint {args.base_model!r} loads")
        return 0
    out = Path(args.out)
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.grad_accum,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    set_seed(args.seed)

    # 1. Scans and the one patient-disjoint split: the given split file's, or one made here (every scan
    #    decoded once, so an unreadable one stops the run now with its reason, not in a loader worker).
    try:
        scans = discover(args.data)
        split = split_scans(
            scans, args.split_file, args.seed, accelerator.is_local_main_process and sys.stderr.isatty()
        )
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    accelerator.print(f"split: {split.source}")

    # 2. The base model with a 4-class head, and the one image processor saved with it.
    size = (
        tuple(int(v) for v in args.image_size.lower().split("x")) if args.image_size else input_size(args.base_model)
    )
    processor = make_processor(args.base_model, size)
    model = AutoModelForImageClassification.from_pretrained(
        args.base_model,
        num_labels=len(CLASSES),
        id2label=dict(enumerate(CLASSES)),
        label2id={c: i for i, c in enumerate(CLASSES)},
        ignore_mismatched_sizes=True,
        use_safetensors=True,
    )
    frozen = (
        [model.base_model.embeddings] + list(model.base_model.encoder.layer[: args.freeze_layers])
        if args.freeze_layers
        else []
    )
    for module in frozen:
        module.requires_grad_(False)

    # 3. Data: augmented train, plain val and test, through `datasets`.
    def loader(data: ScanDataset, shuffle: bool) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            data, batch_size=args.batch_size, shuffle=shuffle, num_workers=args.workers, drop_last=shuffle
        )

    train_data = ScanDataset(select(scans, split.names, "train"), processor, augment_seed=args.seed)
    train_loader = loader(train_data, True)
    val_loader = loader(ScanDataset(select(scans, split.names, "val"), processor), False)
    test_scans = select(scans, split.names, "test")
    test_loader = loader(ScanDataset(test_scans, processor), False)

    # 4. Optimizer with layer-wise decay, warm-up then cosine schedule, all prepared by Accelerate.
    optimizer = torch.optim.AdamW(param_groups(model, args.lr, args.layer_decay, args.weight_decay))
    steps_per_epoch = math.ceil(len(train_loader) / args.grad_accum)
    total_steps = steps_per_epoch * args.epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(args.warmup * total_steps), total_steps)
    model, optimizer, train_loader, val_loader, test_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, val_loader, test_loader, scheduler
    )
    progress = Progress()
    accelerator.register_for_checkpointing(progress)

    # 5. Resume from the last complete checkpoint, if a previous run of this command left one.
    checkpoints = out / "checkpoints"
    last = latest_checkpoint(checkpoints)
    if last:
        accelerator.load_state(str(last))
        accelerator.print(f"resuming from {last} (epoch {progress.epoch + 1}, step {progress.step})")

    # 6. Train; evaluate on val after each epoch and keep the best weights.
    bar = tqdm(
        total=total_steps, initial=progress.step, desc="training", disable=not accelerator.is_local_main_process
    )
    while progress.epoch < args.epochs:
        train_data.epoch = progress.epoch
        train_loader.set_epoch(progress.epoch)
        done_in_epoch = (progress.step - progress.epoch * steps_per_epoch) * args.grad_accum
        batches = accelerator.skip_first_batches(train_loader, done_in_epoch) if done_in_epoch else train_loader
        for batch in batches:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                progress.step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", epoch=progress.epoch + 1)
                if args.checkpoint_every and progress.step % args.checkpoint_every == 0:
                    save_checkpoint(accelerator, checkpoints / progress.checkpoint_name())
        proba, labels = predict(model, val_loader, accelerator)
        f1 = evaluate(labels, proba, n_boot=0)["macro_f1"]
        progress.history.append({"epoch": progress.epoch + 1, "step": progress.step, "val_macro_f1": round(f1, 4)})
        accelerator.print(f"epoch {progress.epoch + 1}: val macro-F1 {f1:.3f}")
        if f1 > progress.best_f1:
            progress.best_f1 = f1
            if accelerator.is_main_process:
                accelerator.unwrap_model(model).save_pretrained(checkpoints / "best")
        progress.epoch += 1
        save_checkpoint(accelerator, checkpoints / progress.checkpoint_name())
    bar.close()

    # 7. The best epoch, scored on patients never seen in training or model selection; save the folder.
    accelerator.wait_for_everyone()
    best = AutoModelForImageClassification.from_pretrained(checkpoints / "best", use_safetensors=True).to(
        accelerator.device
    )
    proba, labels = predict(best, test_loader, accelerator)  # float32, as users run it: not prepared, so no autocast
    if accelerator.is_main_process:
        patients = np.array([s.patient_id for s in test_scans])
        metrics = evaluate(labels, proba, patients, seed=args.seed)
        metrics["history"] = progress.history
        card = render_card(args, metrics, scans, split.names, size, accelerator.num_processes)
        save_model_folder(out, best, processor, metrics, card, {"split.json": split.text})
        accelerator.print(
            f"test (held-out patients): accuracy {metrics['accuracy']:.3f} {metrics['ci95']['accuracy']}, "
            f"macro-F1 {metrics['macro_f1']:.3f} on {metrics['n_images']} scans; saved {out}"
        )
        if args.push_to_hub:
            url = push_folder(out, args.push_to_hub, "Upload OCT ViT", ignore=["checkpoints/*"])
            accelerator.print(f"uploaded: {url}")
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    sys.exit(main())
