"""The teaching notebook (notebooks/classical_vs_deep.ipynb) runs top to bottom on the bundled sample, so it
cannot rot, and is stored without outputs, so its diffs stay readable.

It runs in a Jupyter kernel (nbclient, kernel python3 from this environment's ipykernel), from a copy in a
temporary folder with TMPDIR there too, so whatever it writes lands outside the repository and is cleaned up.
"""

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from conftest import ROOT, SHARED_DINOV2

NOTEBOOK = ROOT / "notebooks" / "classical_vs_deep.ipynb"
# Seconds per cell, far above what any cell needs (the ViT fine-tune, the longest, takes minutes on a loaded
# 2-core machine): a timeout only stops a hung kernel, it is not a speed check.
CELL_TIMEOUT = 1800


def execute(notebook: nbformat.NotebookNode, folder: Path) -> nbformat.NotebookNode:
    """Run every cell in a fresh python3 kernel started in `folder`; CellExecutionError at the first failing cell."""
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        startup_timeout=120,
        resources={"metadata": {"path": str(folder)}},
    )
    client.execute()
    return notebook


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The environment the kernel inherits: no network, temporary files under tmp_path, the project importable
    from anywhere, and the shared DINOv2 copy as the ViT's base where CI has one (else the notebook's stand-in)."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    # Jupyter's and IPython's own files (connection files, history) go there too; and with no user-level kernels
    # in that data folder, "python3" is this environment's kernel, not one a user registered elsewhere.
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the Hub is out of reach here: fail at once instead of retrying
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("OCT_VIT_MODEL", raising=False)  # always the fine-tune path, never a model lying around
    if SHARED_DINOV2.is_dir():
        monkeypatch.setenv("OCT_BASE_MODEL", str(SHARED_DINOV2))
    else:
        monkeypatch.delenv("OCT_BASE_MODEL", raising=False)
    folder = tmp_path / "run"
    folder.mkdir()
    return folder


def outputs(notebook: nbformat.NotebookNode) -> tuple[str, int]:
    """All printed text of an executed notebook, and how many images it showed."""
    text, images = [], 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            text.append(output.get("text", ""))
            images += "image/png" in output.get("data", {})
    return "".join(text), images


def test_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code), (
        "clear the outputs before committing (Jupyter: Edit > Clear Outputs of All Cells)"
    )
    assert notebook.metadata.kernelspec.name == "python3"


def test_notebook_runs_top_to_bottom(kernel_env: Path):
    notebook = execute(nbformat.read(NOTEBOOK, as_version=4), kernel_env)
    nbformat.write(notebook, kernel_env / NOTEBOOK.name)  # the executed copy, to look at when this fails
    text, images = outputs(notebook)
    for expected in ("image-level 5-fold CV", "patient-level 5-fold CV", "exact McNemar test", "HOG+LBP SVM"):
        assert expected in text
    assert ("STAND-IN" in text) != SHARED_DINOV2.is_dir()  # the stand-in exactly when no base checkpoint loads
    if SHARED_DINOV2.is_dir():  # the real DINOv2-S: its ViT learns in the notebook's minute, far from guessing (0.25)
        vit_accuracy = float(re.search(r"^ViT +accuracy (\d\.\d+)", text, re.MULTILINE).group(1))
        assert vit_accuracy >= 0.5, text
    # scans, HOG/LBP grid, training curves, confusion matrices: inline figures survive octcore.plots' Agg switch
    assert images >= 4
    assert list(kernel_env.parent.glob("oct-notebook-*/vit/config.json"))  # written under TMPDIR, not the repo


def test_a_failing_cell_fails_the_run(kernel_env: Path):
    """The harness reports a cell's error (the run stops there) rather than recording it and going on."""
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("raise RuntimeError('broken cell')")]
    )
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    with pytest.raises(CellExecutionError, match="broken cell"):
        execute(notebook, kernel_env)
