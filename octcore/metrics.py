"""The one evaluation every model gets: from true labels, class probabilities and patient ids to a report.

Confidence intervals come from a bootstrap over patients, not images: scans of one patient are
correlated, and resampling them one by one would make the intervals look narrower than they are.
"""

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score

from octcore.labels import CLASSES, URGENT_CLASSES, penalty_matrix

URGENT_IDS = [CLASSES.index(c) for c in URGENT_CLASSES]
ECE_BINS = 15
# weighted_aucs takes the bootstrap's replicates this many at a time: a few arrays of (this x scans) float64, 4 MB
# each at a full-size test split's 8,000 scans, where all 1,000 at once, weighed per scan, peaked at 394 MB.
REPLICATES_AT_ONCE = 64


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den else None


def _auc(truth: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC, or None when only one class is present (the AUC is undefined then)."""
    if truth.min() == truth.max():
        return None
    return float(roc_auc_score(truth, score))


def weighted_aucs(
    truth: np.ndarray, score: np.ndarray, weights: np.ndarray, unit_of: np.ndarray | None = None
) -> np.ndarray:
    """ROC AUC of `score` for the binary `truth` under each row of `weights` (replicates x units), NaN where a
    row weighs only one class: what `roc_auc_score(truth, score, sample_weight=row[unit_of])` gives, for all rows
    at once. unit_of: each scan's unit (the bootstrap's patient), a column of `weights`; by default each scan's own.

    Written here because the bootstrap needs a thousand of them, and scikit-learn validates its inputs on every
    call (about 4 ms each, most of an evaluation). It is the Mann-Whitney form of the same AUC: each positive's
    weight times the negative weight scored below it, ties counted half (scikit-learn's trapezoids)."""
    order = np.argsort(score, kind="stable")
    sorted_score, sorted_truth = score[order], truth[order].astype(bool)
    sorted_unit = order if unit_of is None else unit_of[order]
    starts = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]])  # one group per distinct score
    aucs = np.empty(len(weights))
    for first in range(0, len(weights), REPLICATES_AT_ONCE):
        ordered = weights[first : first + REPLICATES_AT_ONCE][:, sorted_unit]  # (replicates, scans by score)
        positive = np.add.reduceat(ordered * sorted_truth, starts, axis=1)  # (replicates, distinct scores)
        negative = np.add.reduceat(ordered * ~sorted_truth, starts, axis=1)
        below = np.cumsum(negative, axis=1) - negative
        pairs = positive.sum(axis=1) * negative.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            aucs[first : first + len(ordered)] = np.where(
                pairs > 0, (positive * (below + negative / 2)).sum(axis=1) / pairs, np.nan
            )
    return aucs


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Mean gap between confidence (top probability) and accuracy, over equal-width confidence bins."""
    confidence, correct = proba.max(axis=1), proba.argmax(axis=1) == y_true
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    gap = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            gap += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(gap)


def _check(y_true, proba, patient_ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y_true, proba = np.asarray(y_true, dtype=int), np.asarray(proba, dtype=float)
    if proba.ndim != 2 or proba.shape != (len(y_true), len(CLASSES)):
        raise ValueError(f"proba must have shape ({len(y_true)}, {len(CLASSES)}), got {proba.shape}")
    if len(y_true) == 0:
        raise ValueError("cannot evaluate on zero scans")
    if y_true.min() < 0 or y_true.max() >= len(CLASSES):
        raise ValueError(f"labels must be class ids 0..{len(CLASSES) - 1}")
    groups = np.arange(len(y_true)) if patient_ids is None else np.asarray(patient_ids)
    if len(groups) != len(y_true):
        raise ValueError("patient_ids must have one entry per scan")
    return y_true, proba, groups


def _bootstrap(y_true, pred, urgent_score, groups, n_boot: int, seed: int) -> dict[str, list[float | None]]:
    """95% percentile intervals from resampling patients with replacement (vectorised over replicates)."""
    k = len(CLASSES)
    patients, patient_of = np.unique(groups, return_inverse=True)

    def per_patient(values: list) -> np.ndarray:  # (patients, columns) sums
        return np.stack([np.bincount(patient_of, v, len(patients)) for v in values], axis=1)

    onehot_true, onehot_pred = np.eye(k)[y_true], np.eye(k)[pred]
    urgent_true, urgent_pred = np.isin(y_true, URGENT_IDS), np.isin(pred, URGENT_IDS)
    sums = per_patient(
        [
            np.ones(len(y_true)),
            pred == y_true,
            penalty_matrix()[y_true, pred] / penalty_matrix().max(),
            urgent_true & urgent_pred,
            urgent_true,
            ~urgent_true & ~urgent_pred,
            ~urgent_true,
            *(onehot_true * onehot_pred).T,
            *onehot_pred.T,
            *onehot_true.T,
        ]
    )
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(len(patients), np.full(len(patients), 1 / len(patients)), size=n_boot).astype(float)
    totals = weights @ sums  # (n_boot, columns)
    n, correct, penalty, tp_u, pos_u, tn_u, neg_u = totals[:, :7].T
    tp, predicted, actual = totals[:, 7 : 7 + k], totals[:, 7 + k : 7 + 2 * k], totals[:, 7 + 2 * k :]
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(predicted + actual > 0, 2 * tp / (predicted + actual), 0.0)
        stats = {
            "accuracy": correct / n,
            "macro_f1": f1.mean(axis=1),
            "weighted_error": penalty / n,
            "urgent_sensitivity": tp_u / pos_u,
            "urgent_specificity": tn_u / neg_u,
        }
    stats["urgent_auc"] = weighted_aucs(urgent_true, urgent_score, weights, patient_of)

    def interval(values: np.ndarray) -> list[float | None]:
        values = values[np.isfinite(values)]
        return [float(v) for v in np.percentile(values, [2.5, 97.5])] if len(values) else [None, None]

    return {name: interval(values) for name, values in stats.items()}


def evaluate(y_true, proba, patient_ids=None, n_boot: int = 1000, seed: int = 0) -> dict:
    """Every figure the project reports for one model on one set of scans.

    y_true: class ids (index into CLASSES); proba: (n, 4) class probabilities; patient_ids: one per
    scan, used to resample whole patients for the 95% intervals (each scan is its own patient if None).
    """
    y_true, proba, groups = _check(y_true, proba, patient_ids)
    pred = proba.argmax(axis=1)
    labels = list(range(len(CLASSES)))
    cm = confusion_matrix(y_true, pred, labels=labels)
    per_class, roc_auc = {}, {}
    for i, name in enumerate(CLASSES):
        tp, fn, fp = cm[i, i], cm[i].sum() - cm[i, i], cm[:, i].sum() - cm[i, i]
        tn = cm.sum() - tp - fn - fp
        precision, sensitivity = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        per_class[name] = {
            "support": int(cm[i].sum()),
            "sensitivity": sensitivity,
            "specificity": _ratio(tn, tn + fp),
            "precision": precision,
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        }
        roc_auc[name] = _auc(y_true == i, proba[:, i])
    urgent_true, urgent_pred = np.isin(y_true, URGENT_IDS), np.isin(pred, URGENT_IDS)
    urgent_score = proba[:, URGENT_IDS].sum(axis=1)
    defined_aucs = [a for a in roc_auc.values() if a is not None]
    return {
        "n_images": int(len(y_true)),
        "n_patients": int(len(np.unique(groups))),
        "classes": list(CLASSES),
        "accuracy": float((pred == y_true).mean()),
        "macro_f1": float(f1_score(y_true, pred, labels=labels, average="macro", zero_division=0)),
        "weighted_error": float(penalty_matrix()[y_true, pred].mean() / penalty_matrix().max()),
        "ece": expected_calibration_error(y_true, proba),
        "roc_auc_macro": float(np.mean(defined_aucs)) if defined_aucs else None,
        "roc_auc": roc_auc,
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "urgent_referral": {
            "sensitivity": _ratio((urgent_true & urgent_pred).sum(), urgent_true.sum()),
            "specificity": _ratio((~urgent_true & ~urgent_pred).sum(), (~urgent_true).sum()),
            "auc": _auc(urgent_true, urgent_score),
        },
        "ci95": _bootstrap(y_true, pred, urgent_score, groups, n_boot, seed) if n_boot else {},
        "bootstrap": {"replicates": n_boot, "unit": "patient" if patient_ids is not None else "image", "seed": seed},
    }


def with_ci(metrics: dict, key: str, percent: bool = False) -> str:
    """A figure and its 95% CI as people read them: "0.937 (0.902-0.968)", or "93.7% (90.2%-96.8%)"."""
    low, high = metrics["ci95"][key]
    spec = ".1%" if percent else ".3f"
    return f"{metrics[key]:{spec}} ({low:{spec}}-{high:{spec}})"
