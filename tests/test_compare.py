"""The comparison: every model on the same test scans, the metrics.json other tools read, the report."""

import json

import pytest

from compare.__main__ import main
from octcore.split import main as split_main


@pytest.fixture(scope="module")
def report(tiny_vit, small_baseline, tmp_path_factory):
    """The bundled sample with a folder of images that are not OCT scans beside its class folders."""
    import shutil

    from PIL import Image
    from skimage import data as pictures

    out = tmp_path_factory.mktemp("compare")
    data = out / "data"
    shutil.copytree("examples/sample", data)
    (data / "not-oct").mkdir()
    for name in ("chelsea", "coffee", "page", "retina"):
        Image.fromarray(getattr(pictures, name)()).save(data / "not-oct" / f"{name}.png")
    assert split_main([str(data), "--out", str(out / "split.json")]) == 0
    models = ["--model", str(tiny_vit), "--model", str(small_baseline)]
    arguments = ["--data", str(data), "--split-file", str(out / "split.json"), "--out", str(out / "report")]
    assert main([*arguments, *models, "--explain", "4"]) == 0
    return out / "report", json.loads((out / "split.json").read_text())


def test_metrics_json_keeps_its_shape(report):
    folder, split = report
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["n_images"] == sum(split["counts"]["test"].values())
    assert len(metrics["models"]) == 2
    for name, model in metrics["models"].items():
        assert model["source"].endswith(name)  # named by the model folder
        assert isinstance(model["accuracy"], float) and isinstance(model["macro_f1"], float)
        assert model["ms_per_image"] > 0 and model["n_images"] == metrics["n_images"]
    ((pair, test),) = metrics["paired_tests"].items()
    assert " vs " in pair and 0 <= test["p_value"] <= 1


def test_report_shows_the_table_and_plots(report):
    folder, _ = report
    text = (folder / "report.md").read_text()
    assert "| model | accuracy (95% CI)" in text and "McNemar" in text
    for plot in ("confusion.png", "roc_reliability.png", "roc_per_class.png"):
        assert (folder / plot).stat().st_size > 10_000 and f"({plot})" in text
    assert "<table>" in (folder / "report.html").read_text()


def test_unknown_model_is_a_clear_error(tmp_path, capsys):
    assert main(["--data", "examples/sample", "--out", str(tmp_path), "--model", str(tmp_path / "missing")]) == 2
    assert "cannot load model" in capsys.readouterr().err


def test_out_of_scope_scans_never_enter_accuracy_and_are_scored(report):
    import csv

    folder, split = report
    metrics = json.loads((folder / "metrics.json").read_text())
    n_test = sum(split["counts"]["test"].values())
    assert metrics["n_out_of_scope"] == 4 and metrics["n_images"] == n_test
    for model in metrics["models"].values():
        scope = model["out_of_scope"]
        assert (
            0 <= scope["auroc"] <= 1
            and 0 <= scope["in_scope_flagged"] <= 1
            and 0 <= scope["out_of_scope_flagged"] <= 1
        )
        assert model["ece_uncalibrated"] >= 0 and model["ece"] >= 0
        explanation = model["explanation"]
        assert explanation["n_scans"] == 4 and 0 <= explanation["border_fraction"] <= 1
        assert explanation["deletion_auc"] >= 0 and explanation["random_deletion_auc"] >= 0
    rows = list(csv.DictReader((folder / "predictions.csv").open()))
    assert len(rows) == 2 * (n_test + 4)
    outside = [r for r in rows if r["label"].startswith("out of scope")]
    assert len(outside) == 8 and all(r["file"].startswith("not-oct/") for r in outside)
    assert {r["flagged"] for r in rows} <= {"True", "False"} and all(float(r["out_of_scope_score"]) >= 0 for r in rows)
    assert all(abs(sum(float(r[f"p_{c}"]) for c in ("CNV", "DME", "DRUSEN", "NORMAL")) - 1) < 1e-3 for r in rows)


def test_a_training_record_that_cannot_be_read_is_said_not_raised(small_baseline, tmp_path):
    """The report's training line reads each folder's training.json, which loading the model never reads: a broken
    one (a folder from elsewhere) is said in the line, not a traceback that stops the comparison."""
    import shutil

    from models.card import training_summary

    folder = tmp_path / "model"
    shutil.copytree(small_baseline, folder)
    assert training_summary(folder) is None  # no record: no line
    (folder / "training.json").write_text("{not json")
    assert training_summary(folder) == "not known: its training.json cannot be read (JSONDecodeError)"
    (folder / "training.json").write_text("[1, 2]")
    assert training_summary(folder) == "not known: its training.json is not a JSON object"
    (folder / "training.json").write_bytes(b"\xff\xfe not text")
    assert training_summary(folder) == "not known: its training.json cannot be read (UnicodeDecodeError)"
