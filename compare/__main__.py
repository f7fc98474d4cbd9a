"""Compare classical and deep models on the same patient-disjoint scans: metrics, plots, report.

    python -m compare --data DIR --model PATH_OR_ID [--model PATH_OR_ID ...] --out OUT [--split-file FILE]

Which scans: with --split-file (from octcore.split or a training run), its `test` scans; else, in
the train/val/test layout, the `test` folder; else (flat layout) every scan. Writes OUT/metrics.json
({"n_images", "models": {NAME: {"accuracy", "macro_f1", "ms_per_image", ...}}}), OUT/report.md,
OUT/report.html and the plots they show.
"""

import argparse
import json
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np
from scipy.stats import binomtest
from tqdm.auto import tqdm

from compare.report import write_plots, write_reports
from models import load_model
from octcore.data import DataError, discover, load_split, select, targets
from octcore.imaging import ScanError
from octcore.labels import CLASSES
from octcore.metrics import evaluate


def model_size_mb(model) -> float:
    """Size of the weights the model runs on (the int8 ONNX file when it runs that)."""
    if getattr(model, "backend", "") == "onnx":
        files = list(model.folder.glob("onnx/model_int8.onnx"))
    else:
        files = [p for p in model.folder.glob("*") if p.suffix in (".skops", ".safetensors")]
    return round(sum(p.stat().st_size for p in files if p.is_file()) / 1e6, 1)


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """Exact McNemar test on the scans where exactly one of two models is right."""
    only_a, only_b = int((correct_a & ~correct_b).sum()), int((~correct_a & correct_b).sum())
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"only_first_right": only_a, "only_second_right": only_b, "p_value": float(p)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset folder (either layout)")
    parser.add_argument("--model", action="append", required=True, help="model folder or Hub id (repeat)")
    parser.add_argument("--out", required=True, help="report folder")
    parser.add_argument("--split-file", help="evaluate the test scans of this split file")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--vit-backend",
        choices=("auto", "onnx", "torch"),
        default="auto",
        help="auto: the int8 ONNX export when the folder has one (as the Space runs it), else PyTorch",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)

    # 1. The scans every model sees.
    try:
        scans = discover(args.data)
        if args.split_file:
            scans, source = (
                select(scans, load_split(args.split_file, scans), "test"),
                f"test split of {args.split_file}",
            )
        elif any(s.official_split for s in scans):
            scans, source = [s for s in scans if s.official_split == "test"], "official test folder"
        else:
            source = "every scan of the folder"
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    y, patients = targets(scans)
    print(f"{len(scans)} scans of {len(set(patients))} patients ({source})")

    # 2. Every model on them, timed.
    results, probas = {}, {}
    for name in args.model:
        try:
            model = load_model(name, args.vit_backend)
        except Exception as e:  # a missing folder, an unknown format, an unreachable Hub: said, not raised
            print(f"error: cannot load model {name}: {e}", file=sys.stderr)
            return 2
        label = Path(name).name if Path(name).is_dir() else name
        start, parts = time.perf_counter(), []
        try:
            for i in tqdm(range(0, len(scans), args.batch_size), desc=label, disable=not sys.stderr.isatty()):
                parts.append(model.predict_proba([s.path for s in scans[i : i + args.batch_size]]))
        except ScanError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        seconds = time.perf_counter() - start
        probas[label] = np.concatenate(parts)
        metrics = evaluate(y, probas[label], patients)
        metrics.update(
            kind=model.kind,
            source=name,
            ms_per_image=round(seconds / len(scans) * 1000, 1),
            size_mb=model_size_mb(model),
        )
        results[label] = metrics
        print(
            f"{label}: accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}, "
            f"{metrics['ms_per_image']} ms/scan"
        )

    # 3. Paired tests, plots, reports.
    correct = {n: p.argmax(axis=1) == y for n, p in probas.items()}
    paired = {f"{a} vs {b}": mcnemar(correct[a], correct[b]) for a, b in combinations(probas, 2)}
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "n_images": len(scans),
        "n_patients": len(set(patients)),
        "data": args.data,
        "scans": source,
        "classes": list(CLASSES),
        "models": results,
        "paired_tests": paired,
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    plots = write_plots(out, y, probas, results, scans)
    write_reports(out, summary, plots)
    print(f"wrote {out / 'report.md'}, {out / 'report.html'} and {out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
