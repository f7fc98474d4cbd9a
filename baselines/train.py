"""Train a classical OCT classifier (HOG / LBP features of the flattened retina + SVM) and save it.

    python -m baselines.train --data DIR --out DIR [--features hog|lbp|hog+lbp] [--push-to-hub REPO_ID]

Either dataset layout. A flat folder is split by patient (train / val / test, patients sharing an
identical image kept together) and validation metrics are reported; the train/val/test layout
trains on train and reports on the official test folder (its patients' images elsewhere are
excluded from training). Features are extracted on all cores and cached on disk.
"""
import argparse
import hashlib
import json
import os
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

from baselines.features import KINDS, scan_features
from baselines.io import push_to_hub, save_model_folder
from baselines.model import PARAM_GRID, SOLVERS, OCTSVMClassifier, search_hyperparameters
from octcore.data import DataError, discover, fingerprint_all, linked_groups, parallel_imap, patient_split, targets
from octcore.imaging import ScanError
from octcore.labels import CLASSES
from octcore.metrics import evaluate


def _features_of(path: Path, settings: dict) -> tuple[np.ndarray | None, str | None]:  # module level, for worker processes
    try:
        return scan_features(path, settings), None
    except ScanError as e:
        return None, e.reason


def cached_features(scans, settings: dict, cache_dir: Path | None, progress: bool = True, every: int = 256) -> np.ndarray:
    """(n, 2, d) features; scans already in the cache (same file, size, time and settings) are not recomputed.

    The cache is a folder of part files of `every` scans, each written whole (temporary name, then
    rename) as extraction goes, so a run killed mid-way restarts where it stopped.
    """
    tag = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    folder = cache_dir / f"features-{tag}" if cache_dir else None
    keys = [f"{s.path}|{s.path.stat().st_size}|{s.path.stat().st_mtime_ns}" for s in scans]
    known = {}
    for part in sorted(folder.glob("part-*.npz")) if folder else []:
        with np.load(part, allow_pickle=False) as saved:
            known.update(zip(saved["keys"].tolist(), saved["rows"]))
    todo = [i for i, k in enumerate(keys) if k not in known]
    fresh: list[int] = []

    def save_part() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        part = folder / f"part-{time.time_ns()}-{os.getpid()}.npz"
        staging = folder / f".{part.name}"  # not matched by part-*.npz until renamed
        np.savez(staging, keys=np.array([keys[i] for i in fresh]), rows=np.stack([known[keys[i]] for i in fresh]))
        os.replace(staging, part)
        fresh.clear()

    rows = parallel_imap(partial(_features_of, settings=settings), [scans[i].path for i in todo], "features", progress=progress)
    try:
        for i, (row, reason) in zip(todo, rows):
            if row is None:
                raise ScanError(scans[i].key, f"{reason}; remove or fix it (python -m octcore.audit lists every such file)")
            known[keys[i]] = row
            fresh.append(i)
            if folder and len(fresh) == every:
                save_part()
    finally:  # what was computed is kept, also when a scan turns out unreadable
        if folder and fresh:
            save_part()
    return np.stack([known[k] for k in keys])


