"""Fine-tune a Vision Transformer on OCT B-scans with Accelerate, evaluate it and save a Hub-ready folder.

    accelerate launch -m train --data DIR --base-model ID_OR_PATH --out DIR [options]
    python -m train --data DIR --base-model ID_OR_PATH --out DIR [options]      (one process)

The scans are split by patient: with --split-file (from `python -m octcore.split` or another model's
folder), exactly its patients; otherwise the split is made here and saved in OUT as split.json. It
trains on train, picks the best epoch on val and reports the held-out patients (test) with
octcore's metrics. Progress goes to Accelerate's trackers (OUT/logs/metrics.jsonl always; more with
--report-to) and ends as OUT/training_curves.png. Rerunning the same command after an interruption
resumes from the last checkpoint in OUT/checkpoints and ends with the same model (delete
OUT/checkpoints once the folder is final; it is never uploaded). The finished folder is written beside
OUT and renamed into place, so OUT is never half-written. `--check-base` only checks that the base
checkpoint can be loaded (exit 0, or 3 with the reason).
"""

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

from octcore.hub import is_repo_id, names_hub_repo
from train.options import (
    AUGMENT_AT,
    DEFAULT_AUGMENT_AT,
    DEFAULT_BASE,
    DEFAULT_DROP_PATH,
    HEAD_INIT,
    MIXED_PRECISION,
)


def has_stochastic_depth(base_config) -> bool:
    """Whether the base model's class takes drop_path_rate (DINOv2 does); the others refuse the keyword."""
    return hasattr(base_config, "drop_path_rate")


def default_drop_path(base_config) -> float:
    """The stochastic depth used when none is asked for: DEFAULT_DROP_PATH where the base has it, else none."""
    return DEFAULT_DROP_PATH if has_stochastic_depth(base_config) else 0.0


