"""Compare classical and deep models on the same patient-disjoint scans: metrics, plots, report.

    python -m compare --data DIR --model PATH_OR_ID [--model PATH_OR_ID ...] --out OUT [--split-file FILE]

Which scans: with --split-file (from octcore.split or a training run), its `test` scans; else, in
the train/val/test layout, the `test` folder; else (flat layout) every scan. Subfolders of DIR that
are not one of the four classes (any other name; in the split layout, inside test/) hold scans out
of the models' scope: they never enter accuracy, and measure each model's out-of-scope flag. Writes
OUT/metrics.json ({"n_images", "models": {NAME: {"accuracy", "macro_f1", "ms_per_image", "trained" (how: from the
folder's training.json, `models.card.training_summary`),
"out_of_scope": {"auroc", "in_scope_flagged", "out_of_scope_flagged"}, ...}}}), OUT/predictions.csv
(a row per scan and model), OUT/report.md, OUT/report.html and the plots they show. With --explain N,
each model's explanation map is measured on N test scans (`explanation`: deletion AUC of the map and
of a random order, share of the map on the image border).
"""

import argparse
import csv
import json
import sys
from itertools import combinations
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset folder (either layout)")
    parser.add_argument("--model", action="append", required=True, help="model folder or Hub id (repeat)")
    parser.add_argument("--out", required=True, help="report folder")
    parser.add_argument("--split-file", help="evaluate the test scans of this split file")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--explain",
        type=int,
        default=40,
        help="test scans (evenly spread) on which each model's explanation map is measured; 0: none",
    )
    parser.add_argument(
        "--vit-backend",
        choices=("auto", "onnx", "torch"),
        default="auto",
        help="auto: the int8 ONNX export when the folder has one (as the Space runs it), else PyTorch",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)

    # The models' libraries (torch, ONNX Runtime, scikit-learn, matplotlib) take seconds to load: only once the
    # arguments are good, so that --help and a usage error answer at once.
    from compare.explain import explanation_figures
    from compare.report import write_plots, write_reports
    from compare.score import PREDICTION_HEADER, mcnemar, model_figures, model_size_mb, prediction_rows, score_model
    from models import load_model
    from models.card import training_summary
    from octcore.data import (
        DataError,
        discover,
        discover_out_of_scope,
        load_split,
        select,
        split_file_coverage,
        targets,
    )
    from octcore.imaging import ScanError
    from octcore.labels import CLASSES

    # 1. The scans every model sees: the in-scope test scans, and any out-of-scope ones.
    try:
        scans = discover(args.data)
        if args.split_file:
            part = "the split file's test part" + split_file_coverage(args.split_file, scans)
            scans, source = select(scans, load_split(args.split_file, scans), "test"), part
        elif any(s.official_split for s in scans):
            scans, source = [s for s in scans if s.official_split == "test"], "official test folder"
        else:
            source = "every scan of the folder"
        outside = discover_out_of_scope(args.data)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    y, patients = targets(scans)
    print(f"{len(scans)} scans of {len(set(patients))} patients ({source}); {len(outside)} out-of-scope scans")

    # 2. Every model on them, timed, through the one model interface.
    results, scored, rows = {}, {}, []
    for name in args.model:
        try:
            model = load_model(name, args.vit_backend)
        except Exception as e:  # a missing folder, an unknown format, an unreachable Hub: said, not raised
            print(f"error: cannot load model {name}: {e}", file=sys.stderr)
            return 2
        label = Path(name).name if Path(name).is_dir() else name
        try:
            scored[label] = score_model(model, scans, outside, args.batch_size, label)
        except ScanError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        figures = model_figures(scored[label], y, patients)
        ms = round(scored[label].seconds / max(len(scans), 1) * 1000, 1)
        figures.update(
            kind=model.kind,
            source=name,
            trained=training_summary(model.folder),
            ms_per_image=ms,
            size_mb=model_size_mb(model),
        )
        if args.explain:
            step = max(1, len(scans) // args.explain)
            chosen = [s.path for s in scans[::step][: args.explain]]
            figures["explanation"] = explanation_figures(model, chosen, desc=f"{label}: maps")
        results[label] = figures
        rows += prediction_rows(label, scans, outside, Path(args.data).resolve(), scored[label])
        scope = figures["out_of_scope"]
        flagged = f"; out of scope: AUROC {scope['auroc']:.3f}" if scope and scope["auroc"] is not None else ""
        print(
            f"{label}: accuracy {figures['accuracy']:.3f}, macro-F1 {figures['macro_f1']:.3f}, {ms} ms/scan{flagged}"
        )

    # 3. Paired tests, predictions, plots, reports.
    probas = {n: s.in_scope.proba for n, s in scored.items()}
    correct = {n: p.argmax(axis=1) == y for n, p in probas.items()}
    paired = {f"{a} vs {b}": mcnemar(correct[a], correct[b]) for a, b in combinations(probas, 2)}
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "n_images": len(scans),
        "n_patients": len(set(patients)),
        "n_out_of_scope": len(outside),
        "data": args.data,
        "scans": source,
        "classes": list(CLASSES),
        "models": results,
        "paired_tests": paired,
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    with (out / "predictions.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([PREDICTION_HEADER, *rows])
    plots = write_plots(out, y, probas, results, scans)
    write_reports(out, summary, plots)
    print(f"wrote {out / 'report.md'}, {out / 'report.html'}, {out / 'metrics.json'} and {out / 'predictions.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
