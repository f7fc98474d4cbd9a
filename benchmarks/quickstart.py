"""Time the README's quick start on a fresh clone: `make demo` until the Space answers, then `make test`.

    python benchmarks/quickstart.py [--base FOLDER_OR_HUB_ID] [--skip-test]

Clones this repository's committed HEAD into a temporary folder (so nothing installed or trained
here is reused), runs `make demo BASE=...` with the Space on a free port, and times it until the
Space answers a prediction with the models it trained; says which models it serves. Then stops the
Space and times `make test` in the same clone (its install is already done by then, as it would be
for a newcomer who ran the two commands in order).
"""

import argparse
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from space_http import ROOT, free_port, wait_until_answering

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--base", default="facebook/dinov2-small", help="BASE for make demo (a Hub id or a local folder)")
parser.add_argument("--skip-test", action="store_true", help="time make demo only")
parser.add_argument("--timeout", type=float, default=3600)
args = parser.parse_args()

clone = Path(tempfile.mkdtemp(prefix="quickstart-")) / "repo"
subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
base = str(Path(args.base).resolve()) if Path(args.base).is_dir() else args.base
port = free_port()
log = (clone.parent / "demo.log").open("w")
print(f"make demo BASE={base} in {clone} (log: {log.name})")
start = time.perf_counter()
demo = subprocess.Popen(
    ["make", "demo", f"BASE={base}"],
    cwd=clone,
    stdout=log,
    stderr=subprocess.STDOUT,
    env={**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"},
    start_new_session=True,
)
try:
    try:
        _, outputs = wait_until_answering(demo, f"http://127.0.0.1:{port}/", args.timeout)
    except RuntimeError:
        raise SystemExit(
            f"make demo ended (exit {demo.returncode}) before the Space answered; see {log.name}"
        ) from None
    took = time.perf_counter() - start
    # the answer: the summary, then each model's panel, empty for a model the Space could not load
    served = [name for name, panel in (("the ViT", outputs[1]), ("the classical model", outputs[2])) if panel]
    print(f"make demo: {took / 60:.1f} min from a fresh clone to the Space answering, serving {' and '.join(served)}")
finally:
    if demo.poll() is None:
        os.killpg(demo.pid, signal.SIGTERM)
        demo.wait(timeout=60)
for line in (clone.parent / "demo.log").read_text().splitlines():
    if "accuracy" in line or "No base checkpoint" in line or "base checkpoint" in line:
        print("  " + line.strip())
if not args.skip_test:
    start = time.perf_counter()
    test = subprocess.run(["make", "test"], cwd=clone, capture_output=True, text=True)
    summary = test.stdout.strip().splitlines()[-1] if test.stdout.strip() else test.stderr[-500:]
    print(f"make test: {(time.perf_counter() - start) / 60:.1f} min, exit {test.returncode}: {summary}")
