"""The pieces of the ViT training loop that `python -m train` narrates: optimizer groups, evaluation,
checkpoints that resume exactly, and the finished folder written whole."""

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from octcore.hub import names_hub_repo, unreachable_hub, writing_folder


def base_problem(base_model: str) -> str | None:
    """Why the base checkpoint (local folder or Hub id) cannot be loaded, or None if its config loads."""
    from transformers import AutoConfig

    if names_hub_repo(base_model) and (offline := unreachable_hub(base_model)):
        return offline
    try:
        AutoConfig.from_pretrained(base_model)
    except Exception as e:  # offline, missing, private or not a transformers checkpoint
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


def native_mixed_precision() -> str:
    """What `--mixed-precision auto` means on this machine: bf16 autocast where the hardware computes in bf16, else
    none. A CPU without bf16 support runs bf16 through a slow reference path: on an AVX2-only CPU a bf16 matrix
    product took 55 times as long as in float32, and a training step of 16 scans about 90 s instead of 4 s
    (docs/results.md). The CPU test is oneDNN's (which PyTorch runs bf16 with on CPUs): AVX-512 (BW, VL, DQ) or
    AVX-NE-CONVERT on x86, BF16 on Arm; accelerate's own check says yes to every CPU."""
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    has = torch.cpu.get_capabilities()
    x86 = all(has.get(f, False) for f in ("avx512_bw", "avx512_vl", "avx512_dq")) or has.get("avx_ne_convert", False)
    return "bf16" if x86 or has.get("bf16", False) else "no"


def param_groups(model, lr: float, layer_decay: float, weight_decay: float) -> list[dict]:
    """Layer-wise learning-rate decay: the head gets lr, block i gets lr * decay^(blocks - i), embeddings the least."""
    blocks = model.config.num_hidden_layers
    groups: dict[tuple, dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        depth = blocks + 1  # head and final norm
        if "embeddings" in name:
            depth = 0
        elif ".layer." in name:
            depth = int(name.split(".layer.")[1].split(".")[0]) + 1
        decay = 0.0 if param.ndim == 1 or "position_embeddings" in name or "cls_token" in name else weight_decay
        group = groups.setdefault(
            (depth, decay), {"params": [], "weight_decay": decay, "lr": lr * layer_decay ** (blocks + 1 - depth)}
        )
        group["params"].append(param)
    return list(groups.values())


class Progress:
    """Where training is and what it has seen; saved in every checkpoint so a resume continues exactly."""

    def __init__(self):
        self.epoch, self.step, self.best_f1, self.history = 0, 0, -1.0, []

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "best_f1": self.best_f1, "history": json.dumps(self.history)}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.step, self.best_f1 = int(state["epoch"]), int(state["step"]), float(state["best_f1"])
        self.history = json.loads(state["history"])

    def checkpoint_name(self) -> str:
        """Step and finished epochs: the same step can be saved mid-epoch, and again once the epoch's
        evaluation is done."""
        return f"step_{self.step:07d}-epochs_{self.epoch:03d}"


