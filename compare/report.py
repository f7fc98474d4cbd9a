"""The comparison's pictures and its Markdown / HTML report."""

import html
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from octcore.imaging import load_scan
from octcore.labels import CLASSES
from octcore.metrics import with_ci
from octcore.plots import draw_confusion, draw_reliability, draw_roc

GALLERY_SIZE = 12


def write_plots(out: Path, y: np.ndarray, probas: dict, results: dict, scans: list) -> dict[str, str]:
    """confusion.png (side by side), roc_reliability.png (urgent-referral ROC and reliability, overlaid),
    roc_per_class.png, and disagreements.png when models disagree; returns {key: file name}."""
    names = list(probas)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        draw_confusion(
            ax, np.array(results[name]["confusion_matrix"]), f"{name}\naccuracy {results[name]['accuracy']:.3f}"
        )
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for name in names:
        draw_roc(axes[0], y, probas[name], label=name, per_class=False)
        draw_reliability(axes[1], y, probas[name], label=name)
    fig.tight_layout()
    fig.savefig(out / "roc_reliability.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4.5), squeeze=False)
    for ax, name in zip(axes[0], names):
        draw_roc(ax, y, probas[name], label="")
        ax.set_title(f"{name}: one class against the rest", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "roc_per_class.png", dpi=110)
    plt.close(fig)

    plots = {
        "confusion": "confusion.png",
        "roc_reliability": "roc_reliability.png",
        "roc_per_class": "roc_per_class.png",
    }
    predictions = np.stack([probas[n].argmax(axis=1) for n in names])
    disagree = np.flatnonzero((predictions != predictions[0]).any(axis=0))
    if len(names) > 1 and len(disagree):
        shown = disagree[:GALLERY_SIZE]
        cols = 4
        rows = int(np.ceil(len(shown) / cols))
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.4 * rows), squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for ax, i in zip(axes.ravel(), shown):
            ax.imshow(load_scan(scans[i].path), cmap="gray", vmin=0, vmax=1)
            calls = "\n".join(f"{n}: {CLASSES[p]}" for n, p in zip(names, predictions[:, i]))
            ax.set_title(f"true {CLASSES[y[i]]}\n{calls}", fontsize=7)
        fig.suptitle(f"Scans where the models disagree ({len(disagree)} of {len(y)}; first {len(shown)})")
        fig.tight_layout()
        fig.savefig(out / "disagreements.png", dpi=100)
        plt.close(fig)
        plots["disagreements"] = "disagreements.png"
    return plots


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def tables(summary: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of each table in the report."""
    models = summary["models"]
    main = [
        [
            name,
            with_ci(m, "accuracy"),
            with_ci(m, "macro_f1"),
            _fmt(m["urgent_referral"]["auc"]),
            _fmt(m["weighted_error"]),
            f"{_fmt(m['ece_uncalibrated'])} → {_fmt(m['ece'])}",
            f"{m['ms_per_image']}",
            f"{m['size_mb']}",
        ]
        for name, m in models.items()
    ]
    per_class = [
        [
            name,
            *(
                f"{_fmt(m['per_class'][c]['sensitivity'], 2)} / {_fmt(m['per_class'][c]['specificity'], 2)}"
                for c in CLASSES
            ),
        ]
        for name, m in models.items()
    ]
    paired = [
        [pair, str(t["only_first_right"]), str(t["only_second_right"]), f"{t['p_value']:.3g}"]
        for pair, t in summary["paired_tests"].items()
    ]
    scope = [
        [
            name,
            _fmt(o["auroc"]),
            f"{o['in_scope_flagged']:.1%}",
            "n/a" if o["out_of_scope_flagged"] is None else f"{o['out_of_scope_flagged']:.1%}",
        ]
        for name, o in ((name, m["out_of_scope"]) for name, m in models.items())
        if o
    ]
    explained = [
        [name, e["map"], _fmt(e["deletion_auc"]), _fmt(e["random_deletion_auc"]), f"{e['border_fraction']:.1%}"]
        for name, e in ((name, m.get("explanation")) for name, m in models.items())
        if e
    ]
    trained = [[name, m["kind"], m["trained"]] for name, m in models.items() if m.get("trained")]
    scope_title = f"Out of scope ({summary.get('n_out_of_scope', 0)} scans the models were not taught)"
    return [
        (
            "Side by side",
            [
                "model",
                "accuracy (95% CI)",
                "macro-F1 (95% CI)",
                "urgent-referral AUC",
                "weighted error",
                "ECE (before → after temperature)",
                "ms / scan",
                "size (MB)",
            ],
            main,
        ),
        ("How each model was trained", ["model", "kind", "training (from its training.json)"], trained),
        ("Sensitivity / specificity per class", ["model", *CLASSES], per_class),
        ("Paired test (exact McNemar)", ["models", "only the first right", "only the second right", "p"], paired),
        (
            scope_title,
            ["model", "AUROC (in vs out of scope)", "in-scope scans flagged", "out-of-scope scans flagged"],
            scope,
        ),
        (
            "Explanation maps (deletion AUC: lower is better; a random order for comparison)",
            ["model", "map", "deletion AUC", "random deletion AUC", "mass on the outer 5% border"],
            explained,
        ),
    ]


def write_reports(out: Path, summary: dict, plots: dict[str, str]) -> None:
    intro = (
        f"{summary['n_images']} scans of {summary['n_patients']} patients ({summary['scans']}, `{summary['data']}`), "
        "none of them seen in training by any model. Intervals: 95% bootstrap over patients. "
        "ms / scan: the whole batch path (decode, preprocessing, model) on this machine."
    )
    md = ["# Classical vs deep: side-by-side comparison", "", intro, ""]
    page = [
        "<!doctype html><meta charset='utf-8'><title>OCT comparison</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px}img{max-width:100%}</style>",
        "<h1>Classical vs deep: side-by-side comparison</h1>",
        f"<p>{html.escape(intro)}</p>",
    ]
    for title, header, rows in tables(summary):
        md += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(r) + " |" for r in rows] + [""]
        page += [
            f"<h2>{html.escape(title)}</h2><table><tr>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in header)
            + "</tr>"
        ]
        page += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows] + ["</table>"]
    for title, key in (
        ("Confusion matrices", "confusion"),
        ("Urgent-referral ROC and reliability", "roc_reliability"),
        ("ROC per class", "roc_per_class"),
        ("Where the models disagree", "disagreements"),
    ):
        if key in plots:
            md += [f"## {title}", "", f"![{title}]({plots[key]})", ""]
            page += [f"<h2>{html.escape(title)}</h2><img src='{plots[key]}' alt='{html.escape(title)}'>"]
    (out / "report.md").write_text("\n".join(md))
    (out / "report.html").write_text("\n".join(page))
