"""The command lines: every one reads its arguments before importing the libraries that take seconds to load
(`--help`, and a command missing an option, answer at once), and the trainers refuse a training part of one class
before any work."""

import subprocess
import sys

import pytest

from conftest import ROOT, SAMPLE, copy_scan

HEAVY = {"torch", "transformers", "accelerate", "datasets", "sklearn", "skimage", "skops", "onnxruntime", "gradio"}
HEAVY |= {"matplotlib"}
# Runs a command line as `python -m MODULE ARGS` (or `python FILE.py ARGS`) does, then says how it exited and which of
# HEAVY it loaded.
PROBE = f"""
import runpy, sys
module, code = sys.argv.pop(1), None
try:
    if module.endswith(".py"):
        runpy.run_path(module, run_name="__main__")
    else:
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
        ("train.export_onnx", ["--help"], 0, "--threads"),
        ("compare", ["--help"], 0, "--vit-backend"),
        ("compare", ["--data", str(SAMPLE)], 2, "the following arguments are required: --model, --out"),
        ("models.push", ["--help"], 0, "--repo-id"),
        ("space.deploy", ["--help"], 0, "--baseline"),
        ("space/app.py", ["--help"], 0, "GRADIO_SERVER_PORT"),
        ("octcore.split", ["--help"], 0, "--resplit"),
        ("octcore.split", [str(SAMPLE), "--out", "x.json", "--val-size", "0"], 2, "--val-size must be above 0"),
        ("octcore.split", [str(SAMPLE), "--out", "x.json", "--test-size", "1.5"], 2, "--test-size must be above 0"),
        ("baselines.train", ["--data", str(SAMPLE), "--out", "x", "--C", "0"], 2, "--C must be above 0, not 0.0"),
        ("baselines.train", ["--data", str(SAMPLE), "--out", "x", "--gamma-scale", "-1"], 2, "must be above 0"),
        ("octcore.audit", ["--help"], 0, "--split-file"),
        ("octcore.dataset", ["--help"], 0, "--push-to-hub"),
        ("examples/make_sample.py", ["--help"], 0, "usage"),
    ],
)
def test_a_command_answers_help_and_usage_errors_before_its_heavy_imports(module, argv, code, said):
    done = subprocess.run([sys.executable, "-c", PROBE, module, *argv], cwd=ROOT, capture_output=True, text=True)
    assert f"exit {code} loaded []" in done.stderr, done.stderr[-2000:]
    assert said in done.stdout + done.stderr


@pytest.fixture
def tiny_base(tmp_path):
    """A one-layer DINOv2 for the ViT trainer to load: these tests stop before it trains."""
    from transformers import Dinov2Config, Dinov2Model

    base = tmp_path / "base"
    Dinov2Model(
        Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    ).save_pretrained(base)
    return base


def test_both_trainers_refuse_a_training_part_of_one_class(tmp_path, tiny_base, capsys):
    """Scans of one class teach no classifier: the classical trainer and the ViT's linear probe say so and exit 2
    right after the split, before any feature or model work (the ViT's random head trains on as before)."""
    import baselines.train
    import train.__main__ as trainer

    data = tmp_path / "data"
    for scan in sorted((SAMPLE / "CNV").glob("*.jpeg"))[:12]:
        copy_scan(scan, data / "CNV")
    said = (
        "the training scans are all of one class (CNV); a classifier needs at least two of CNV, DME, DRUSEN and NORMAL"
    )
    assert baselines.train.main(["--data", str(data), "--out", str(tmp_path / "svm")]) == 2
    assert f"error: {said}" in capsys.readouterr().err
    vit = [
        "--data",
        str(data),
        "--base-model",
        str(tiny_base),
        "--out",
        str(tmp_path / "vit"),
        "--head-init",
        "linear-probe",
    ]
    assert trainer.main(vit) == 2
    assert f"error: --head-init linear-probe: {said}" in capsys.readouterr().err
    assert not (tmp_path / "svm").exists() and not (tmp_path / "vit").exists()


def test_both_trainers_refuse_a_split_without_validation_scans(tmp_path, tiny_base, capsys):
    """The trainers pick the ViT's best epoch and fit both models' temperature and out-of-scope threshold on the
    validation scans: a split file without any is refused right after the split, not with a traceback at the end."""
    import baselines.train
    import train.__main__ as trainer
    from octcore.data import discover, save_split

    data = tmp_path / "data"
    for label in ("CNV", "NORMAL"):
        for scan in sorted((SAMPLE / label).glob("*.jpeg"))[:6]:
            copy_scan(scan, data / label)
    scans = discover(data)
    save_split(tmp_path / "split.json", scans, ["test" if i % 3 == 0 else "train" for i in range(len(scans))])
    said = "error: the split has no validation scans"
    common = ["--data", str(data), "--split-file", str(tmp_path / "split.json")]
    assert baselines.train.main([*common, "--out", str(tmp_path / "svm")]) == 2
    assert said in capsys.readouterr().err
    assert trainer.main([*common, "--base-model", str(tiny_base), "--out", str(tmp_path / "vit")]) == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "svm").exists() and not (tmp_path / "vit").exists()
