"""One model on the comparison's scans: its figures, its out-of-scope flags and a row per scan.

Every model goes through `models.load_model` and its `classify`, as the Space and the batch CSV do,
so the probabilities are the calibrated ones and the out-of-scope score is the model's saved one.
"""

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from models import OCTModel
from models.base import Classification
from models.scope import softmax
from octcore.labels import CLASSES
from octcore.metrics import evaluate, expected_calibration_error


@dataclass
class Scored:
    """A model's answers on the in-scope scans and on the out-of-scope ones, and how long they took."""

    in_scope: Classification
    out_of_scope: Classification | None
    seconds: float


def classify_all(model: OCTModel, paths: list[Path], batch_size: int, desc: str) -> Classification:
    parts = [
        model.classify(paths[i : i + batch_size])
        for i in tqdm(range(0, len(paths), batch_size), desc=desc, disable=len(paths) == 0)
    ]
    if not parts:
        return Classification(np.zeros((0, len(CLASSES))), np.zeros((0, len(CLASSES))), None, np.zeros(0, bool))
    scores = None if parts[0].out_of_scope is None else np.concatenate([p.out_of_scope for p in parts])
    return Classification(
        *(np.concatenate([getattr(p, k) for p in parts]) for k in ("logits", "proba")),
        scores,
        np.concatenate([p.flagged for p in parts]),
    )


def score_model(model: OCTModel, scans: list, out_of_scope: list[Path], batch_size: int, label: str) -> Scored:
    start = time.perf_counter()
    in_scope = classify_all(model, [s.path for s in scans], batch_size, label)
    seconds = time.perf_counter() - start
    outside = classify_all(model, out_of_scope, batch_size, f"{label}, out of scope") if out_of_scope else None
    return Scored(in_scope, outside, seconds)


def out_of_scope_figures(scored: Scored) -> dict | None:
    """metrics.json's `out_of_scope`: AUROC of the score (in-scope against out-of-scope scans; None without
    the latter) and the share of each flagged at the model's saved threshold. None: the model has no detector."""
    inside, outside = scored.in_scope, scored.out_of_scope
    if inside.out_of_scope is None:
        return None
    figures = {
        "auroc": None,
        "in_scope_flagged": float(inside.flagged.mean()),
        "out_of_scope_flagged": None,
        "n_out_of_scope": 0 if outside is None else len(outside.flagged),
    }
    if outside is not None and len(outside.flagged):
        truth = np.r_[np.zeros(len(inside.flagged)), np.ones(len(outside.flagged))]
        figures["auroc"] = float(roc_auc_score(truth, np.r_[inside.out_of_scope, outside.out_of_scope]))
        figures["out_of_scope_flagged"] = float(outside.flagged.mean())
    return figures


def model_figures(scored: Scored, y: np.ndarray, patients: np.ndarray) -> dict:
    """Every figure of one model: octcore's evaluation (calibrated probabilities), ECE before and after the
    temperature, out of scope."""
    inside = scored.in_scope
    figures = evaluate(y, inside.proba, patients)
    figures["ece_uncalibrated"] = expected_calibration_error(y, softmax(inside.logits))
    figures["out_of_scope"] = out_of_scope_figures(scored)
    return figures


def prediction_rows(label: str, scans: list, out_of_scope: list[Path], root: Path, scored: Scored) -> list[list]:
    """predictions.csv's rows for one model: file, label, model, prediction, the four probabilities,
    the out-of-scope score and whether it was flagged."""
    rows = []
    parts = [([(s.key, s.label) for s in scans], scored.in_scope)]
    if scored.out_of_scope is not None:
        keys = [(p.relative_to(root).as_posix(), f"out of scope ({p.parent.name})") for p in out_of_scope]
        parts.append((keys, scored.out_of_scope))
    for keys, classified in parts:
        for i, (key, truth) in enumerate(keys):
            score = "" if classified.out_of_scope is None else round(float(classified.out_of_scope[i]), 4)
            rows.append(
                [
                    key,
                    truth,
                    label,
                    CLASSES[int(classified.proba[i].argmax())],
                    *(round(float(p), 4) for p in classified.proba[i]),
                    score,
                    bool(classified.flagged[i]),
                ]
            )
    return rows


PREDICTION_HEADER = [
    "file",
    "label",
    "model",
    "prediction",
    *(f"p_{c}" for c in CLASSES),
    "out_of_scope_score",
    "flagged",
]


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """Exact McNemar test on the scans where exactly one of two models is right."""
    only_a, only_b = int((correct_a & ~correct_b).sum()), int((~correct_a & correct_b).sum())
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"only_first_right": only_a, "only_second_right": only_b, "p_value": float(p)}


def model_size_mb(model) -> float:
    """Size of the weights the model runs on (the int8 ONNX file when it runs that)."""
    if getattr(model, "backend", "") == "onnx":
        files = list(model.folder.glob("onnx/model_int8.onnx"))
    else:
        files = [model.folder / "model.safetensors", model.folder / "model.skops"]
    return round(sum(p.stat().st_size for p in files if p.is_file()) / 1e6, 1)
