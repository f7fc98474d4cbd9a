"""Render the repository's model_card.md template with a finished run's real figures."""

import argparse
import json
from pathlib import Path
from string import Template

from octcore.data import Scan
from octcore.labels import CLASSES

TEMPLATE = Path(__file__).resolve().parent.parent / "model_card.md"


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def render_card(
    args: argparse.Namespace,
    metrics: dict,
    scans: list[Scan],
    split: list[str],
    size: tuple[int, int],
    processes: int = 1,
) -> str:
    ci = metrics["ci95"]
    counts = {name: split.count(name) for name in ("train", "val", "test")}
    rows = "\n".join(
        f"| {c} | {_fmt(m['sensitivity'])} | {_fmt(m['specificity'])} | {_fmt(m['f1'])} | {m['support']} |"
        for c, m in ((c, metrics["per_class"][c]) for c in CLASSES)
    )
    out = Path(args.out)
    values = {
        "model_name": out.name,
        "model_id": args.push_to_hub or str(out),
        "base_model": args.base_model,
        "data": args.data,
        "dataset_name": "Kermany 2018 OCT (sample)" if len(scans) < 10_000 else "Kermany 2018 OCT",
        "eval_split": "test (patient-disjoint)",
        "n_scans": len(scans),
        "seed": args.seed,
        "split_method": "octcore.patient_split by patient, patients sharing an identical image kept together",
        "n_train": counts["train"],
        "n_val": counts["val"],
        "n_test": metrics["n_images"],
        "n_test_patients": metrics["n_patients"],
        "bootstrap": metrics["bootstrap"]["replicates"],
        "accuracy": round(metrics["accuracy"], 4),
        "macro_f1": round(metrics["macro_f1"], 4),
        "accuracy_ci": "-".join(_fmt(v) for v in ci["accuracy"]),
        "macro_f1_ci": "-".join(_fmt(v) for v in ci["macro_f1"]),
        "urgent_auc": _fmt(metrics["urgent_referral"]["auc"]),
        "weighted_error": _fmt(metrics["weighted_error"]),
        "ece": _fmt(metrics["ece"]),
        "per_class_rows": rows,
        "height": size[0],
        "width": size[1],
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "processes": processes,
        "weight_decay": args.weight_decay,
        "lr": args.lr,
        "layer_decay": args.layer_decay,
        "warmup": args.warmup,
        "frozen": f"embeddings and the lowest {args.freeze_layers} blocks frozen"
        if args.freeze_layers
        else "all layers trained",
        "mixed_precision": args.mixed_precision or "from accelerate config",
        "history": json.dumps([h["val_macro_f1"] for h in metrics.get("history", [])]),
    }
    return Template(TEMPLATE.read_text()).substitute(values)
