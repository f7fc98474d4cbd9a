"""The classical baseline trains on the bundled scans, saves safely and reloads to identical predictions."""
import numpy as np
import pytest
import skops.io as sio

from baselines.features import extract, retina_band
from baselines.io import MODEL_FILE, UntrustedModelError, load_baseline
from baselines.train import main
from octcore.imaging import load_scan


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


def test_trained_folder_reloads_with_identical_predictions(trained, sample):
    out, _ = trained
    assert {p.name for p in out.iterdir()} == {"model.skops", "config.json", "metrics.json", "README.md"}
    scans = sorted((sample / "CNV").glob("*.jpeg"))[:4] + sorted((sample / "NORMAL").glob("*.jpeg"))[:4]
    first, second = load_baseline(out), load_baseline(str(out))
    proba = first.predict_proba(scans)
    assert proba.shape == (8, 4) and np.allclose(proba.sum(axis=1), 1)
    assert np.array_equal(proba, second.predict_proba([p.read_bytes() for p in scans]))


def test_refit_uses_the_feature_cache(trained, tmp_path):
    out, cache = trained
    before = {p: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert main(["--data", "examples/sample", "--out", str(tmp_path / "again"), "--cache-dir", str(cache)]) == 0
    assert {p: p.stat().st_mtime_ns for p in cache.iterdir()} == before  # nothing recomputed, nothing rewritten


def test_a_skops_file_with_an_untrusted_type_is_refused(trained, tmp_path):
    out, _ = trained
    import shutil
    from decimal import Decimal

    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    sio.dump({"payload": Decimal(1)}, bad / MODEL_FILE)
    with pytest.raises(UntrustedModelError, match="does not trust"):
        load_baseline(bad)


def test_bad_data_folder_exits_with_a_message(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "none"), "--out", str(tmp_path / "m")]) == 2
    assert "does not exist" in capsys.readouterr().err
