"""Full-size readiness: every data stage over a dataset the size of Kermany's (84,484 scans), with its
wall time and peak memory.

    python benchmarks/full_size.py DATA --base-model BASE [--workers N] [--work DIR] [--skip STAGE ...]
        [--augment-at scan|input]

DATA: e.g. the tree `benchmarks/synthetic_dataset.py` builds. Stages, each its own process (the
memory figures are the peak resident memory of that process and its workers together, sampled every
0.2 s, and the peak of what they hold themselves: resident less the pages of memory-mapped files): the
audit (every scan decoded and fingerprinted), the patient split, the classical model (feature extraction
on all cores, then the Nystroem SVM with calibration and its out-of-scope detector, C and gamma given so
the grid search does not multiply the fit), and one epoch of the ViT's training data (decode,
augmentation, processor) with N loader workers and no model; with --augment-at input, the training scans
are first decoded once into 8-bit pixels on disk (its time is printed apart).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from train.options import AUGMENT_AT, DEFAULT_AUGMENT_AT


def run(command: list[str]) -> tuple[float, float, float, str]:
    """(seconds, peak resident MB and peak held MB of the process tree, stdout) of one stage. Held: resident
    less its shared pages, i.e. less the pages of mapped files (the kernel's to drop and read again, e.g. `datasets`'
    memory-mapped Arrow files), but also less shared memory (the loader's batches in /dev/shm); pages a forked
    worker shares copy-on-write with its parent count in each."""
    start, peak, held = time.perf_counter(), 0.0, 0.0
    # Files, not pipes: a stage's progress bars would fill a pipe no one reads until the end, and block it.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        root = psutil.Process(process.pid)
        while process.poll() is None:
            try:
                memory = [p.memory_info() for p in (root, *root.children(recursive=True)) if p.is_running()]
                peak = max(peak, sum(m.rss for m in memory) / 1e6)
                held = max(held, sum(m.rss - m.shared for m in memory) / 1e6)
            except psutil.Error:  # a worker ended between listing and reading
                pass
            time.sleep(0.2)
        seconds = time.perf_counter() - start
        if process.returncode:
            err.seek(0)
            raise SystemExit(f"{' '.join(command)} failed:\n{err.read()[-3000:]}")
        out.seek(0)
        return seconds, peak, held, out.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data")
    parser.add_argument("--base-model", required=True, help="for the ViT's image processor (a folder or Hub id)")
    parser.add_argument("--workers", type=int, default=psutil.cpu_count(), help="ViT data-loading processes")
    parser.add_argument("--work", default=tempfile.mkdtemp(prefix="full-size-"), help="where outputs go")
    parser.add_argument(
        "--skip",
        nargs="+",
        default=[],
        choices=("audit", "split", "classical", "vit"),
        help="stages not to run this time (skipping the split needs WORK/split.json from an earlier run)",
    )
    parser.add_argument(
        "--augment-at",
        choices=AUGMENT_AT,
        default=DEFAULT_AUGMENT_AT,
        help=f"the ViT trainer's --augment-at (default {DEFAULT_AUGMENT_AT})",
    )
    args = parser.parse_args()
    work, python = Path(args.work), sys.executable
    split = work / "split.json"
    if "split" in args.skip and not split.is_file():
        parser.error(f"--skip split needs {split} from an earlier run")
    stages = [
        ("audit", [python, "-m", "octcore.audit", args.data, "--json"]),
        ("split", [python, "-m", "octcore.split", args.data, "--out", str(split)]),
        (
            "classical: features, Nystroem SVM, calibration",
            [
                python,
                "-m",
                "baselines.train",
                "--data",
                args.data,
                "--split-file",
                str(split),
                "--out",
                str(work / "hog-lbp-svm"),
                "--cache-dir",
                str(work / "cache"),
                "--C",
                "10",
                "--gamma-scale",
                "0.5",
            ],
        ),
        (
            f"ViT: one epoch of training data, {args.workers} workers, augmented at the {args.augment_at}",
            [
                python,
                "-m",
                "train",
                "--data",
                args.data,
                "--split-file",
                str(split),
                "--base-model",
                args.base_model,
                "--out",
                str(work / "vit"),
                "--workers",
                str(args.workers),
                "--batch-size",
                "64",
                "--data-loading-only",
                "--augment-at",
                args.augment_at,
            ],
        ),
    ]
    print(f"{psutil.cpu_count()} CPU cores, {psutil.virtual_memory().total / 1e9:.0f} GB memory; work in {work}")
    print(f"{'stage':55s} {'time':>10s} {'peak memory':>12s} {'of it held':>11s}")
    for name, command in stages:
        if name.split(":")[0].lower() in args.skip:
            continue
        seconds, peak, held, output = run(command)
        print(f"{name:55s} {seconds / 60:8.1f} min {peak:9.0f} MB {held:8.0f} MB", flush=True)
        if name == "audit":
            report = json.loads(output)
            print(
                f"    {report['n_images']:,} scans, {report['n_patients']:,} patients, "
                f"{len(report['unreadable_files'])} unreadable"
            )
        elif name.startswith("classical"):
            print(
                "    "
                + "\n    ".join(line for line in output.splitlines() if line.startswith(("features", "fit:", "test")))
            )
        elif name.startswith("ViT"):
            loading = json.loads(output.strip().splitlines()[-1])
            once = loading["decoded_once_s"]
            print(
                f"    {loading['scans']:,} scans at {loading['scans_per_s']} scans/s "
                f"({loading['scans_per_s_per_worker']} per worker); first batch after {loading['first_batch_s']} s"
                + (f"; decoded once before, in {once} s" if once is not None else "")
            )


if __name__ == "__main__":
    main()