def blocks_to_freeze(value: str) -> int | str:
    """--freeze-layers: a number of blocks, or 'all' (resolved against the base model's config in main)."""
    return value if value == "all" else int(value)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--data", help="dataset folder (flat or train/val/test layout); required")
    add("--base-model", default=DEFAULT_BASE, help=f"Hub id or local folder (default {DEFAULT_BASE})")
    add("--base-model-id", help="the Hub id a local --base-model folder is a copy of (named in the card)")
    add("--out", help="model folder to write (checkpoints go in OUT/checkpoints); required")
    add("--split-file", help="use exactly this split's patients (default: split here and save it)")
    add("--data-name", help="how the card names the data (default: Kermany et al. 2018 and its size)")
    add("--dataset-id", help="the Hub dataset id of the data (python -m octcore.dataset), named in the card")
    add(
        "--image-size",
        metavar="HxW",
        help="input size (default: 168x336 for DINOv2, which interpolates its "
        "position embeddings; the checkpoint's square size for ViT/DeiT)",
    )
    add("--epochs", type=int, default=48, help="default %(default)s, chosen on validation (benchmarks/vit_recipe.py)")
    add("--batch-size", type=int, default=16, help="per process (default %(default)s)")
    add("--grad-accum", type=int, default=1, help="gradient accumulation steps (default %(default)s)")
    add(
        "--lr",
        type=float,
        default=1e-4,
        help="peak learning rate of the head (default %(default)s); layers below decay from it",
    )
    add(
        "--layer-decay",
        type=float,
        default=0.75,
        help="layer-wise learning-rate decay (default %(default)s; 1 = none)",
    )
    add(
        "--freeze-layers",
        type=blocks_to_freeze,
        default=0,
        metavar="N|all",
        help="freeze the embeddings and this many lowest blocks, or all of them",
    )
    add(
        "--head-init",
        choices=HEAD_INIT,
        default="random",
        help="random (default; the recipe the docs report, with which a probe-first head was not tried): a new "
        "random head; linear-probe: first fit the head as a logistic regression on the base model's features of the "
        "training scans (computed in one pass over them). With --freeze-layers all, a model linear in the frozen "
        "pretrained features that learns in minutes on a CPU (the teaching notebook's ViT)",
    )
    add(
        "--drop-path",
        type=float,
        help=f"stochastic depth: the chance a residual block is skipped in training (default {DEFAULT_DROP_PATH}, "
        "chosen on validation, where the base model's config has drop_path_rate, e.g. DINOv2; else 0)",
    )
    add(
        "--ema",
        type=float,
        default=0.0,
        metavar="DECAY",
        help="evaluate and keep an exponential moving average of the weights, updated each optimizer step with this "
        "decay (e.g. 0.99; default 0: the weights themselves)",
    )
    add("--warmup", type=float, default=0.1, help="fraction of steps spent warming up (default %(default)s)")
    add("--weight-decay", type=float, default=0.05, help="AdamW's (default %(default)s)")
    add(
        "--mixed-precision",
        choices=MIXED_PRECISION,
        default="auto",
        help="auto (default): bf16 autocast where the hardware computes in bf16 (recent GPUs; x86 CPUs with "
        "AVX-512, Arm CPUs with BF16), else none (float32)",
    )
    add("--checkpoint-every", type=int, default=0, help="also checkpoint every N optimizer steps")
    add("--workers", type=int, default=2, help="data-loading processes (default %(default)s)")
    add(
        "--augment-at",
        choices=AUGMENT_AT,
        default=DEFAULT_AUGMENT_AT,
        help="input (default, chosen on validation): decode the training scans once (to OUT/checkpoints, removed at "
        "the end; about 150 kB a scan) and augment in the resize to the model's input, 3x the scans per loader "
        "worker or more; scan: decode and augment the full-size scan every epoch (the recipe before)",
    )
    add("--seed", type=int, default=0, help="initialisation, data order and augmentation (default %(default)s)")
    add("--report-to", default="", help="more Accelerate trackers, comma-separated (tensorboard, wandb, ...)")
    add(
        "--max-steps",
        type=int,
        default=0,
        help="stop after this many optimizer steps without writing the folder (smoke tests, throughput benchmarks)",
    )
    add(
        "--data-loading-only",
        action="store_true",
        help="only time one epoch of the training data (decode, augmentation, processor; its first --max-steps "
        "batches if given) with --workers, print it as JSON and exit: how many workers keep a GPU fed",
    )
    add("--push-to-hub", metavar="REPO_ID", help="export int8 ONNX, then upload the finished folder to this repo")
    add(
        "--check-base",
        action="store_true",
        help="only check that --base-model can be loaded: exit 0 if so, 3 with the reason if not",
    )
    args = parser.parse_args(argv)
    if not args.check_base and not (args.data and args.out):
        parser.error("--data and --out are required")
    if args.data and not Path(args.data).is_dir():  # said before the base checkpoint is loaded (a download)
        parser.error(f"--data {args.data}: no such folder")
    for name in ("drop_path", "ema"):  # a chance and a decay: outside [0, 1) training would run on and mean nothing
        value = getattr(args, name)
        if value is not None and not 0 <= value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 0 and below 1, not {value}")
    if args.base_model_id and not is_repo_id(args.base_model_id):  # the card would silently leave it out
        parser.error(f"--base-model-id {args.base_model_id!r} is not a Hub id of the form owner/name")
    if args.mixed_precision == "auto":
        from train.loop import native_mixed_precision  # imports torch: only once the arguments are good

        args.mixed_precision = native_mixed_precision()
    return args


def base_model_id(args: argparse.Namespace) -> str | None:
    """The Hub id the card names as the base: --base-model-id, else --base-model where it names a Hub repo. (A local
    copy cannot say it for itself: transformers sets a loaded config's `_name_or_path` to the path it was given.)"""
    return args.base_model_id or (args.base_model if names_hub_repo(args.base_model) else None)


