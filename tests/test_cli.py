"""The two trainers read their arguments before importing the libraries that take seconds to load: `--help`, and a
command missing an option, answer at once."""

import subprocess
import sys

import pytest

from conftest import ROOT, SAMPLE

HEAVY = {"torch", "transformers", "accelerate", "datasets", "sklearn", "skimage", "skops"}
# Runs a command line as `python -m MODULE ARGS` does, then says how it exited and which of HEAVY it loaded.
PROBE = f"""
import runpy, sys
module, code = sys.argv.pop(1), None
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code
print("exit", code, "loaded", sorted({HEAVY!r} & set(sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "module, argv, code, said",
    [
        ("train", ["--help"], 0, "--head-init"),
        ("train", ["--data", str(SAMPLE)], 2, "--data and --out are required"),
        ("baselines.train", ["--help"], 0, "--features"),
        ("baselines.train", ["--data", str(SAMPLE)], 2, "the following arguments are required: --out"),
    ],
)
def test_a_trainer_answers_help_and_usage_errors_before_its_heavy_imports(module, argv, code, said):
    done = subprocess.run([sys.executable, "-c", PROBE, module, *argv], cwd=ROOT, capture_output=True, text=True)
    assert f"exit {code} loaded []" in done.stderr, done.stderr[-2000:]
    assert said in done.stdout + done.stderr
