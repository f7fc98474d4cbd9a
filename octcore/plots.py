"""The report's pictures: confusion matrix, ROC curves, reliability diagram.

Each `draw_*` draws on a given matplotlib axis so a comparison can put several models side by side;
`save_report_plots` writes the three standard PNGs for one model.
"""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import auc, confusion_matrix, roc_curve

from octcore.labels import CLASSES
from octcore.metrics import ECE_BINS, URGENT_IDS


def draw_confusion(ax, cm: np.ndarray, title: str = "") -> None:
    """Counts in each cell, shaded by the row's share (each true class's recall pattern)."""
    cm = np.asarray(cm)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(CLASSES)):
        for j in range(len(CLASSES)):
            ax.text(
                j,
                i,
                f"{cm[i, j]}\n{share[i, j]:.0%}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if share[i, j] > 0.5 else "black",
            )
    ax.set(
        xticks=range(len(CLASSES)),
        yticks=range(len(CLASSES)),
        xticklabels=CLASSES,
        yticklabels=CLASSES,
        xlabel="predicted",
        ylabel="true",
        title=title,
    )


def draw_roc(ax, y_true: np.ndarray, proba: np.ndarray, label: str = "", per_class: bool = True) -> None:
    """One-vs-rest ROC curve per class (or, with per_class=False, for 'urgent referral' only)."""
    curves = (
        [(name, np.asarray(y_true) == i, proba[:, i]) for i, name in enumerate(CLASSES)]
        if per_class
        else [("urgent", np.isin(y_true, URGENT_IDS), proba[:, URGENT_IDS].sum(axis=1))]
    )
    for name, truth, score in curves:
        if truth.min() != truth.max():
            fpr, tpr, _ = roc_curve(truth, score)
            ax.plot(fpr, tpr, label=f"{' '.join(filter(None, [label, name]))} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(
        xlabel="false positive rate (1 - specificity)",
        ylabel="true positive rate (sensitivity)",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title="ROC, one class against the rest" if per_class else "ROC, urgent referral",
    )
    ax.legend(loc="lower right", fontsize=8)


def draw_reliability(ax, y_true: np.ndarray, proba: np.ndarray, label: str = "model") -> None:
    """Accuracy against confidence in equal-width bins; a calibrated model follows the diagonal."""
    confidence, correct = proba.max(axis=1), proba.argmax(axis=1) == np.asarray(y_true)
    bins = np.minimum((confidence * ECE_BINS).astype(int), ECE_BINS - 1)
    used = [b for b in range(ECE_BINS) if (bins == b).any()]
    ax.plot([confidence[bins == b].mean() for b in used], [correct[bins == b].mean() for b in used], "o-", label=label)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="confidence (top probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1.01), title="Reliability")
    ax.legend(loc="upper left", fontsize=8)


def save_report_plots(out_dir: str | Path, y_true, proba, title: str = "") -> list[Path]:
    """confusion_matrix.png, roc_curves.png and reliability.png for one model; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    y_true, proba = np.asarray(y_true), np.asarray(proba)
    drawings = {
        "confusion_matrix.png": lambda ax: draw_confusion(
            ax, confusion_matrix(y_true, proba.argmax(1), labels=range(len(CLASSES))), title
        ),
        "roc_curves.png": lambda ax: draw_roc(ax, y_true, proba, label=""),
        "reliability.png": lambda ax: draw_reliability(ax, y_true, proba, label=title or "model"),
    }
    paths = []
    for name, draw in drawings.items():
        fig, ax = plt.subplots(figsize=(5, 4.5), dpi=110)
        draw(ax)
        fig.tight_layout()
        fig.savefig(out_dir / name)
        plt.close(fig)
        paths.append(out_dir / name)
    return paths


def read_training_log(path: str | Path) -> list[dict]:
    """The metric records of a training log (OUT/logs/metrics.jsonl, written by train.tracking), not its
    config; each step's last record only (a resumed run logs some steps twice)."""
    records: dict[tuple, dict] = {}
    for line in Path(path).read_text().splitlines():
        record = json.loads(line)
        if "step" in record:
            records[(record["step"], tuple(sorted(k for k in record if k != "step")))] = record
    return sorted(records.values(), key=lambda r: r["step"])


def save_training_curves(records: list[dict], path: str | Path) -> None:
    """training_curves.png from a training log (`read_training_log`): the loss per step (and its running
    mean), and validation accuracy and macro-F1 per epoch."""
    steps = [(r["step"], r["train/loss"]) for r in records if "train/loss" in r]
    epochs = [r for r in records if "val/macro_f1" in r]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=110)
    if steps:
        x, loss = np.array(steps).T
        window = max(1, len(loss) // 20)
        left.plot(x, loss, color="lightgray", linewidth=1, label="per step")
        left.plot(x[window - 1 :], np.convolve(loss, np.ones(window) / window, "valid"), label=f"mean of {window}")
        left.legend(fontsize=8)
    left.set(xlabel="optimizer step", ylabel="training loss (cross-entropy)", title="Training loss")
    for key, name in (("val/accuracy", "accuracy"), ("val/macro_f1", "macro-F1")):
        right.plot([r["epoch"] for r in epochs], [r[key] for r in epochs], "o-", label=name)
    right.set(xlabel="epoch", ylabel="validation score", ylim=(0, 1.01), title="Validation (picks the best epoch)")
    right.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