def model_card(config: dict, metrics: dict) -> str:
    m = metrics
    ci = m["ci95"]
    return f"""---
library_name: sklearn
license: apache-2.0
tags: [oct, retina, ophthalmology, hog, lbp, svm, skops, image-classification]
datasets: [kermany2018]
---
# Classical OCT B-scan classifier: {config['features']['kind'].upper()} features + SVM ({config['solver']})

Sorts retinal OCT B-scans into {', '.join(CLASSES)}. Research and education only: **not a diagnosis**.

Pipeline: remove the scans' white padding, find and flatten the retina along a quadratic fit of the
RPE line, crop a band around it, light Gaussian denoising, {config['features']['kind'].upper()} features of
the band and of its mirror image, scaling, an SVM, sigmoid-calibrated probabilities averaged over
the two views. Load with `baselines.io.load_baseline(folder_or_repo_id)` (skops, trusted types named).

## Evaluation ({config['evaluated_on']})

Trained on {config['n_train']} scans of `{config['data']}`; evaluated on {m['n_images']} scans of
{m['n_patients']} patients none of whom were in training.

| accuracy | macro-F1 | urgent-referral sensitivity | urgent-referral specificity | ECE |
|---|---|---|---|---|
| {m['accuracy']:.3f} ({ci['accuracy'][0]:.3f}-{ci['accuracy'][1]:.3f}) | {m['macro_f1']:.3f} ({ci['macro_f1'][0]:.3f}-{ci['macro_f1'][1]:.3f}) | {m['urgent_referral']['sensitivity']} | {m['urgent_referral']['specificity']} | {m['ece']:.3f} |

95% intervals: bootstrap over patients. Caveat: the Kermany dataset's official splits share
patients between train and test; figures on such splits overstate accuracy on new patients.
Data: Kermany et al. 2018 (CC BY 4.0).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m baselines.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset folder (either layout)")
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument("--features", choices=KINDS, default="hog+lbp")
    parser.add_argument("--solver", choices=("auto", *SOLVERS), default="auto",
                        help="auto: exact RBF SVM below 10,000 scans, Nystroem + linear SVM above")
    parser.add_argument("--C", type=float, help=f"SVM C (default: searched over {PARAM_GRID['C']})")
    parser.add_argument("--gamma-scale", type=float,
                        help=f"RBF gamma = this / number of features (default: searched over {PARAM_GRID['gamma_scale']})")
    parser.add_argument("--no-flatten", action="store_true", help="skip retina flattening (for comparison)")
    parser.add_argument("--cache-dir", default="cache", help="feature cache (default ./cache)")
    parser.add_argument("--cache-every", type=int, default=256, help="write the cache every N scans (a killed run resumes from there)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the model folder to this Hub repo")
    args = parser.parse_args(argv)
    progress = sys.stderr.isatty()

    # 1. Scans and a patient-disjoint split (patients sharing an identical image stay together).
    try:
        scans = discover(args.data)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    groups = linked_groups(scans, [d for d, _ in fingerprint_all(scans, progress=progress)])
    split = patient_split(scans, seed=args.seed, groups=groups)
    held_out = "test" if any(s.official_split for s in scans) else "val"
    train_idx = [i for i, t in enumerate(split) if t == "train"]
    eval_idx = [i for i, t in enumerate(split) if t == held_out]

    # 2. Features, cached.
    settings = {"kind": args.features, "flatten": not args.no_flatten, "sigma": 0.7}
    try:
        X = cached_features(scans, settings, Path(args.cache_dir) if args.cache_dir else None, progress, args.cache_every)
    except ScanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    y, patients = targets(scans)

    # 3. Choose C and gamma by patient-grouped CV on the training patients (unless both are given),
    #    fit on train, evaluate on the held-out patients.
    grid = {"C": [args.C] if args.C else PARAM_GRID["C"],
            "gamma_scale": [args.gamma_scale] if args.gamma_scale else PARAM_GRID["gamma_scale"]}
    search = {"C": args.C, "gamma_scale": args.gamma_scale, "cv_accuracy": None}
    if len(grid["C"]) * len(grid["gamma_scale"]) > 1:
        search = search_hyperparameters(X[train_idx], y[train_idx], groups[train_idx], args.solver, grid, random_state=args.seed)
        print(f"chosen by patient-grouped 3-fold CV on train: C={search['C']:g}, gamma_scale={search['gamma_scale']:g} "
              f"(CV accuracy {search['cv_accuracy']:.3f})")
    model = OCTSVMClassifier(args.solver, search["C"], search["gamma_scale"], random_state=args.seed)
    model.fit(X[train_idx], y[train_idx], groups[train_idx])
    metrics = evaluate(y[eval_idx], model.predict_proba(X[eval_idx]), patients[eval_idx], seed=args.seed)
    evaluated_on = f"{held_out} split: patient-disjoint, {'official test folder' if held_out == 'test' else 'made by octcore.patient_split'}"

    # 4. Save a self-describing folder, then publish if asked.
    config = {"classes": list(CLASSES), "features": settings, "solver": model.solver_,
              "C": search["C"], "gamma_scale": search["gamma_scale"],
              "search": {"grid": grid, "cv_accuracy": search["cv_accuracy"]},
              "data": str(args.data), "n_train": len(train_idx),
              "evaluated_on": evaluated_on, "seed": args.seed}
    out = save_model_folder(args.out, model, config, metrics, model_card(config, metrics))
    print(f"{evaluated_on}: accuracy {metrics['accuracy']:.3f} {metrics['ci95']['accuracy']}, "
          f"macro-F1 {metrics['macro_f1']:.3f} on {metrics['n_images']} scans")
    print(f"saved {out}")
    if args.push_to_hub:
        print(f"uploaded: {push_to_hub(out, args.push_to_hub)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
