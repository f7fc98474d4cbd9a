"""Audit a dataset folder for what makes published accuracies untrustworthy.

    python -m octcore.audit DATA [--split-file SPLIT.json] [--json]

Counts scans per split and class, distinct patients, patients present in more than one split,
identical images (same decoded pixels) in more than one split or under two labels, and files
that cannot be read. Leakage is a finding, not a failure: the exit code is 0 whenever a report
was made, 2 when DATA cannot be read.
"""

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from octcore.data import (
    EXCLUDED,
    IMAGE_SUFFIXES,
    DataError,
    class_folders,
    detect_layout,
    discover,
    fingerprint_all,
    load_split,
    patient_id_from_name,
)
from octcore.labels import CLASSES

EXAMPLES = 5  # how many examples of each finding the report lists


def audit(
    root: str | Path, split_file: str | Path | None = None, workers: int | None = None, progress: bool = True
) -> dict:
    root = Path(root)
    layout = detect_layout(root)
    scans = discover(root)
    if split_file:
        splits = load_split(split_file, scans)
    else:
        splits = [s.official_split or "all" for s in scans]
    results = fingerprint_all(scans, workers, progress)

    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(CLASSES, 0))
    patient_splits, patient_labels, by_digest = defaultdict(set), defaultdict(set), defaultdict(list)
    unreadable = []
    for scan, split, (digest, error) in zip(scans, splits, results):
        counts[split][scan.label] += 1
        patient_labels[scan.patient_id].add(scan.label)
        if split != EXCLUDED:
            patient_splits[scan.patient_id].add(split)
        if error:
            unreadable.append({"file": scan.key, "error": error})
        else:
            by_digest[digest].append((split, scan.label, scan.key, scan.patient_id))

    leaking = {p for p, found in patient_splits.items() if len(found) > 1}
    leaking_images = defaultdict(int)
    for scan, split in zip(scans, splits):
        if scan.patient_id in leaking and split != EXCLUDED:
            leaking_images[split] += 1
    duplicates = [files for files in by_digest.values() if len(files) > 1]
    across_splits = [d for d in duplicates if len({s for s, _, _, _ in d if s != EXCLUDED}) > 1]
    across_labels = [d for d in duplicates if len({label for _, label, _, _ in d}) > 1]
    across_patients = [d for d in duplicates if len({patient for _, _, _, patient in d}) > 1]
    ignored = sorted(
        path.relative_to(root).as_posix()
        for _, _, folder in class_folders(root)
        for path in folder.iterdir()
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() not in IMAGE_SUFFIXES
    )
    return {
        "data": str(root),
        "layout": layout,
        "split_source": str(split_file) if split_file else ("folders" if layout == "split" else "none (flat layout)"),
        "n_images": len(scans),
        "n_patients": len(patient_labels),
        "counts": {split: counts[split] for split in sorted(counts)},
        "patients_per_split": {
            split: sum(split in found for found in patient_splits.values())
            for split in sorted(counts)
            if split != EXCLUDED
        },
        "patients_in_multiple_splits": len(leaking),
        "images_of_patients_in_multiple_splits": dict(sorted(leaking_images.items())),
        "patients_in_multiple_splits_examples": sorted(leaking)[:EXAMPLES],
        "patients_in_multiple_classes": sum(len(labels) > 1 for labels in patient_labels.values()),
        "duplicate_image_groups": len(duplicates),
        "duplicate_images_across_splits": len(across_splits),
        "duplicate_images_across_labels": len(across_labels),
        "duplicate_images_across_patients": len(across_patients),
        "duplicate_examples": [
            [key for _, _, key, _ in d] for d in (across_splits + across_labels + duplicates)[:EXAMPLES]
        ],
        "unreadable_files": unreadable,
        "names_without_patient_id": sum(patient_id_from_name(s.path.name) is None for s in scans),
        "ignored_files": ignored,
    }


SOURCES = {  # how the report's split source reads in a sentence
    "folders": "the dataset's own train/val/test folders",
    "none (flat layout)": "one folder per class, no splits",
}


def format_report(report: dict) -> str:
    """The report as a short text a person reads in a terminal (and the README quotes)."""
    lines = [
        f"Audit of {report['data']} ({SOURCES.get(report['split_source'], 'splits from ' + report['split_source'])})",
        f"{report['n_images']} images, {report['n_patients']} distinct patients",
        "",
    ]
    lines.append(f"{'split':<10}" + "".join(f"{c:>8}" for c in CLASSES) + f"{'total':>8}{'patients':>10}")
    for split, by_class in report["counts"].items():
        patients = report["patients_per_split"].get(split, "-")
        lines.append(
            f"{split:<10}"
            + "".join(f"{by_class[c]:>8}" for c in CLASSES)
            + f"{sum(by_class.values()):>8}{patients:>10}"
        )
    lines += [
        "",
        f"patients in more than one split:        {report['patients_in_multiple_splits']}"
        + (
            f"  (their images: {report['images_of_patients_in_multiple_splits']})"
            if report["patients_in_multiple_splits"]
            else ""
        ),
        f"patients under more than one class:     {report['patients_in_multiple_classes']}",
        f"identical images in more than one split: {report['duplicate_images_across_splits']}",
        f"identical images under two labels:       {report['duplicate_images_across_labels']}",
        f"identical images under two patient ids:  {report['duplicate_images_across_patients']}",
        f"groups of identical images (any):        {report['duplicate_image_groups']}",
        f"unreadable files:                        {len(report['unreadable_files'])}",
    ]
    lines += [f"  {u['file']}: {u['error']}" for u in report["unreadable_files"][:EXAMPLES]]
    if report["names_without_patient_id"]:
        lines.append(
            f"file names without a patient id (each counted as its own patient): {report['names_without_patient_id']}"
        )
    if report["ignored_files"]:
        lines.append(f"non-image files ignored: {len(report['ignored_files'])}")
    if report["patients_in_multiple_splits"] or report["duplicate_images_across_splits"]:
        lines += [
            "",
            "LEAK: scores on these splits overstate accuracy on new patients; split by patient instead"
            " (python -m octcore.split).",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m octcore.audit", description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="dataset folder: DATA/{train,val,test}/{CLASS}/ or DATA/{CLASS}/")
    parser.add_argument("--split-file", help="audit the splits of this split file instead of the folders")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--workers", type=int, default=None, help="processes that decode scans (default: all cores)")
    args = parser.parse_args(argv)
    try:
        report = audit(args.data, args.split_file, args.workers, progress=sys.stderr.isatty())
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
