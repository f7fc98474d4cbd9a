"""Fuzz campaign: many generated hostile uploads through the loader, the upload reader and the Space's request
path; count crashes and hangs, report the slowest input and the peak memory.

    python benchmarks/fuzz_inputs.py --inputs 100000 [--vit MODEL_DIR --baseline MODEL_DIR] [--seed 0]

The generators are the test suite's (`tests/hostile.py`), structure-aware: image headers (PNG IHDR, JPEG frame
and table headers, TIFF directory entries) and DICOM elements and transfer syntaxes set to boundary values, zip
local headers, central directories and end records edited, decompression-bomb headers, lying DICOMs, zips with
path-traversal names, zip bombs, byte-level mutations of valid files, random bytes. Input i of a run is made
from the seed `{seed}-{i}`, so any input can be made again.

Each input goes through `load_scan` (a scan, or ScanError with a reason), `iter_upload` (each frame pixels or a
message) and, with models given, the Space's own request function as the app runs it: `space.ui.predict` for a
file dropped on One scan, `space.ui.batch` for a zip, decoding in a worker process with the app's time budget;
a `gr.Error` with a message is an answer. A crash is any other exception; a hang, an input slower than --hang
seconds. Memory: this process and its decode worker, sampled every 500 inputs.
"""

import argparse
import random
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import gradio as gr
import psutil
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from hostile import KINDS, hostile_file  # noqa: E402
from octcore.imaging import ScanError, load_scan  # noqa: E402
from space.engine import Models  # noqa: E402
from space.ui import batch, predict  # noqa: E402
from space.uploads import is_zip, iter_upload  # noqa: E402
from space.workers import DecodePool  # noqa: E402


def resident_mb() -> float:
    me = psutil.Process()
    return sum(p.memory_info().rss for p in [me, *me.children(recursive=True)] if p.is_running()) / 1024**2


def one_input(data: bytes, path: Path, models: Models | None, pool: DecodePool | None) -> bool:
    """Every stage on one input; True when load_scan refused it with a reason. Raises on a crash."""
    try:
        load_scan(data)
        refused = False
    except ScanError as e:
        assert e.reason, "a refusal without a reason"
        refused = True
    for frame in iter_upload(data, "upload"):
        assert (frame.gray is None) != (frame.error is None), "a frame with neither pixels nor a message"
    if models:
        path.write_bytes(data)
        try:
            if is_zip(data):
                table, csv = batch([str(path)], None, models, pool)
                assert len(table) >= 1 and Path(csv).is_file(), "a batch without rows or CSV"
            else:
                outputs = predict(str(path), None, models, pool)
                assert outputs[0], "an empty headline"
        except gr.Error as e:
            assert e.message and "Traceback" not in e.message, "an error without a message"
    return refused


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=1000, help="how many inputs (a multiple of the kinds' count)")
    parser.add_argument("--hang", type=float, default=30, help="an input slower than this (seconds) counts as a hang")
    parser.add_argument("--vit", help="ViT folder: with --baseline, also run the Space's request path")
    parser.add_argument("--baseline")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    warnings.simplefilter("ignore")  # decoders warn about what is wrong with a file; the reader's answer is checked
    models = Models(args.vit, args.baseline) if args.vit or args.baseline else None
    pool = DecodePool(size=1).start() if models else None
    scratch = Path(tempfile.mkdtemp(prefix="fuzz-"))
    tried, refused, crashes, hangs, slowest, peak = Counter(), Counter(), [], [], (0.0, ""), 0.0
    start = time.perf_counter()
    try:
        for i in tqdm(range(args.inputs), desc="fuzzing", mininterval=10):
            kind, rng = KINDS[i % len(KINDS)], random.Random(f"{args.seed}-{i}")
            data = hostile_file(kind, rng)
            path = scratch / rng.choice(["upload.jpeg", "scan.dcm", "a.zip", "scan.png", "noext"])
            began = time.perf_counter()
            try:
                refused[kind] += one_input(data, path, models, pool)
            except Exception:
                crashes.append((kind, i, traceback.format_exc(limit=4)))
            took = time.perf_counter() - began
            if took > args.hang:
                hangs.append((kind, i, took))
            slowest = max(slowest, (took, f"{kind}, input {i}"))
            tried[kind] += 1
            if i % 500 == 0:
                peak = max(peak, resident_mb())
    finally:
        if pool:
            pool.close()
    elapsed = time.perf_counter() - start

    path_name = "loader, reader and the Space's request path" if models else "loader and reader"
    print(f"{sum(tried.values()):,} inputs in {elapsed / 60:.1f} min through the {path_name} (seed {args.seed}):")
    for kind in KINDS:
        print(f"  {kind:20s} {tried[kind]:7,d} tried, {refused[kind]:7,d} refused by load_scan with a reason")
    print(
        f"crashes: {len(crashes)}; hangs (> {args.hang:g} s): {len(hangs)}; "
        f"slowest input: {slowest[0]:.2f} s ({slowest[1]}); peak resident memory {peak:,.0f} MB"
    )
    for kind, index, trace in crashes[:5]:
        print(f"--- crash on {kind} input {index} (seed {args.seed}-{index}):\n{trace}")
    return 1 if crashes or hangs else 0


if __name__ == "__main__":
    raise SystemExit(main())
