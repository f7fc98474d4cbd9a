"""How the models hold up when the same test scans look as if another device or setting had made them.

    python benchmarks/acquisition_shift.py --data DATA --split-file split.json --model runs/compare/vit \
        --model runs/compare/hog-lbp-svm [--part test]

Each test scan is decoded once (`read_scan`), then changed in one way at a time, at one strength fixed here before
any run: a different intensity curve (gamma), lower contrast, lower lateral resolution (blur, or half the A-scans),
more speckle, a narrower field of view (the central 70% of the width), heavy JPEG compression. These are stand-ins
for other devices, not other devices: a real device also differs in its optics, averaging and image processing.
Nothing is chosen on these figures. Prints, per change: each model's accuracy with its patient-bootstrap 95%
interval, how many scans the Space would withhold (the image checks, or any model's out-of-scope detector), and the
accuracy of each model on the scans it would still answer.
"""

import argparse
import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter

from models import load_model
from octcore.data import discover, load_split, select, targets
from octcore.imaging import ScanImage, add_speckle, read_scan, to_image
from octcore.metrics import evaluate, with_ci
from octcore.quality import scan_warnings


def _back(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32) / 255


def blur(gray: np.ndarray) -> np.ndarray:
    return _back(to_image(gray).filter(ImageFilter.GaussianBlur(1.5)))


def half_the_a_scans(gray: np.ndarray) -> np.ndarray:
    """Half the lateral resolution at the same width, as a device with half the A-scans per B-scan, shown at the
    same size, would give."""
    height, width = gray.shape
    fewer = to_image(gray).resize((width // 2, height), Image.Resampling.BILINEAR)
    return _back(fewer.resize((width, height), Image.Resampling.BILINEAR))


def narrower_field(gray: np.ndarray) -> np.ndarray:
    width = gray.shape[1]
    keep = int(width * 0.7)
    start = (width - keep) // 2
    return gray[:, start : start + keep]


def jpeg(gray: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    to_image(gray).save(buffer, "JPEG", quality=20)
    return read_scan(buffer.getvalue()).gray


def lower_contrast(gray: np.ndarray) -> np.ndarray:
    return np.clip(gray.mean() + 0.6 * (gray - gray.mean()), 0, 1)


CHANGES: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "none (the scans as they are)": lambda g, s: g,
    "darker mid-tones (gamma 1.5)": lambda g, s: g**1.5,
    "brighter mid-tones (gamma 0.67)": lambda g, s: g ** (1 / 1.5),
    "lower contrast (60% around the mean)": lambda g, s: lower_contrast(g),
    "blur (Gaussian, 1.5 px)": lambda g, s: blur(g),
    "half the A-scans (width halved, then restored)": lambda g, s: half_the_a_scans(g),
    "more speckle (x gamma noise, sd 0.5)": lambda g, s: add_speckle(g, 0.5, np.random.default_rng(s)),
    "narrower field (central 70% of the width)": lambda g, s: narrower_field(g),
    "JPEG quality 20": lambda g, s: jpeg(g),
}


def changed(scan: ScanImage, change: Callable[[np.ndarray, int], np.ndarray], seed: int) -> ScanImage:
    """A decoded scan changed one way (one of CHANGES), `seed` its random draws (the scan's index in the part)."""
    return ScanImage(change(scan.gray, seed).astype(np.float32), scan.colour, scan.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset folder (either layout)")
    parser.add_argument("--split-file", required=True, help="the split the models were trained on")
    parser.add_argument("--model", action="append", required=True, help="model folder or Hub id (repeat)")
    parser.add_argument("--part", default="test", choices=("train", "val", "test"), help="which scans (default test)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)

    scans = discover(args.data)
    chosen = select(scans, load_split(args.split_file, scans), args.part)
    y, patients = targets(chosen)
    decoded = [read_scan(s.path) for s in chosen]
    models = [load_model(m) for m in args.model]
    print(f"{len(chosen)} {args.part} scans of {len(set(patients))} patients ({args.data}); models: "
          + ", ".join(m.name for m in models))  # fmt: skip
    names = " | ".join(f"{m.name} accuracy | {m.name} on answered" for m in models)
    print(f"| change | {names} | withheld |\n|---|" + "---|" * (2 * len(models) + 1))
    for change, function in CHANGES.items():
        scans_now = [changed(d, function, i) for i, d in enumerate(decoded)]
        withheld = np.array([bool(scan_warnings(s)) for s in scans_now])
        results = []
        for model in models:
            parts = [
                model.classify(scans_now[i : i + args.batch_size]) for i in range(0, len(scans_now), args.batch_size)
            ]
            proba = np.concatenate([p.proba for p in parts])
            withheld |= np.concatenate([p.flagged for p in parts])
            results.append(proba)
        cells = []
        for proba in results:
            figures = evaluate(y, proba, patients)
            answered = ~withheld
            right = (proba.argmax(1) == y)[answered]
            cells += [
                with_ci(figures, "accuracy"),
                f"{right.mean():.3f} of {answered.sum()}" if answered.any() else "-",
            ]
        print(f"| {change} | " + " | ".join(cells) + f" | {withheld.sum()} ({withheld.mean():.0%}) |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
