"""The comparison: every model on the same test scans, the metrics.json other tools read, the report."""

import json

import pytest

from compare.__main__ import main
from octcore.split import main as split_main


@pytest.fixture(scope="module")
def report(tiny_vit, small_baseline, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    assert split_main(["examples/sample", "--out", str(out / "split.json")]) == 0
    assert (
        main(
            [
                "--data",
                "examples/sample",
                "--split-file",
                str(out / "split.json"),
                "--out",
                str(out / "report"),
                "--model",
                str(tiny_vit),
                "--model",
                str(small_baseline),
            ]
        )
        == 0
    )
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