def training_record(
    args: argparse.Namespace, scans, split: list[str], size: tuple[int, int], processes: int, blocks: int
) -> dict:
    """training.json: what the card says about how this model was made (no local path in it). blocks: how many the
    base model has."""
    from octcore.data import describe_data

    base_id = base_model_id(args)
    return {
        "kind": "vit",
        "model_name": Path(args.out).name,
        "dataset": describe_data(scans, split, args.data_name, args.dataset_id),
        "base_model": {"id": base_id, "description": f"`{base_id}`" if base_id else "a local pretrained checkpoint"},
        "details": {
            "height": size[0],
            "width": size[1],
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "grad_accum": args.grad_accum,
            "processes": processes,
            "weight_decay": args.weight_decay,
            "lr": args.lr,
            "layer_decay": args.layer_decay,
            "warmup": args.warmup,
            "seed": args.seed,
            "base_description": f"`{base_id}`" if base_id else "a local pretrained checkpoint",
            "frozen": f"embeddings and the lowest {args.freeze_layers} blocks frozen"
            if args.freeze_layers
            else "all layers trained",
            "head_init": args.head_init,
            # every block frozen: no pretrained weight learned from the scans, so the card must not say fine-tuned
            "how": "fine-tuned from" if args.freeze_layers < blocks else "trained on the frozen pretrained blocks of",
            "mixed_precision": args.mixed_precision,
            "augment_at": args.augment_at,
            "drop_path": args.drop_path,
            "ema": args.ema,
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Only now the imports that take seconds (torch, transformers, accelerate, datasets, and the modules that use
    # them), so that --help and a usage error answer at once.
    import numpy as np
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed
    from tqdm.auto import tqdm
    from transformers import AutoConfig, AutoModelForImageClassification, get_cosine_schedule_with_warmup

    from models.base import Classification
    from models.card import TRAINING_FILE, render_card
    from models.push import push_model
    from models.scope import fit_calibration, softmax, test_summary
    from octcore.data import DataError, discover, select, split_scans
    from octcore.labels import CLASSES
    from octcore.metrics import evaluate, with_ci
    from octcore.plots import read_training_log, save_training_curves
    from train.data import ModelInputs, input_size, make_processor, scan_dataset
    from train.loop import (
        Progress,
        base_problem,
        fit_head_by_linear_probe,
        latest_checkpoint,
        param_groups,
        predict,
        save_best,
        save_checkpoint,
        save_model_folder,
        time_data_loading,
    )
    from train.onnx_int8 import export_and_check
    from train.tracking import JSONLinesTracker

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
    trackers = [JSONLinesTracker(out / "logs" / "metrics.jsonl"), *filter(None, args.report_to.split(","))]
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.grad_accum,
        log_with=trackers,
        project_dir=str(out),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != accelerator.num_processes:  # e.g. `accelerate launch --multi_gpu` on a machine with no GPU
        print(
            f"error: launched as {launched} processes, but they did not form one group ({accelerator.num_processes} "
            "each), so each would train alone; without a GPU, set ACCELERATE_USE_CPU=1 for the launch",
            file=sys.stderr,
        )
        return 2
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
    if problem := split.validation_problem():
        print(f"error: {problem}", file=sys.stderr)
        return 2
    # a regression needs two classes; a random head trains anyway
    if args.head_init == "linear-probe" and (problem := split.training_problem(scans)):
        print(f"error: --head-init linear-probe: {problem}", file=sys.stderr)
        return 2

    # 2. The base model with a 4-class head, and the one image processor saved with it.
    base_config = AutoConfig.from_pretrained(args.base_model)  # read once: the input size and the drop path
    if not base_model_id(args):
        accelerator.print(
            "note: the base names no Hub id, so the model card will say 'a local pretrained checkpoint' and the "
            "Hub will link no base model; if it is a copy of one, pass it with --base-model-id (e.g. "
            "facebook/dinov2-small)"
        )
    size = tuple(int(v) for v in args.image_size.lower().split("x")) if args.image_size else input_size(base_config)
    processor = make_processor(args.base_model, size)
    blocks = base_config.num_hidden_layers
    if args.freeze_layers == "all":
        args.freeze_layers = blocks
    elif not 0 <= args.freeze_layers <= blocks:
        print(f"error: --freeze-layers {args.freeze_layers}: the base model has {blocks} blocks", file=sys.stderr)
        return 2
    if args.drop_path is None:
        args.drop_path = default_drop_path(base_config)
    elif args.drop_path and not has_stochastic_depth(base_config):
        print(f"error: --drop-path: {type(base_config).__name__} has no stochastic depth", file=sys.stderr)
        return 2
    model = AutoModelForImageClassification.from_pretrained(
        args.base_model,
        num_labels=len(CLASSES),
        id2label=dict(enumerate(CLASSES)),
        label2id={c: i for i, c in enumerate(CLASSES)},
        ignore_mismatched_sizes=True,
        use_safetensors=True,
        **({"drop_path_rate": args.drop_path} if args.drop_path else {}),
    )
    if args.freeze_layers:
        for module in [model.base_model.embeddings, *model.base_model.encoder.layer[: args.freeze_layers]]:
            module.requires_grad_(False)
    mask_token = getattr(model.base_model.embeddings, "mask_token", None)
    if mask_token is not None:  # used only in masked-image pretraining; DDP refuses a parameter that gets no gradient
        mask_token.requires_grad_(False)

    # 3. Data: `datasets` tables of the split's scans, decoded and augmented by their transform; the loader workers
    # send 8-bit scans, which `inputs` turns into the processor's output on the device.
    inputs = ModelInputs(processor)

    # --augment-at input: the training scans decoded once, for this run (its processes read the main one's files,
    # so with several machines OUT must be on storage they share, as it must for resuming from checkpoints anyway).
    decoded = out / "checkpoints" / "decoded"

    def drop_decoded() -> None:  # as large as the training set's pixels: removed once no process reads them
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            shutil.rmtree(decoded, ignore_errors=True)

    def loader(part: list, shuffle: bool, augment_seed: int | None = None):
        data, transform = scan_dataset(part, processor, augment_seed, args.augment_at, decoded, args.workers)
        # Its own generator: each new iterator (every epoch, and a resume's) draws its workers' base seed from it,
        # not from torch's global one, whose draws (stochastic depth) a checkpoint then restores exactly.
        batches = torch.utils.data.DataLoader(
            data,
            batch_size=args.batch_size,
            shuffle=shuffle,
            num_workers=args.workers,
            drop_last=shuffle,
            generator=torch.Generator().manual_seed(args.seed),
        )
        return batches, transform

    start = time.perf_counter()
    with accelerator.main_process_first():  # the main process decodes (if it must); the others read its files
        train_loader, train_transform = loader(select(scans, split.names, "train"), True, augment_seed=args.seed)
    decoded_s = time.perf_counter() - start if args.augment_at == "input" else None
    val_loader, _ = loader(select(scans, split.names, "val"), False)
    test_scans = select(scans, split.names, "test")
    test_loader, _ = loader(test_scans, False)
    if args.data_loading_only:
        timing = time_data_loading(train_loader, args.workers, args.max_steps)
        drop_decoded()
        print(json.dumps({**timing, "decoded_once_s": None if decoded_s is None else round(decoded_s, 1)}))
        return 0
    # The training scans unaugmented, in order: for --head-init linear-probe and for the detector fitted in step 7.
    plain_train = accelerator.prepare(loader(select(scans, split.names, "train"), False)[0])

    # --head-init linear-probe: the head fitted on the base's features of the training scans before any step (not
    # on a resume, whose checkpoint holds the head as training left it).
    checkpoints = out / "checkpoints"
    if args.head_init == "linear-probe" and not latest_checkpoint(checkpoints):
        _, features, labels = predict(model.to(accelerator.device), plain_train, accelerator, inputs)
        fitted = fit_head_by_linear_probe(model, features, labels)
        accelerator.print(f"head: linear probe on {len(labels)} training scans ({fitted:.1%} of them right)")

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
    # --ema: torch's own averaged copy, in float32 on the device, checkpointed with the rest so a resume continues it
    ema = None
    if args.ema:
        multi_avg_fn = torch.optim.swa_utils.get_ema_multi_avg_fn(args.ema)
        ema = torch.optim.swa_utils.AveragedModel(accelerator.unwrap_model(model), multi_avg_fn=multi_avg_fn)
        accelerator.register_for_checkpointing(ema)
    evaluated = ema.module if ema else model  # what each epoch's validation scores and `best` keeps
    local_paths = ("data", "out", "base_model", "split_file")  # the log is uploaded with the model: no local path
    accelerator.init_trackers("oct-vit", config={k: v for k, v in vars(args).items() if k not in local_paths})

    # 5. Resume from the last complete checkpoint, if a previous run of this command left one.
    last = latest_checkpoint(checkpoints)
    if last:
        accelerator.load_state(str(last))
        accelerator.print(f"resuming from {last} (epoch {progress.epoch + 1}, step {progress.step})")

    # 6. Train: log each optimizer step (loss, learning rate, images/s and how long it waited for data),
    #    evaluate on val after each epoch and keep the best weights.
    bar = tqdm(
        total=total_steps, initial=progress.step, desc="training", disable=not accelerator.is_local_main_process
    )
    images_per_step = args.batch_size * args.grad_accum * accelerator.num_processes
    while progress.epoch < args.epochs and not (args.max_steps and progress.step >= args.max_steps):
        train_transform.epoch = progress.epoch  # the augmentation's seed
        train_loader.set_epoch(progress.epoch)
        done_in_epoch = (progress.step - progress.epoch * steps_per_epoch) * args.grad_accum
        batches = accelerator.skip_first_batches(train_loader, done_in_epoch) if done_in_epoch else train_loader
        model.train()  # from_pretrained (and a resume) leave it in eval mode: no dropout, no stochastic depth
        step_start = waited = time.perf_counter()
        for batch in batches:  # the else below runs when the epoch ends without --max-steps stopping it
            waited = time.perf_counter() - waited
            with accelerator.accumulate(model):
                loss = model(**inputs(batch)).loss
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                progress.step += 1
                if ema:
                    ema.update_parameters(accelerator.unwrap_model(model))
                seconds, step_start = time.perf_counter() - step_start, time.perf_counter()
                accelerator.log(
                    {
                        "train/loss": loss.item(),
                        "train/lr": scheduler.get_last_lr()[0],
                        "train/images_per_s": images_per_step / seconds,
                        "train/data_wait_s": waited,
                    },
                    step=progress.step,
                )
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", epoch=progress.epoch + 1)
                if args.checkpoint_every and progress.step % args.checkpoint_every == 0:
                    save_checkpoint(accelerator, checkpoints / progress.checkpoint_name())
                if args.max_steps and progress.step >= args.max_steps:
                    break
            waited = time.perf_counter()
        else:
            logits, _, labels = predict(evaluated, val_loader, accelerator, inputs)
            val = evaluate(labels, softmax(logits), n_boot=0)
            progress.history.append(
                {
                    "epoch": progress.epoch + 1,
                    "step": progress.step,
                    "val_macro_f1": round(val["macro_f1"], 4),
                    "val_accuracy": round(val["accuracy"], 4),
                }
            )
            accelerator.log(
                {
                    "val/macro_f1": val["macro_f1"],
                    "val/accuracy": val["accuracy"],
                    "val/ece": val["ece"],
                    "val/n_scans": len(labels),
                    "epoch": progress.epoch + 1,
                },
                step=progress.step,
            )
            accelerator.print(f"epoch {progress.epoch + 1}: val macro-F1 {val['macro_f1']:.3f} on {len(labels)} scans")
            if val["macro_f1"] > progress.best_f1:  # the same gathered figure on every rank: all take this branch
                progress.best_f1 = val["macro_f1"]
                save_best(accelerator, evaluated, checkpoints / "best")
            progress.epoch += 1
            save_checkpoint(accelerator, checkpoints / progress.checkpoint_name())
    bar.close()
    drop_decoded()  # training is over (and every process meets here before the evaluation below)
    if args.max_steps and progress.step >= args.max_steps and progress.epoch < args.epochs:
        accelerator.print(f"stopped after {progress.step} steps (--max-steps); no model folder written")
        accelerator.end_training()
        return 0

    # 7. The best epoch, in float32 as users run it (not prepared, so no autocast): its temperature and
    #    out-of-scope detector fitted on the training (unaugmented) and validation scans, then its figures on the
    #    test patients, never seen in training or model selection; the folder, its card and curves; push if asked.
    best = AutoModelForImageClassification.from_pretrained(checkpoints / "best", use_safetensors=True)
    best = best.to(accelerator.device)
    parts = {
        name: predict(best, batches, accelerator, inputs)
        for name, batches in (("train", plain_train), ("val", val_loader), ("test", test_loader))
    }
    if accelerator.is_main_process:
        (_, train_features, train_labels), (val_logits, val_features, val_labels) = parts["train"], parts["val"]
        test_logits, test_features, test_labels = parts["test"]
        calibration = fit_calibration(
            train_features,
            train_labels,
            val_logits,
            val_features,
            val_labels,
            "vit",
            "the classifier head's inputs: the class token and the mean patch token",
        )
        test = Classification.of(test_logits, test_features, calibration)
        patients = np.array([s.patient_id for s in test_scans])
        metrics = evaluate(test_labels, test.proba, patients, seed=args.seed)
        metrics.update(test_summary(calibration, test_logits, test_labels, test.flagged), history=progress.history)
        record = training_record(args, scans, split.names, size, accelerator.num_processes, blocks)
        files = {"split.json": split.text, TRAINING_FILE: json.dumps(record, indent=2)}

        def calibration_curves_and_card(staging: Path) -> None:
            calibration.save(staging)
            save_training_curves(
                read_training_log(staging / "logs" / "metrics.jsonl"), staging / "training_curves.png"
            )
            render_card(staging, args.push_to_hub).save(staging / "README.md")

        save_model_folder(out, best, processor, metrics, files, calibration_curves_and_card)
        accelerator.print(
            f"test (held-out patients): accuracy {with_ci(metrics, 'accuracy')}, macro-F1 "
            f"{with_ci(metrics, 'macro_f1')} on {metrics['n_images']} scans (95% CIs); "
            f"temperature {calibration.temperature:.2f}; saved {out}"
        )
        if args.push_to_hub:
            val_scans = [s.path for s in select(scans, split.names, "val")]
            if not export_and_check(out, [s.path for s in test_scans], val_scans=val_scans)["passed"]:
                accelerator.print("the int8 export did not pass its check: the pushed model runs in PyTorch")
            push_model(out, args.push_to_hub)
            accelerator.print(f"uploaded to https://huggingface.co/{args.push_to_hub}")
    # Every process leaves together: one that destroyed the gloo group and exited while the main process was
    # still writing the folder was seen to leave it hung at exit, its group's worker thread and the interpreter
    # each waiting on the other (torch's ProcessGroupGloo destructor joins that thread holding the GIL).
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # One of a group of processes: leave without the interpreter's teardown. Freeing the DDP model there destroys
        # the gloo group, whose destructor joins its worker threads while holding the GIL, and a worker that still has
        # a gathered tensor to free waits for the GIL: the process never exits (seen once in a full test run, after
        # every process had met at the end). Everything is written, every tracker finished and the group destroyed
        # by now; only the streams need flushing.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
