"""The classical baseline trains on the bundled scans, saves safely and reloads to identical predictions."""
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio

from baselines.features import extract, retina_band
from baselines.io import MODEL_FILE, UntrustedModelError, load_baseline, save_model_folder
from baselines.model import PARAM_GRID
from baselines.train import main
from conftest import ROOT
from octcore.imaging import load_scan, remove_padding


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "hog-lbp-svm"
    cache = tmp_path_factory.mktemp("cache")
    assert main(["--data", "examples/sample", "--out", str(out), "--cache-dir", str(cache)]) == 0
    return out, cache


def test_features_see_a_flattened_band_and_its_mirror(a_scan):
    gray = load_scan(a_scan)
    band = retina_band(gray)
    assert band.shape == (96, 256) and band.max() > 0.3
    pair = extract(gray)
    assert pair.shape[0] == 2 and np.isfinite(pair).all() and not np.allclose(pair[0], pair[1])
    with pytest.raises(ValueError, match="unknown features"):
        extract(gray, kind="sift")


def test_padding_is_removed_and_speckled_tissue_kept(a_scan):
    tissue = load_scan(a_scan)[:200, :300]
    padded = np.hstack([tissue, np.full((200, 60), 0.97, np.float32)])
    cleaned = remove_padding(padded)
    assert (cleaned[:, -58:] == 0).all()
    assert np.array_equal(cleaned[:, :298][tissue[:, :298] < 0.8], tissue[:, :298][tissue[:, :298] < 0.8])


def test_trained_folder_records_the_searched_hyperparameters(trained):
    out, _ = trained
    config = json.loads((out / "config.json").read_text())
    assert config["C"] in PARAM_GRID["C"] and config["gamma_scale"] in PARAM_GRID["gamma_scale"]
    assert 0.25 < config["search"]["cv_accuracy"] <= 1


def test_nystroem_solver_for_large_data_trains_and_reloads(trained, tmp_path, sample):
    _, cache = trained
    out = tmp_path / "nystroem"
    assert main(["--data", "examples/sample", "--out", str(out), "--cache-dir", str(cache),
                 "--solver", "nystroem", "--C", "10", "--gamma-scale", "0.5"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["solver"] == "nystroem" and config["search"]["cv_accuracy"] is None
    proba = load_baseline(out).predict_proba(sorted((sample / "DME").glob("*.jpeg"))[:3])
    assert proba.shape == (3, 4) and np.allclose(proba.sum(axis=1), 1)


def test_trained_folder_reloads_with_identical_predictions(trained, sample):
    out, _ = trained
    assert {p.name for p in out.iterdir()} == {"model.skops", "config.json", "metrics.json", "README.md"}
    scans = sorted((sample / "CNV").glob("*.jpeg"))[:4] + sorted((sample / "NORMAL").glob("*.jpeg"))[:4]
    first, second = load_baseline(out), load_baseline(str(out))
    proba = first.predict_proba(scans)
    assert proba.shape == (8, 4) and np.allclose(proba.sum(axis=1), 1)
    assert np.array_equal(proba, second.predict_proba([p.read_bytes() for p in scans]))
    # The Space's path (probabilities and maps from one band) gives the same probabilities.
    explained, maps = first.explain(scans[0])
    assert np.allclose(explained, proba[0], atol=1e-6) and set(maps) == {"band", "hog", "lbp"}


def test_refit_uses_the_feature_cache(trained, tmp_path):
    out, cache = trained
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*")}
    assert any(p.name.startswith("part-") for p in before)
    assert main(["--data", "examples/sample", "--out", str(tmp_path / "again"), "--cache-dir", str(cache)]) == 0
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*")} == before  # nothing recomputed, nothing rewritten


def test_a_skops_file_with_an_untrusted_type_is_refused(trained, tmp_path):
    out, _ = trained
    from decimal import Decimal

    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    sio.dump({"payload": Decimal(1)}, bad / MODEL_FILE)
    with pytest.raises(UntrustedModelError, match="does not trust"):
        load_baseline(bad)


def test_killed_run_resumes_to_the_same_model_and_metrics(trained, tmp_path, sample):
    """SIGKILL mid-extraction, then the same command again: it reuses the cache parts written so far
    and ends with the model and metrics of the uninterrupted run (the `trained` fixture)."""
    reference, _ = trained
    out, cache = tmp_path / "model", tmp_path / "cache"
    command = [sys.executable, "-m", "baselines.train", "--data", "examples/sample", "--out", str(out),
               "--cache-dir", str(cache), "--cache-every", "16"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while not list(cache.glob("*/part-*.npz")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL and not out.exists()
    parts = list(cache.glob("*/part-*.npz"))
    assert 0 < len(parts) < 12  # 192 scans, 16 per part: stopped mid-way with some work kept

    assert subprocess.run(command, cwd=ROOT, capture_output=True).returncode == 0
    assert set(parts) < set(cache.glob("*/part-*.npz"))  # kept parts reused, the rest added
    for name in ("metrics.json", "config.json"):
        assert json.loads((out / name).read_text()) == json.loads((reference / name).read_text()), name
    scans = sorted(sample.glob("*/*.jpeg"))[::12]
    assert np.array_equal(load_baseline(out).predict_proba(scans), load_baseline(reference).predict_proba(scans))


def test_a_crash_while_saving_leaves_the_previous_model(trained, tmp_path, monkeypatch, a_scan):
    reference, _ = trained
    out = tmp_path / "model"
    shutil.copytree(reference, out)
    before = load_baseline(out).predict_proba([a_scan])
    model = load_baseline(reference).estimator

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", crash)  # sio.dump has written the model; the config write fails
    with pytest.raises(OSError, match="disk full"):
        save_model_folder(out, model, {}, {}, "card")
    monkeypatch.undo()
    assert np.array_equal(load_baseline(out).predict_proba([a_scan]), before)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging folder left behind


def test_pickles_are_never_loaded(trained, tmp_path):
    reference, _ = trained
    folder = tmp_path / "pickled"
    shutil.copytree(reference, folder)
    model = (folder / MODEL_FILE).read_bytes()
    (folder / MODEL_FILE).write_bytes(pickle.dumps({"not": "skops"}))  # a pickle under the skops name
    with pytest.raises(UntrustedModelError, match="not a skops file"):
        load_baseline(folder)
    (folder / MODEL_FILE).unlink()
    (folder / "model.pkl").write_bytes(model)
    with pytest.raises(FileNotFoundError, match="pickle files are never loaded"):
        load_baseline(folder)


def test_bad_data_folder_exits_with_a_message(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "none"), "--out", str(tmp_path / "m")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_model_from_other_feature_settings_is_refused_with_a_message(trained, tmp_path, monkeypatch):
    import baselines.features

    reference, _ = trained
    monkeypatch.setitem(baselines.features.HOG_PARAMS, "orientations", 9)  # as an older version made them
    with pytest.raises(ValueError, match="retrain it"):
        load_baseline(reference)
