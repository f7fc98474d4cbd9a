"""Build a synthetic dataset the size of the full Kermany OCT2017 release, from a sample of real scans.

    python benchmarks/synthetic_dataset.py --source DATA --out DIR [--train 83484 --val 32 --test 968] [--size WxH]

Each file is a real scan of the source (cycled through, class kept) re-saved as JPEG with a small
random shift, brightness/contrast change and speckle, under a new patient id (about 20 scans per
patient, as in the real data), in the official `train/ val/ test/{CLASS}/` layout and naming
(`<CLASS>-<patient id>-<n>.jpeg`). --size resizes every scan first (e.g. 1024x496, the real data's
usual size, when the source is the repository's downsized sample). It is for timing and memory
(benchmarks/full_size.py), never for accuracy: its scans repeat the source's.
"""

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

SCANS_PER_PATIENT = 20
FIRST_PATIENT = 90_000_000  # above every real Kermany patient id


def perturbed(source: Path, seed: int, size: tuple[int, int] | None) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.open(source).convert("L")
    if size:
        image = image.resize(size, Image.Resampling.BICUBIC)
    gray = np.asarray(image, dtype=np.float32)
    gray = np.roll(gray, rng.integers(-8, 9), axis=1)
    gray = (gray - gray.mean()) * rng.uniform(0.9, 1.1) + gray.mean() + rng.uniform(-6, 6)
    gray *= rng.gamma(64.0, 1 / 64.0, size=gray.shape)  # mild multiplicative speckle
    return Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8))


def write_one(job: tuple[int, str, str, Path], out: Path, size: tuple[int, int] | None) -> None:
    index, split, label, source = job
    patient = FIRST_PATIENT + index // SCANS_PER_PATIENT
    target = out / split / label / f"{label}-{patient}-{index % SCANS_PER_PATIENT + 1}.jpeg"
    try:
        image = perturbed(source, index, size)
    except (OSError, ValueError, Image.DecompressionBombError) as e:  # a damaged file, a non-image, a bomb
        raise ValueError(f"cannot read the source scan {source}: {e}") from None
    image.save(target, quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, help="a dataset folder of real scans (class folders)")
    parser.add_argument("--out", required=True, help="the folder to write (must not exist)")
    parser.add_argument("--train", type=int, default=83_484)
    parser.add_argument("--val", type=int, default=32)
    parser.add_argument("--test", type=int, default=968)
    parser.add_argument("--size", help="WxH: resize every scan to this first (e.g. 1024x496)")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    from octcore.data import DataError, discover, save_split  # the repository on the path (run from its root)

    if Path(args.out).exists():
        parser.error(f"--out {args.out} exists; give a new folder")
    try:
        sources = discover(args.source)
    except DataError as e:
        parser.error(f"--source: {e}")
    sources = [sources[i] for i in np.random.default_rng(0).permutation(len(sources))]  # classes mixed in every split
    size = tuple(int(v) for v in args.size.lower().split("x")) if args.size else None
    out = Path(args.out)
    out.mkdir(parents=True)
    jobs, index = [], 0
    for split, count in (("train", args.train), ("val", args.val), ("test", args.test)):
        # whole patients per split: each split starts at a fresh patient id
        index = -(-index // SCANS_PER_PATIENT) * SCANS_PER_PATIENT
        for i in range(count):
            source = sources[(index + i) % len(sources)]
            (out / split / source.label).mkdir(parents=True, exist_ok=True)
            jobs.append((index + i, split, source.label, source.path))
        index += count
    with ProcessPoolExecutor(args.workers) as pool:
        work = pool.map(partial(write_one, out=out, size=size), jobs, chunksize=64)
        try:
            for _ in tqdm(work, total=len(jobs), desc="writing scans", unit="scan"):
                pass
        except ValueError as e:
            sys.exit(f"error: {e} (python -m octcore.audit lists every unreadable file of a folder)")
    # Its split is known by construction (every patient inside one official folder): written here, so the
    # benchmarks need not decode 84k scans to find it.
    scans = discover(out)
    save_split(out.parent / f"{out.name}-split.json", scans, [s.official_split for s in scans], made="by construction")
    print(
        f"wrote {len(jobs):,} scans to {out} (train {args.train:,}, val {args.val:,}, test {args.test:,}) and its "
        f"split to {out.parent / (out.name + '-split.json')}"
    )


if __name__ == "__main__":
    main()