def predict(model, loader, accelerator: Accelerator, inputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits, features (the classifier's input: what the out-of-scope detector reads) and labels over a whole
    loader, gathered from every process, each scan exactly once. inputs: `train.data.ModelInputs`."""
    captured = {}
    hook = accelerator.unwrap_model(model).classifier.register_forward_pre_hook(
        lambda _, inputs: captured.update(features=inputs[0])
    )
    model.eval()
    logits, features, labels = [], [], []
    with torch.no_grad():
        for batch in loader:
            out = model(pixel_values=inputs(batch)["pixel_values"]).logits.float()
            gathered = accelerator.gather_for_metrics((out, captured["features"].float(), batch["labels"]))
            for kept, value in zip((logits, features, labels), gathered):
                kept.append(value.cpu().numpy())
    model.train()
    hook.remove()
    return np.concatenate(logits), np.concatenate(features), np.concatenate(labels)


def fit_head_by_linear_probe(model, features: np.ndarray, labels: np.ndarray) -> float:
    """Set the classifier head to a multinomial logistic regression fitted on `features` (the classifier's inputs
    for the training scans, from the model as loaded), so that training starts from a head that already separates
    the classes. With every block frozen, the model is then a linear probe of the pretrained features; with them
    trained, this is linear probing then fine-tuning (LP-FT, Kumar et al., ICLR 2022). Returns the fit's training
    accuracy.

    scikit-learn's L-BFGS solves the probe to convergence in a second, where the loop's few steps of AdamW barely
    move a random head. The features are standardised for the fit and the scaling is folded into the head's
    weights, so the head takes the features as they come. Fitted identically on every process, from the same
    gathered features."""
    from sklearn.linear_model import LogisticRegression

    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
    standardised = (features - mean) / scale
    fitted = LogisticRegression(max_iter=2000).fit(standardised, labels)
    coef, intercept = fitted.coef_, fitted.intercept_
    if len(fitted.classes_) == 2:  # one row, the log-odds of the second class: the same softmax as two halves
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    head = model.classifier
    weight = np.zeros(tuple(head.weight.shape))
    # A class with no training scan gets no weight and a bias far below the others: the probe never predicts it.
    bias = np.full(head.weight.shape[0], intercept.min() - 10.0)
    weight[fitted.classes_], bias[fitted.classes_] = coef / scale, intercept - (coef / scale) @ mean
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(weight, dtype=head.weight.dtype))
        head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))
    return float(fitted.score(standardised, labels))


def time_data_loading(loader, workers: int, max_batches: int = 0) -> dict:
    """One pass over a loader (or its first max_batches) with no model: scans per second, in all and per
    worker process."""
    start, scans, first = time.perf_counter(), 0, None
    for i, batch in enumerate(tqdm(loader, desc="data loading", file=sys.stderr, disable=not sys.stderr.isatty())):
        scans += len(batch["labels"])
        first = first or time.perf_counter() - start
        if i + 1 == max_batches:
            break
    seconds = time.perf_counter() - start
    return {
        "scans": scans,
        "seconds": round(seconds, 1),
        "first_batch_s": round(first or 0, 2),
        "workers": workers,
        "scans_per_s": round(scans / seconds, 1),
        "scans_per_s_per_worker": round(scans / seconds / max(workers, 1), 1),
    }


def save_checkpoint(accelerator: Accelerator, folder: Path) -> None:
    """save_state into a temporary folder, then rename: a kill mid-save never leaves a checkpoint that looks whole."""
    staging = folder.with_name(folder.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        staging.rename(folder)
        for old in folder.parent.glob("step_*"):  # keep only the newest: each holds the optimizer state too
            if old != folder:
                shutil.rmtree(old)


def latest_checkpoint(folder: Path) -> Path | None:
    done = [p for p in folder.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp")]
    return max(done, key=lambda p: p.name, default=None)


def save_best(accelerator: Accelerator, model, folder: Path) -> None:
    """The best weights so far, saved correctly under any distribution (DDP, FSDP, DeepSpeed): every rank
    takes part in gathering the state dict, the main process writes it."""
    accelerator.wait_for_everyone()
    state = accelerator.get_state_dict(model)
    accelerator.unwrap_model(model).save_pretrained(
        folder, is_main_process=accelerator.is_main_process, state_dict=state
    )
    accelerator.wait_for_everyone()


def save_model_folder(
    out: Path, model, processor, metrics: dict, files: dict[str, str], finish: Callable[[Path], None] | None = None
) -> None:
    """The Hub-ready folder, written beside OUT and renamed into place; OUT/checkpoints and OUT/logs move with it.
    files: more text files to write into it (name: content); finish: called with the staging folder
    last (pictures and the card, which read the rest)."""
    with writing_folder(out) as staging:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2))
        for name, content in files.items():
            (staging / name).write_text(content)
        for kept in ("checkpoints", "logs"):
            if (out / kept).is_dir():
                os.replace(out / kept, staging / kept)
        if finish:
            finish(staging)
