"""How well each model flags what it was not taught: a class left out of training (near), and images that
are not OCT B-scans at all (far).

    python benchmarks/out_of_scope.py --data DATA --split-file SPLIT --out DIR --base-model BASE
        [--left-out DRUSEN DME] [--models vit classical] [--vit MODEL --classical MODEL]
        [--choose [--far-check NON_OCT_DIR]]

Near: for each left-out class, both models are trained by their default commands on the split's train
part without that class (their detectors fitted and thresholded on train and validation without it),
then `python -m compare` scores the other classes' test scans as in scope and the left-out class's
validation and test scans as out of scope. Far: the given models (trained on all four classes) are
scored on the split's test scans and on `benchmarks/non_oct.py`'s images. Prints one table; every
report stays in DIR. --choose also prints, for the left-out-class models, each detector setting's validation
AUROC, from validation scans alone, and with --far-check the share of another set of non-OCT images it flags.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from models.scope import OutOfScope
from octcore.data import discover, load_split, split_scans
from octcore.labels import CLASSES


def run(command: list[str], log: Path) -> None:
    with log.open("w") as handle:
        if subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT).returncode:
            raise SystemExit(f"{' '.join(command[:3])} failed; see {log}")


def linked_folder(folder: Path, files: dict[str, list[Path]]) -> Path:
    """A data folder of symbolic links: subfolder name -> files."""
    for name, paths in files.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for path in paths:
            target = folder / name / path.name
            if not target.exists():
                target.symlink_to(path.resolve())
    return folder


BACKGROUND_WEIGHTS = (0.0, 0.5, 1.0)  # the relative distance's (models.scope.OutOfScope), 0: the distance itself


def detector_choices(
    folder: Path, scans: list, split: list[str], groups: np.ndarray, left: str, far: list[Path]
) -> dict[str, tuple[float, float, float]]:
    """For each setting of the out-of-scope detector fitted on the training scans' features (the relative distance's
    background weight, features at unit length or raw, principal components kept, detectors cross-fitted on folds
    of patients): its validation AUROC (in-scope validation scans against the left-out class's), the share of its
    own in-scope training scans it flags at a threshold set on the in-scope validation scans (new scans: 5%), and
    the share of `far` (non-OCT images, another set than the far test's; NaN without) it flags at that
    threshold."""
    from models import load_model

    model = load_model(folder, backend="torch")
    labels = np.array([CLASSES.index(s.label) for s in scans])
    _, features = model.embed([s.path for s in scans])
    far_features = model.embed(far)[1] if far else None
    part, out = np.array(split), labels == CLASSES.index(left)
    train, inside, outside = (part == "train") & ~out, (part == "val") & ~out, (part == "val") & out
    truth = np.r_[np.zeros(inside.sum()), np.ones(outside.sum())]
    table = {}
    for weight in BACKGROUND_WEIGHTS:
        for unit_length in (True, False):
            for k in (16, 32, 64, 128):
                for folds in (1, 3, 5):
                    detector = OutOfScope.fit(
                        features[train], labels[train], k, unit_length, folds, groups[train], weight
                    ).with_threshold(features[inside])
                    scores = np.r_[detector.score(features[inside]), detector.score(features[outside])]
                    own = float(np.mean(detector.score(features[train]) > detector.threshold))
                    flagged = (
                        np.nan
                        if far_features is None
                        else float(np.mean(detector.score(far_features) > detector.threshold))
                    )
                    name = f"w{weight:g} {'unit' if unit_length else 'raw'} {k} x{folds}"
                    table[name] = (float(roc_auc_score(truth, scores)), own, flagged)
    return table


def image_checks(files: list[Path]) -> dict[str, bool]:
    """Whether the Space's image checks (octcore.quality: colour, brightness, a bright layer, shape) flag each file."""
    from octcore.imaging import read_scan
    from octcore.quality import scan_warnings

    return {f.name: bool(scan_warnings(read_scan(f))) for f in files}


def compare(data: Path, split_file: str, models: list[Path], out: Path) -> dict:
    command = [sys.executable, "-m", "compare", "--data", str(data), "--split-file", split_file, "--out", str(out)]
    run(command + [arg for m in models for arg in ("--model", str(m))], out.with_suffix(".log"))
    return json.loads((out / "metrics.json").read_text())["models"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--split-file", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--base-model", help="the ViT's base checkpoint (for the left-out-class runs)")
    parser.add_argument("--left-out", nargs="*", default=["DRUSEN", "DME"], choices=CLASSES)
    parser.add_argument("--models", nargs="+", default=["vit", "classical"], choices=["vit", "classical"])
    parser.add_argument("--vit", help="a ViT trained on all four classes (for the far test)")
    parser.add_argument("--classical", help="a classical model trained on all four classes (for the far test)")
    parser.add_argument("--workers", type=int, default=2, help="the ViT's data-loading processes")
    parser.add_argument(
        "--choose",
        action="store_true",
        help="also print, for the left-out-class models, the validation AUROC of the detector's settings (the "
        "relative distance's background weight, unit length or raw features, components, cross-fitted detectors) and "
        "the share of their own training scans each flags (with --far-check, of those images too)",
    )
    parser.add_argument(
        "--far-check",
        type=Path,
        help="with --choose: a folder of non-OCT images (benchmarks/non_oct.py --seed 1, not the far test's) that "
        "each setting's share flagged is printed for",
    )
    parser.add_argument("--recipe", help="recipe.json of benchmarks/vit_recipe.py: its options join the ViT's command")
    args = parser.parse_args()
    if args.far_check and not args.choose:
        parser.error("--far-check is read by --choose alone")
    if args.far_check and not args.far_check.is_dir():
        parser.error(
            f"--far-check {args.far_check}: no such folder (make one: python benchmarks/non_oct.py --out DIR --seed 1)"
        )
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    scans = discover(args.data)
    split = load_split(args.split_file, scans)
    groups = split_scans(scans, args.split_file).groups  # as the trainer cross-fits: linked patients together
    rows, choices = [], {}
    options = json.loads(Path(args.recipe).read_text())["options"] if args.recipe else []
    far_check = sorted(args.far_check.iterdir()) if args.far_check else []

    # Near: one class left out of training.
    for left in args.left_out:
        folder = out / f"without-{left}"
        kept = {c: [s.path for s in scans if s.label == c] for c in CLASSES if c != left}
        held = [s.path for s, t in zip(scans, split) if s.label == left and t in ("val", "test")]
        data = linked_folder(folder / "data", {**kept, f"left-out-{left}": held})
        trained = []
        if "vit" in args.models:
            trained.append(folder / "vit")
            if not (trained[-1] / "metrics.json").is_file():
                run(
                    [
                        sys.executable,
                        "-m",
                        "train",
                        "--data",
                        str(data),
                        "--split-file",
                        args.split_file,
                        "--base-model",
                        args.base_model,
                        "--out",
                        str(trained[-1]),
                        "--workers",
                        str(args.workers),
                        *options,
                    ],
                    folder / "vit.log",
                )
        if "classical" in args.models:
            trained.append(folder / "hog-lbp-svm")
            if not (trained[-1] / "metrics.json").is_file():
                run(
                    [
                        sys.executable,
                        "-m",
                        "baselines.train",
                        "--data",
                        str(data),
                        "--split-file",
                        args.split_file,
                        "--out",
                        str(trained[-1]),
                        "--cache-dir",
                        str(out / "cache"),
                    ],
                    folder / "classical.log",
                )
        for name, figures in compare(data, args.split_file, trained, folder / "report").items():
            rows.append((f"{left} left out ({len(held)} scans)", name, figures["out_of_scope"]))
        if args.choose:
            for model in trained:
                choices.setdefault(model.name, []).append(
                    detector_choices(model, scans, split, groups, left, far_check)
                )

    if choices:  # the detector's settings, from validation scans alone: in scope against the left-out class
        print(
            "the detector's settings (w: the relative distance's background weight, 0 the distance itself; unit "
            "length / raw features; principal components; x cross-fitted detectors): validation AUROC per left-out "
            "class and their mean | own training scans flagged | --far-check images flagged"
        )
        for name, tables in choices.items():
            for setting in tables[0]:
                aucs, owns, fars = zip(*(table[setting] for table in tables))
                print(
                    f"  {name:14s} {setting:17s} "
                    + " ".join(f"{a:.4f}" for a in aucs)
                    + f"  mean {np.mean(aucs):.4f} | "
                    + " ".join(f"{o:.1%}" for o in owns)
                    + " | "
                    + " ".join(f"{f:.1%}" for f in fars)
                )

    # Far: images that are not OCT B-scans, against the models trained on all four classes.
    given = [Path(m) for m in (args.vit, args.classical) if m]
    if given:
        images = out / "non-oct"
        if not images.is_dir():
            run([sys.executable, str(Path(__file__).parent / "non_oct.py"), "--out", str(images)], out / "non-oct.log")
        data = linked_folder(
            out / "far-data",
            {**{c: [s.path for s in scans if s.label == c] for c in CLASSES}, "not-oct": sorted(images.iterdir())},
        )
        for name, figures in compare(data, args.split_file, given, out / "far-report").items():
            rows.append((f"not OCT ({len(list(images.iterdir()))} images)", name, figures["out_of_scope"]))
        checked = image_checks(sorted(images.iterdir()))
        predictions = pd.read_csv(out / "far-report" / "predictions.csv")
        far = predictions[predictions["file"].str.startswith("not-oct/")]
        print(f"the image checks (octcore.quality) flag {np.mean(list(checked.values())):.1%} of the non-OCT images")
        for name, flags in far.groupby("model"):
            either = [flag or checked[Path(file).name] for file, flag in zip(flags["file"], flags["flagged"])]
            print(f"  {name}: its detector or the image checks flag {np.mean(either):.1%} (what the Space withholds)")

    print(f"{'out of scope':28s} {'model':24s} {'AUROC':>6s} {'in-scope flagged':>17s} {'out-of-scope flagged':>21s}")
    for what, name, scope in rows:
        if scope is None:
            print(f"{what:28s} {name:24s} (no out-of-scope detector saved)")
            continue
        print(
            f"{what:28s} {name:24s} {scope['auroc']:6.3f} {scope['in_scope_flagged']:17.1%} "
            f"{scope['out_of_scope_flagged']:21.1%}"
        )


if __name__ == "__main__":
    main()
