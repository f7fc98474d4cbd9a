"""Rebuild the bundled sample (examples/sample/) from the 950-scan Kermany sample.

    python examples/make_sample.py path/to/kermany-oct-sample examples/sample

Takes 48 scans per class, at most 3 per patient, patients drawn with a fixed seed; halves each
scan's size (JPEG quality 75) so the whole sample stays under 5 MB. File names, and so patient
ids, are kept. Run once; the result is committed.
"""

import argparse
import csv
import random
from collections import defaultdict
from pathlib import Path

from PIL import Image

from octcore.data import discover
from octcore.labels import CLASSES

PER_CLASS, PER_PATIENT, SEED, MAX_WIDTH = 48, 3, 0, 512


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="the Kermany sample folder (flat layout)")
    parser.add_argument("out", help="where to write the bundled sample")
    args = parser.parse_args()
    by_class_patient = defaultdict(lambda: defaultdict(list))
    for scan in discover(args.source):
        by_class_patient[scan.label][scan.patient_id].append(scan)
    rng = random.Random(SEED)
    rows = []
    for label in CLASSES:
        patients = sorted(by_class_patient[label])
        rng.shuffle(patients)
        chosen = []
        for patient in patients:
            chosen += by_class_patient[label][patient][: min(PER_PATIENT, PER_CLASS - len(chosen))]
            if len(chosen) == PER_CLASS:
                break
        for scan in chosen:
            target = Path(args.out) / label / scan.path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(scan.path) as image:
                scale = min(1.0, MAX_WIDTH / image.width)
                small = image.resize(
                    (round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS
                )
                small.save(target, quality=75)
                rows.append(
                    [
                        f"{label}/{scan.path.name}",
                        label,
                        scan.patient_id,
                        image.width,
                        image.height,
                        small.width,
                        small.height,
                        small.mode,
                    ]
                )
    with open(Path(args.out) / "manifest.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["file", "label", "patient_id", "original_width", "original_height", "width", "height", "mode"]
        )
        writer.writerows(rows)
    print(f"wrote {len(rows)} scans to {args.out}")


if __name__ == "__main__":
    main()
