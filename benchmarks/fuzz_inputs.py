"""Fuzz the image loader and the Space's request path for a fixed time; count inputs, crashes, hangs, memory.

    python benchmarks/fuzz_inputs.py --seconds 600 [--vit MODEL_DIR --baseline MODEL_DIR]

The generators are the test suite's (`tests/hostile.py`): mutated JPEG/PNG/TIFF/DICOM/zip files,
decompression-bomb headers, DICOMs whose header lies, zips with path-traversal names, zip bombs,
random bytes. Each input goes through `load_scan` (must return a scan or raise ScanError), the
Space's reader, and, with models given, the whole prediction function (`space.ui.analyse`), as a
file with a hostile name in a scratch folder. A crash is any other exception; a hang, an input
slower than --hang seconds; memory is the process's resident size, sampled every 200 inputs.
"""

import argparse
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from hostile import KINDS, hostile_file  # noqa: E402
from octcore.imaging import ScanError, load_scan  # noqa: E402
from space.engine import Models, read_bytes  # noqa: E402
from space.ui import analyse  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--seconds", type=float, default=60)
parser.add_argument("--hang", type=float, default=5, help="an input slower than this counts as a hang")
parser.add_argument("--vit", help="ViT folder (with --baseline: also run the whole prediction function)")
parser.add_argument("--baseline")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

models = Models(args.vit, args.baseline) if args.vit or args.baseline else None
process = psutil.Process()
tried, refused, crashes, hangs, slowest = Counter(), Counter(), [], [], (0.0, "")
rss = []
scratch = Path(tempfile.mkdtemp())
start = time.perf_counter()
i = 0
while time.perf_counter() - start < args.seconds:
    kind = KINDS[i % len(KINDS)]
    rng = random.Random(f"{args.seed}-{i}")
    data = hostile_file(kind, rng)
    began = time.perf_counter()
    try:
        try:
            load_scan(data)
        except ScanError:
            refused[kind] += 1
        frames = read_bytes(data, "upload")
        assert all(f.scan is not None or f.error for f in frames), "a frame with neither pixels nor an error"
        if models:
            path = scratch / rng.choice(["upload.jpeg", "scan.dcm", "a.zip", "noext"])
            path.write_bytes(data)
            assert analyse(str(path), models)[0], "an empty answer"
    except Exception:
        crashes.append((kind, i, traceback.format_exc(limit=3)))
    took = time.perf_counter() - began
    if took > args.hang:
        hangs.append((kind, i, took))
    slowest = max(slowest, (took, kind))
    tried[kind] += 1
    if i % 200 == 0:
        rss.append(process.memory_info().rss / 1024**2)
    i += 1
elapsed = time.perf_counter() - start

print(
    f"{sum(tried.values())} inputs in {elapsed:.0f} s "
    f"({'loader, reader and prediction function' if models else 'loader and reader'}):"
)
for kind in KINDS:
    print(f"  {kind:14s} {tried[kind]:6d} tried, {refused[kind]:6d} refused by load_scan with a message")
print(
    f"crashes: {len(crashes)}; hangs (> {args.hang:g} s): {len(hangs)}; "
    f"slowest input: {slowest[0] * 1000:.0f} ms ({slowest[1]})"
)
print(
    f"resident memory: {rss[0]:.0f} MB after the first input, {rss[len(rss) // 2]:.0f} MB halfway, "
    f"{rss[-1]:.0f} MB at the end "
    f"(max {max(rss):.0f} MB)"
)
for kind, index, trace in crashes[:5]:
    print(f"--- crash on {kind} input {index} (seed {args.seed}-{index}):\n{trace}")
sys.exit(1 if crashes or hangs else 0)
