"""How often each model's out-of-scope detector flags in-scope scans, part by part of the split: the training
scans it was fitted on, and the validation and test scans of patients it never saw.

    python benchmarks/scope_by_part.py --data DATA --split-file split.json --model runs/compare/vit \
        --model runs/compare/hog-lbp-svm

The threshold accepts 95% of *new* in-scope scans (split-conformal on validation). A training scan is not
new: where the features outnumber the training scans, the detector's principal axes follow the training
scans' own variation, so those scans can sit further out than new ones. Prints one row per model and part.
"""

import argparse

import numpy as np

from models import load_model
from octcore.data import discover, load_split, row_parts
from octcore.labels import CLASSES

PARTS = ("train", "val", "test")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset folder (either layout)")
    parser.add_argument("--split-file", required=True, help="the split the models were trained on")
    parser.add_argument("--model", action="append", required=True, help="model folder or Hub id (repeat)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)

    scans = discover(args.data)
    parts = np.array(load_split(args.split_file, scans))
    print(f"{len(scans)} scans of {args.data}; " + ", ".join(f"{p} {(parts == p).sum()}" for p in PARTS))
    print("| model | part | scans | flagged | median score | threshold | accuracy |")
    print("|---|---|---|---|---|---|---|")
    for source in args.model:
        model = load_model(source)
        scope = model.calibration.out_of_scope
        if scope is None:
            print(f"| {model.name} | no out-of-scope detector | | | | | |")
            continue
        scores, flagged, predicted = [], [], []
        for part in row_parts(len(scans), args.batch_size):
            result = model.classify([s.path for s in scans[part]])
            scores.append(result.out_of_scope)
            flagged.append(result.flagged)
            predicted.append(result.proba.argmax(axis=1))
        scores, flagged, predicted = map(np.concatenate, (scores, flagged, predicted))
        right = predicted == np.array([CLASSES.index(s.label) for s in scans])
        for name in PARTS:
            rows = parts == name
            print(
                f"| {model.name} | {name} | {rows.sum()} | {flagged[rows].mean():.1%} | {np.median(scores[rows]):.2f} "
                f"| {scope.threshold:.2f} | {right[rows].mean():.3f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
