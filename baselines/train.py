"""Train a classical OCT classifier (HOG / LBP features of the flattened retina + SVM) and save it.

    python -m baselines.train --data DIR --out DIR [--split-file SPLIT.json] [--features hog|lbp|hog+lbp]

The scans are split by patient: with --split-file (from `python -m octcore.split` or another model's
folder), exactly its patients; otherwise the split is made here (patients sharing an identical image
kept together) and saved in the model folder as split.json. It trains on the train part, chooses C
and gamma by patient-grouped cross-validation inside it, and reports the test part. Features are
extracted on all cores and cached on disk (a killed run resumes).
"""

import argparse
import json
import sys
import time
from pathlib import Path

from baselines.options import EXACT_LIMIT, KINDS, PARAM_GRID, SOLVERS, SPECKLE_COPIES

FEATURE_WORDS = {
    "hog": "histograms of oriented gradients (HOG)",
    "lbp": "uniform local binary pattern (LBP) histograms at three radii",
    "hog+lbp": "histograms of oriented gradients (HOG) and uniform local binary pattern (LBP) histograms",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m baselines.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset folder (either layout)")
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument("--split-file", help="use exactly this split's patients (default: split here and save it)")
    parser.add_argument("--features", choices=KINDS, default="hog+lbp", help="which features (default hog+lbp)")
    parser.add_argument(
        "--solver",
        choices=("auto", *SOLVERS),
        default="auto",
        help=f"auto: exact RBF SVM below {EXACT_LIMIT:,} training rows (scans and their speckled copies), Nystroem + "
        "linear SVM above",
    )
    parser.add_argument("--C", type=float, help=f"SVM C (default: searched over {PARAM_GRID['C']})")
    parser.add_argument(
        "--gamma-scale",
        type=float,
        help=f"RBF gamma = this / number of features (default: searched over {PARAM_GRID['gamma_scale']})",
    )
    parser.add_argument(
        "--speckle-copies",
        type=int,
        default=SPECKLE_COPIES,
        metavar="N",
        help=f"also train on N copies of each training scan with random speckle added (default {SPECKLE_COPIES})",
    )
    parser.add_argument("--no-flatten", action="store_true", help="skip retina flattening (for comparison)")
    parser.add_argument("--cache-dir", default="cache", help="feature cache (default ./cache)")
    parser.add_argument(
        "--cache-every", type=int, default=256, help="write the cache every N scans (a killed run resumes from there)"
    )
    parser.add_argument("--seed", type=int, default=0, help="split (when made here), search folds and calibration")
    parser.add_argument("--data-name", help="how the card names the data (default: Kermany et al. 2018 and its size)")
    parser.add_argument(
        "--dataset-id", help="the Hub dataset id of the data (python -m octcore.dataset), for the card"
    )
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the model folder to this Hub repo")
    args = parser.parse_args(argv)
    if args.speckle_copies < 0:
        parser.error("--speckle-copies must be 0 or more")
    for name, value in (("--C", args.C), ("--gamma-scale", args.gamma_scale)):
        if value is not None and not value > 0:
            parser.error(f"{name} must be above 0, not {value}")
    # Only now the imports that take seconds (scikit-learn, scikit-image, skops, and the modules that use them), so
    # that --help and a usage error answer at once.
    import numpy as np

    from baselines.cache import cached_features
    from baselines.features import COPY_SPECKLE, FeatureSettings
    from baselines.io import save_model_folder
    from baselines.model import OCTSVMClassifier, search_hyperparameters
    from models.base import Classification
    from models.card import TRAINING_FILE
    from models.classical import FORMAT, embed, scaled_features
    from models.push import push_model
    from models.scope import fit_calibration, test_summary
    from octcore.data import SPLITS, DataError, describe_data, discover, split_scans, targets
    from octcore.imaging import ScanError
    from octcore.labels import CLASSES
    from octcore.metrics import evaluate, with_ci

    progress = sys.stderr.isatty()

    # 1. Scans and the one patient-disjoint split.
    try:
        scans = discover(args.data)
        split = split_scans(scans, args.split_file, args.seed, progress)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"split: {split.source}")
    problem = split.training_problem(scans) or split.validation_problem()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    # The scans in split order, so each part's features are a slice (a view) of one array: on the full dataset a
    # copy of the training part's would be another 5.7 GB. Scans of no part ('excluded') are left out. The training
    # part comes with its speckled copies (--speckle-copies), so that the SVM learns what a noisier device's scans
    # look like; validation and test stay the scans as they are.
    parts = [split.indices(name) for name in SPLITS]
    parts[0] = parts[0] * (args.speckle_copies + 1)
    order = [i for part in parts for i in part]
    n_train = len(split.indices("train"))
    n_copies = n_train * args.speckle_copies
    copy = [i // n_train if i < len(parts[0]) else 0 for i in range(len(order))]
    used, groups = [scans[i] for i in order], split.groups[order]
    ends = np.cumsum([len(part) for part in parts])
    train_idx, val_idx, test_idx = slice(0, ends[0]), slice(ends[0], ends[1]), slice(ends[1], ends[2])

    # 2. Features, cached.
    settings = FeatureSettings(kind=args.features, flatten=not args.no_flatten)
    start = time.perf_counter()
    try:
        X = cached_features(
            used, settings, Path(args.cache_dir) if args.cache_dir else None, progress, args.cache_every, copy
        )
    except ScanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    y, patients = targets(used)
    print(
        f"features: {len(used) - n_copies:,} scans and {n_copies:,} speckled copies in "
        f"{time.perf_counter() - start:.0f} s ({X.shape[-1]:,} per view)"
    )

    # 3. Choose C and gamma by patient-grouped CV on the training patients (unless both are given),
    #    fit on train, evaluate on the test patients.
    grid = {
        "C": [args.C] if args.C is not None else PARAM_GRID["C"],
        "gamma_scale": [args.gamma_scale] if args.gamma_scale is not None else PARAM_GRID["gamma_scale"],
    }
    search = {"C": args.C, "gamma_scale": args.gamma_scale, "cv_accuracy": None, "cv_scored_on": None}
    chosen = "both given for this run, not searched"
    # The held-out folds hold the speckled copies too, so the CV accuracy scores the scans and their copies: the
    # search favours C and gamma that also hold up under speckle, as the copies are there for (scoring the scans
    # alone did no better: docs/results.md, *The classical search and the speckled copies*).
    cv_rows = "the training scans" + (" and their speckled copies" if n_copies else "")
    points = len(grid["C"]) * len(grid["gamma_scale"])
    if points > 1:
        print(f"searching C and gamma: {points} settings, patient-grouped 3-fold CV on {cv_rows} ...", flush=True)
        search = search_hyperparameters(
            X[train_idx], y[train_idx], groups[train_idx], args.solver, grid, random_state=args.seed
        )
        search["cv_scored_on"] = "scans and speckled copies" if n_copies else "scans"
        chosen = f"chosen by patient-grouped cross-validation on {cv_rows}"
        print(
            f"chosen: C={search['C']:g}, gamma_scale={search['gamma_scale']:g} "
            f"(CV accuracy {search['cv_accuracy']:.3f} on {cv_rows})"
        )
    model = OCTSVMClassifier(args.solver, search["C"], search["gamma_scale"], random_state=args.seed)
    start = time.perf_counter()
    rows = f"{n_train:,} scans" + (f" and {n_copies:,} speckled copies" if n_copies else "")
    print(f"fitting the SVM with calibration on {rows} ...", flush=True)
    model.fit(X[train_idx], y[train_idx], groups[train_idx])
    print(f"fit: {model.solver_} SVM on {rows} in {time.perf_counter() - start:.0f} s")

    # 4. Temperature and out-of-scope detector from the training and validation scans; figures on the test patients.
    #    The detector learns the training scans alone, not their speckled copies (the first n_train rows): fitted
    #    on the copies too, it told a class left out of training apart less well, and heavy speckle, on which the
    #    SVM is mostly wrong, looked familiar to it (docs/results.md, *The classical detector and the speckled
    #    copies*).
    #    Nothing reads the copies' rows, so they are not embedded (at full size, 75,156 rows of scaled features),
    #    nor the training scans' probabilities.
    train_features = scaled_features(model, X[:n_train])
    logits, features = embed(model, X[ends[0] :])  # the validation part, then the test part
    n_val = ends[1] - ends[0]
    calibration = fit_calibration(
        train_features,
        y[:n_train],
        logits[:n_val],
        features[:n_val],
        y[val_idx],
        "classical",
        "scaled HOG/LBP features, averaged over the scan and its mirror image",
        groups[:n_train],
    )
    test = Classification.of(logits[n_val:], features[n_val:], calibration)
    metrics = evaluate(y[test_idx], test.proba, patients[test_idx], seed=args.seed)
    metrics.update(test_summary(calibration, logits[n_val:], y[test_idx], test.flagged))

    # 5. Save a self-describing folder (what loading needs in config.json; how it was made, with the split,
    #    for the card), then publish if asked.
    config = {
        "format": FORMAT,
        "classes": list(CLASSES),
        "features": settings.to_dict(),
        "solver": model.solver_,
        "C": search["C"],
        "gamma_scale": search["gamma_scale"],
        "search": {"grid": grid, "cv_accuracy": search["cv_accuracy"], "cv_scored_on": search["cv_scored_on"]},
        "n_train": n_train,
        "speckle_copies": args.speckle_copies,
        "seed": args.seed,
    }
    record = {
        "kind": "classical",
        "model_name": Path(args.out).name,
        "dataset": describe_data(scans, split.names, args.data_name, args.dataset_id),
        "details": {
            "features_description": FEATURE_WORDS[settings.kind],
            "n_features": X.shape[-1],
            "solver": model.solver_,
            "C": f"{search['C']:g}",
            "gamma_scale": f"{search['gamma_scale']:g}",
            "chosen": chosen,
            "speckle_copies": args.speckle_copies,
            "median": settings.median,
            "copy_speckle": f"{COPY_SPECKLE[1]:g}",
            "seed": args.seed,
        },
    }
    files = {"split.json": split.text, TRAINING_FILE: json.dumps(record, indent=2)}
    out = save_model_folder(args.out, model, config, metrics, files, calibration, card_repo_id=args.push_to_hub)
    print(
        f"test (held-out patients): accuracy {with_ci(metrics, 'accuracy')}, "
        f"macro-F1 {with_ci(metrics, 'macro_f1')} on {metrics['n_images']} scans (95% CIs)"
    )
    print(f"saved {out}")
    if args.push_to_hub:
        push_model(out, args.push_to_hub)
        print(f"uploaded to https://huggingface.co/{args.push_to_hub}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
