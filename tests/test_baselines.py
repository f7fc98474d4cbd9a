"""The classical baseline trains on the bundled scans, saves safely and reloads to identical predictions."""

import json
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from PIL import Image

from baselines.features import FeatureSettings, retina_band, scan_features
from baselines.io import save_model_folder
from baselines.model import PARAM_GRID
from baselines.train import main
from conftest import ROOT, SAMPLE
from models import ModelFormatError, UntrustedModelError, load_model
from models.card import training_summary
from models.classical import MODEL_FILE
from octcore.imaging import DECODE_SIZE, ScanImage, load_scan, read_scan, remove_padding, resize


def train(out: Path, cache: Path, *options: str) -> int:
    """`python -m baselines.train` on the bundled sample, in process."""
    return main(["--data", "examples/sample", "--out", str(out), "--cache-dir", str(cache), *options])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "hog-lbp-svm"
    cache = tmp_path_factory.mktemp("cache")
    assert train(out, cache) == 0
    return out, cache


def test_features_see_a_flattened_band_and_its_mirror(a_scan):
    band = retina_band(read_scan(a_scan), FeatureSettings())
    assert band.shape == (96, 256) and band.max() > 0.3
    pair = scan_features(a_scan, FeatureSettings())
    assert pair.shape[0] == 2 and np.isfinite(pair).all() and not np.allclose(pair[0], pair[1])
    with pytest.raises(ValueError, match="unknown features"):
        FeatureSettings(kind="sift")


def test_two_classes_are_told_apart_by_the_search_and_the_prediction():
    """scikit-learn gives a two-class SVM's decisions as one column: the hyperparameter search (which scores the
    uncalibrated SVM) read it as always the first class."""
    from baselines.model import OCTSVMClassifier, search_hyperparameters

    rng = np.random.default_rng(0)
    y = np.repeat([0, 2], 40)  # e.g. CNV and DRUSEN folders only
    X = (rng.normal(size=(80, 2, 16)) + 3 * (y == 2)[:, None, None]).astype(np.float32)  # (scans, views, features)
    groups = np.arange(80)
    assert search_hyperparameters(X, y, groups, "rbf", {"C": [1.0], "gamma_scale": [0.5]})["cv_accuracy"] > 0.95
    model = OCTSVMClassifier("rbf", C=1.0, calibration_folds=0).fit(X, y)
    assert np.mean(model.predict(X) == y) > 0.95


def test_the_search_scores_only_the_rows_it_is_told_to():
    """Rows trained on but not scored (a scan's speckled copies, where the search is told so): rows whose labels are
    noise lower the CV accuracy when scored, and leave it as the clean rows' alone when not."""
    from baselines.model import search_hyperparameters

    rng = np.random.default_rng(0)
    y = np.concatenate([np.repeat([0, 2], 40), rng.choice([0, 2], 80)])  # 80 scans, then 80 rows of noise labels
    X = (rng.normal(size=(160, 2, 16)) + 3 * (np.arange(160) < 80)[:, None, None] * (y == 2)[:, None, None]).astype(
        np.float32
    )
    groups, grid = np.arange(160) % 80, {"C": [1.0], "gamma_scale": [0.5]}  # a scan and its "copy" one patient
    everything = search_hyperparameters(X, y, groups, "rbf", grid)["cv_accuracy"]
    scans_alone = search_hyperparameters(X, y, groups, "rbf", grid, scored=np.arange(160) < 80)["cv_accuracy"]
    assert scans_alone > 0.9 and everything < 0.8


def test_the_search_tunes_the_solver_that_auto_fits(monkeypatch):
    """'auto' picks the solver by the number of training rows; each search fold holds two thirds of them, so near the
    limit the folds would tune the exact SVM for a model then fitted by Nystroem. The search decides once, for all."""
    import joblib

    import baselines.model as svm

    monkeypatch.setattr(svm, "EXACT_LIMIT", 50)  # 60 training rows: Nystroem for the model, 40 in each fold
    fitted = []
    fit = svm.OCTSVMClassifier.fit
    monkeypatch.setattr(svm.OCTSVMClassifier, "fit", lambda self, *a, **k: fitted.append(fit(self, *a, **k).solver_))
    rng = np.random.default_rng(0)
    y = np.repeat([0, 2], 30)
    X = (rng.normal(size=(60, 2, 16)) + 3 * (y == 2)[:, None, None]).astype(np.float32)
    with joblib.parallel_backend("threading"):  # the folds' fits in this process, where the spy is
        svm.search_hyperparameters(X, y, np.arange(60), "auto", {"C": [1.0], "gamma_scale": [0.5]})
    assert fitted and set(fitted) == {"nystroem"}, fitted


def test_feature_settings_round_trip_through_json():
    settings = FeatureSettings(kind="lbp", sigma=0.0, lbp_scales=((8, 1),))
    assert FeatureSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings


def test_speckled_copies_are_the_same_in_every_run_and_noisier_than_the_scan(a_scan):
    from baselines.features import COPY_SPECKLE, speckled_copy

    scan = read_scan(a_scan)
    assert speckled_copy(scan, 0) is scan
    first, again, second = speckled_copy(scan, 1), speckled_copy(read_scan(a_scan), 1), speckled_copy(scan, 2)
    assert np.array_equal(first.gray, again.gray) and not np.array_equal(first.gray, second.gray)
    assert first.gray.shape == scan.gray.shape and first.name == scan.name
    tissue = (scan.gray > 0.1) & (scan.gray < 0.3)  # where the noise is seldom clipped at white
    ratio = first.gray[tissue] / scan.gray[tissue]
    assert abs(ratio.mean() - 1) < 0.05 and 0.01 < ratio.std() < COPY_SPECKLE[1] * 1.1


def test_the_median_filter_changes_the_features_and_older_folders_keep_theirs(a_scan):
    plain, filtered = (scan_features(a_scan, FeatureSettings(median=m)) for m in (0, 3))
    assert plain.shape == filtered.shape and not np.allclose(plain, filtered)
    saved = FeatureSettings().to_dict()
    saved.pop("median")  # as folders saved before the setting existed
    assert FeatureSettings.from_dict(saved).median == 0


def test_padding_is_removed_and_speckled_tissue_kept(a_scan):
    tissue = load_scan(a_scan)[:200, :300]
    padded = np.hstack([tissue, np.full((200, 60), 0.97, np.float32)])
    cleaned = remove_padding(padded)
    assert (cleaned[:, -58:] == 0).all()
    assert np.array_equal(cleaned[:, :298][tissue[:, :298] < 0.8], tissue[:, :298][tissue[:, :298] < 0.8])


def lower_contrast(gray: np.ndarray, keep: float = 0.6) -> np.ndarray:
    return (gray.mean() + keep * (gray - gray.mean())).astype(np.float32)


def test_the_fill_of_a_dimmer_scan_is_still_found():
    """At 60% of the contrast the white fill is grey: it is found against the scan's own range, so the classical
    pipeline still flattens the retina, not the fill's edge (docs/results.md: 0.358 to 0.895 on validation)."""
    from baselines.features import feature_band

    def zeroed(scan: ScanImage) -> float:
        return float((resize(scan.gray, DECODE_SIZE, Image.Resampling.BOX) != scan.unpadded).mean())

    bands = []
    for path in sorted(SAMPLE.glob("*/*.jpeg")):
        scan = read_scan(path)
        if zeroed(scan) < 0.05:  # little or no fill to find
            continue
        dim = ScanImage(lower_contrast(scan.gray), scan.colour, scan.name)
        assert zeroed(dim) >= zeroed(scan) - 0.01, path.name  # the fill found, now grey
        bands.append([feature_band(s, FeatureSettings()).ravel() for s in (scan, dim)])
        if len(bands) == 8:
            break
    assert len(bands) == 8
    assert min(np.corrcoef(a, b)[0, 1] for a, b in bands) > 0.9  # the same band, at lower contrast


def test_trained_folder_records_the_searched_hyperparameters(trained):
    out, _ = trained
    config = json.loads((out / "config.json").read_text())
    assert config["C"] in PARAM_GRID["C"] and config["gamma_scale"] in PARAM_GRID["gamma_scale"]
    assert 0.25 < config["search"]["cv_accuracy"] <= 1
    # its held-out folds hold the speckled copies too, and the folder and card say so
    assert config["search"]["cv_scored_on"] == "scans and speckled copies"
    card = (out / "README.md").read_text()
    assert "chosen by patient-grouped cross-validation on the training scans and their speckled copies" in card


def test_nystroem_solver_for_large_data_trains_and_reloads(trained, tmp_path, sample):
    _, cache = trained
    out = tmp_path / "nystroem"
    assert train(out, cache, "--solver", "nystroem", "--C", "10", "--gamma-scale", "0.5") == 0
    config = json.loads((out / "config.json").read_text())
    assert config["solver"] == "nystroem" and config["search"]["cv_accuracy"] is None
    proba = load_model(out).predict_proba(sorted((sample / "DME").glob("*.jpeg"))[:3])
    assert proba.shape == (3, 4) and np.allclose(proba.sum(axis=1), 1)


def test_trained_folder_reloads_with_identical_predictions(trained, sample):
    out, _ = trained
    made = "model.skops config.json metrics.json README.md split.json training.json calibration.json"
    assert {p.name for p in out.iterdir()} == {*made.split(), "out_of_scope.safetensors"}
    scans = sorted((sample / "CNV").glob("*.jpeg"))[:4] + sorted((sample / "NORMAL").glob("*.jpeg"))[:4]
    first, second = load_model(out), load_model(str(out))
    assert first.kind == "classical" and first.name == "HOG+LBP SVM"
    proba = first.predict_proba(scans)
    assert proba.shape == (8, 4) and np.allclose(proba.sum(axis=1), 1)
    assert np.array_equal(proba, second.predict_proba([p.read_bytes() for p in scans]))
    # The Space's path (probabilities and maps from one band) gives the same probabilities.
    answer = first.analyse(scans[0])
    assert np.allclose(answer.proba, proba[0], atol=1e-6) and set(answer.maps) == {"band", "hog", "lbp"}


def test_the_trainer_reports_the_test_part_of_the_split_it_saves(trained, sample):
    from octcore.data import discover, load_split

    out, _ = trained
    scans = discover(sample)
    split = load_split(out / "split.json", scans)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == split.count("test") and set(split) == {"train", "val", "test"}
    assert json.loads((out / "config.json").read_text())["n_train"] == split.count("train")


def test_a_given_split_file_is_used_exactly(trained, tmp_path, sample):
    from octcore.data import discover, load_split, patient_split, save_split

    _, cache = trained
    scans = discover(sample)
    mine = patient_split(scans, seed=7)
    save_split(tmp_path / "split.json", scans, mine, seed=7)
    out = tmp_path / "model"
    assert train(out, cache, "--split-file", str(tmp_path / "split.json"), "--C", "10", "--gamma-scale", "0.5") == 0
    assert load_split(out / "split.json", scans) == mine
    assert json.loads((out / "metrics.json").read_text())["n_images"] == mine.count("test")


def test_refit_uses_the_feature_cache(trained, tmp_path):
    out, cache = trained
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*")}
    assert any(p.name.startswith("part-") for p in before)
    assert train(tmp_path / "again", cache) == 0
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*")} == before  # nothing recomputed, nothing rewritten


def test_features_past_the_memory_limit_are_mapped_from_disk_and_the_same(trained, sample, monkeypatch):
    """A whole dataset's features (12 GB at full size with the speckled copies) come back mapped from a file in the
    cache folder instead of held in memory, with the same values; the file goes with the array, and one left by a
    killed process is removed by the next run."""
    import baselines.cache
    from baselines.cache import cached_features
    from octcore.data import discover

    _, cache = trained
    scans = discover(sample)[:12]
    held = cached_features(scans, FeatureSettings(), cache, False, copy=[0] * 6 + [1] * 6)
    monkeypatch.setattr(baselines.cache, "IN_MEMORY_LIMIT", held.nbytes - 1)
    mapped = cached_features(scans, FeatureSettings(), cache, False, copy=[0] * 6 + [1] * 6)
    assert isinstance(mapped, np.memmap) and not isinstance(held, np.memmap)
    assert np.array_equal(mapped, held)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = Path(mapped.filename).with_name(f".assembled-{int(dead.stdout)}-left")
    left.write_bytes(b"killed mid-way")
    assert np.array_equal(cached_features(scans, FeatureSettings(), cache, False, copy=[0] * 6 + [1] * 6), held)
    assert not left.exists()
    del mapped
    assert not list(cache.rglob(".assembled-*"))  # removed with the array: nothing left behind


def test_the_trainer_searches_and_fits_on_mapped_features(trained, tmp_path, monkeypatch):
    """Past the memory limit the trainer's own path works on the mapped features: the search's worker processes
    read them (joblib reopens a mapped array's file by name), and the model is the one trained in memory."""
    import baselines.cache

    reference, cache = trained
    monkeypatch.setattr(baselines.cache, "IN_MEMORY_LIMIT", 0)
    out = tmp_path / "mapped"
    assert train(out, cache, "--split-file", str(reference / "split.json")) == 0
    metrics = [json.loads((folder / "metrics.json").read_text()) for folder in (reference, out)]
    assert metrics[0] == metrics[1]
    assert not list(cache.rglob(".assembled-*"))


def test_speckled_copies_are_trained_on_cached_and_said_on_the_card(trained, tmp_path, capsys):
    """The default trains on one speckled copy of each training scan (and only those); --speckle-copies 0 on none."""
    reference, cache = trained
    n_train = json.loads((reference / "config.json").read_text())["n_train"]
    fresh = tmp_path / "cache"  # the module's cache also holds copies of other tests' training parts
    assert train(tmp_path / "default", fresh, "--split-file", str(reference / "split.json"), "--C", "10") == 0
    copies = [key for part in fresh.rglob("part-*.npz") for key in np.load(part)["keys"] if "speckled copy" in key]
    assert len(copies) == n_train and all(key.endswith("speckled copy 1") for key in copies)
    assert json.loads((reference / "config.json").read_text())["speckle_copies"] == 1
    card = (reference / "README.md").read_text()
    assert "seen once with random multiplicative speckle added" in card and "without these copies" in card
    out = tmp_path / "no-copies"
    capsys.readouterr()
    assert train(out, cache, "--speckle-copies", "0", "--C", "10", "--gamma-scale", "0.5") == 0
    assert f"SVM on {n_train:,} scans in" in capsys.readouterr().out  # the SVM saw each training scan once
    assert json.loads((out / "config.json").read_text())["speckle_copies"] == 0
    assert "speckle" not in (out / "README.md").read_text()
    # both given: nothing was searched, and neither the folder nor the card says otherwise
    assert json.loads((out / "config.json").read_text())["search"]["cv_scored_on"] is None
    assert "C=10, gamma=0.5/d, both given for this run, not searched" in (out / "README.md").read_text()
    # Side by side, the comparison says how each was trained: the two rows do not look alike but for their figures.
    from compare.__main__ import main as compare

    split = ["--split-file", str(reference / "split.json")]
    report = tmp_path / "report"
    arguments = ["--data", "examples/sample", *split, "--out", str(report), "--model", str(reference)]
    assert compare([*arguments, "--model", str(out), "--explain", "0"]) == 0
    rows = {r.split(" | ")[0]: r for r in (report / "report.md").read_text().splitlines() if " | classical | " in r}
    assert f"on {n_train} training scans and 1 speckled copy of each" in rows["| hog-lbp-svm"]
    assert "cross-validation on the training scans and their speckled copies" in rows["| hog-lbp-svm"]
    assert f"on {n_train} training scans, no speckled copies" in rows["| no-copies"]
    assert "C=10, gamma=0.5/d, both given for this run, not searched" in rows["| no-copies"]
    assert train(out, cache, "--speckle-copies", "2", "--C", "10", "--gamma-scale", "0.5") == 0
    assert f"SVM on {n_train:,} scans and {2 * n_train:,} speckled copies in" in capsys.readouterr().out
    assert training_summary(out).endswith(f"on {n_train} training scans and 2 speckled copies of each")
    with pytest.raises(SystemExit):
        train(tmp_path / "bad", cache, "--speckle-copies", "-1")


def test_the_detector_measures_distance_from_the_training_scans_not_their_copies(trained, sample):
    """The SVM learns the speckled copies; the out-of-scope detector is fitted on the training scans alone
    (docs/results.md, *The classical detector and the speckled copies*): fitted again here on them, it is the saved
    one."""
    from baselines.cache import cached_features
    from models.classical import scaled_features
    from models.scope import fit_detector
    from octcore.data import discover, split_scans

    out, cache = trained
    model = load_model(out)
    scans = discover(sample)
    split = split_scans(scans, str(out / "split.json"), progress=False)
    rows = split.indices("train")
    features = scaled_features(
        model.estimator, cached_features([scans[i] for i in rows], model.settings, cache, False)
    )
    labels = np.array([scans[i].label_id for i in rows])
    refit = fit_detector("classical", features, labels, split.groups[rows])
    saved = model.calibration.out_of_scope
    assert saved.class_means.shape == refit.class_means.shape
    assert np.allclose(saved.class_means, refit.class_means, rtol=1e-4, atol=1e-5)
    assert np.allclose(saved.precision, refit.precision, rtol=1e-3, atol=1e-3)


def test_a_skops_file_with_an_untrusted_type_is_refused(trained, tmp_path):
    out, _ = trained
    from decimal import Decimal

    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    sio.dump({"payload": Decimal(1)}, bad / MODEL_FILE)
    with pytest.raises(UntrustedModelError, match="does not trust"):
        load_model(bad)


def test_killed_run_resumes_to_the_same_model_and_metrics(trained, tmp_path, sample):
    """SIGKILL while the third cache part is being written (after its bytes, before its rename), then the
    same command again: it reuses the two parts written whole and ends with the model and metrics of
    the uninterrupted run (the `trained` fixture)."""
    reference, _ = trained
    out, cache = tmp_path / "model", tmp_path / "cache"
    arguments = [
        "baselines.train",
        "--data",
        "examples/sample",
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "--cache-every",
        "16",
    ]
    killed = subprocess.run(
        [sys.executable, "tests/killer.py", "numpy:savez", "3", *arguments],
        cwd=ROOT,
        capture_output=True,
        start_new_session=True,
    )
    assert killed.returncode == -signal.SIGKILL and not out.exists()
    parts = list(cache.glob("*/part-*.npz"))
    assert len(parts) == 2 and len(list(cache.glob("*/.part-*"))) == 1  # the third never renamed in

    assert subprocess.run([sys.executable, "-m", *arguments], cwd=ROOT, capture_output=True).returncode == 0
    assert set(parts) < set(cache.glob("*/part-*.npz"))  # kept parts reused, the rest added
    for name in ("metrics.json", "config.json"):
        assert json.loads((out / name).read_text()) == json.loads((reference / name).read_text()), name
    scans = sorted(sample.glob("*/*.jpeg"))[::12]
    assert np.array_equal(load_model(out).predict_proba(scans), load_model(reference).predict_proba(scans))


def test_a_crash_while_saving_leaves_the_previous_model(trained, tmp_path, monkeypatch, a_scan):
    reference, _ = trained
    out = tmp_path / "model"
    shutil.copytree(reference, out)
    before = load_model(out).predict_proba([a_scan])
    model = load_model(reference).estimator

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", crash)  # sio.dump has written the model; the config write fails
    with pytest.raises(OSError, match="disk full"):
        save_model_folder(out, model, {}, {})
    monkeypatch.undo()
    assert np.array_equal(load_model(out).predict_proba([a_scan]), before)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging folder left behind


def test_pickles_are_never_loaded(trained, tmp_path):
    reference, _ = trained
    folder = tmp_path / "pickled"
    shutil.copytree(reference, folder)
    model = (folder / MODEL_FILE).read_bytes()
    (folder / MODEL_FILE).write_bytes(pickle.dumps({"not": "skops"}))  # a pickle under the skops name
    with pytest.raises(UntrustedModelError, match="not a skops file"):
        load_model(folder)
    (folder / MODEL_FILE).unlink()
    (folder / "model.pkl").write_bytes(model)
    with pytest.raises(ModelFormatError, match="pickle files are never loaded"):
        load_model(folder)


def test_bad_data_folder_exits_with_a_message(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "none"), "--out", str(tmp_path / "m")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("change", ["older folder", "older version", "other settings"])
def test_a_model_this_version_cannot_reproduce_is_refused_with_a_message(trained, tmp_path, change):
    reference, _ = trained
    folder = tmp_path / "model"
    shutil.copytree(reference, folder)
    config = json.loads((folder / "config.json").read_text())
    if change == "older folder":  # as versions before typed settings saved them
        config.pop("format")
        config["features"] = {"kind": "hog+lbp", "flatten": True, "sigma": 0.7}
    elif change == "older version":
        config["features"]["version"] = 1
    else:  # settings that make another number of features than the estimator was fitted on
        config["features"]["hog_orientations"] = 9
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFormatError, match="retrain it with python -m baselines.train"):
        load_model(folder)


def test_the_model_sees_the_same_features_in_training_and_in_the_space(trained, sample):
    """One decode for both: the features the trainer cached for a file equal what the Space computes
    from the uploaded bytes of that file."""
    from baselines.cache import cached_features
    from octcore.data import discover
    from octcore.imaging import ScanImage
    from space.uploads import iter_upload

    out, cache = trained
    model = load_model(out)
    scans = discover(sample)[::50]
    training = cached_features(scans, model.settings, cache, progress=False)
    for scan, features in zip(scans, training):
        (frame,) = iter_upload(scan.path.read_bytes(), scan.path.name)
        np.testing.assert_array_equal(model.features([ScanImage(frame.gray, frame.colour)])[0], features)


def test_the_card_follows_the_hub_rules_and_names_no_local_path(trained):
    from huggingface_hub import ModelCard

    from conftest import assert_no_local_paths
    from octcore.hub import card_problems

    out, _ = trained
    assert card_problems((out / "README.md").read_text()) == []
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "sklearn" and card.data.pipeline_tag == "image-classification"
    assert {r.metric_type for r in card.data.eval_results} == {"accuracy", "f1", "sensitivity", "specificity"}
    assert 'load_model("USER/MODEL")' in card.text and "skops" in card.text
    assert_no_local_paths(out, ["README.md", "config.json", "training.json", "metrics.json", "split.json"])


def test_push_uploads_the_folder_with_a_card_naming_the_repo(trained, tmp_path, fake_hub):
    from models.push import push_model

    out, _ = trained
    folder = tmp_path / "hog-lbp-svm"
    shutil.copytree(out, folder)
    files = push_model(folder, "someone/oct-hog-lbp-svm", api=fake_hub)
    assert {"model.skops", "config.json", "README.md", "split.json", "metrics.json"} <= set(files)
    assert fake_hub.uploaded["someone/oct-hog-lbp-svm"] == files
    assert 'load_model("someone/oct-hog-lbp-svm")' in (folder / "README.md").read_text()


def test_rbf_kernel_keeps_the_norms_of_one_array_only_and_never_saves_them():
    from scipy.spatial.distance import cdist

    from baselines.model import RBFKernel

    rng = np.random.default_rng(0)
    a, b = rng.random((3, 50), dtype=np.float32), rng.random((20, 50), dtype=np.float32)
    kernel = RBFKernel(0.05)
    for other in (b, b, b + 1, b[::-1].copy()):  # the same array again, then new ones
        np.testing.assert_allclose(kernel(a, other), np.exp(-0.05 * cdist(a, other, "sqeuclidean")), rtol=1e-5)
    kernel.rows = np.array([1, 4, 5, 19])  # support vectors: their columns alone, the rest 0
    expected = np.zeros((3, 20))
    expected[:, kernel.rows] = np.exp(-0.05 * cdist(a, b[kernel.rows], "sqeuclidean"))
    np.testing.assert_allclose(kernel(a, b), expected, rtol=1e-5)
    np.testing.assert_allclose(kernel(b, b), np.exp(-0.05 * cdist(b, b, "sqeuclidean")), rtol=1e-5)  # a fit: whole
    assert kernel.rows is None  # and the support vectors of the fit before are forgotten
    restored = sio.loads(sio.dumps(kernel), trusted=["baselines.model.RBFKernel"])
    assert vars(restored) == {"gamma": 0.05, "rows": None}


def test_the_svm_reads_only_its_support_vectors_and_predicts_as_with_every_row(trained, sample):
    from models.classical import load_classical

    model = load_classical(trained[0])
    features = model.features(sorted(sample.glob("*/*.jpeg"))[::16])
    svm = model.estimator._decisions()[-1]
    assert svm.kernel.rows is None  # not saved: a loaded model learns them at its first prediction
    fast = model.estimator.predict_proba(features)
    assert svm.kernel.rows is svm.support_ and len(svm.support_) < svm.shape_fit_[0]
    svm.kernel.rows = None  # model_ itself does not set them: every training row is read
    every_row = model.estimator.model_.predict_proba(features.reshape(-1, features.shape[-1]))
    np.testing.assert_allclose(fast, every_row.reshape(len(features), 2, -1).mean(axis=1), atol=1e-6)


def test_the_projects_hog_is_skimages_on_real_scans(sample):
    from dataclasses import replace

    from skimage.feature import hog

    from baselines.features import feature_band, grid_hog, hog_features, shifted_hog_blocks

    settings = FeatureSettings()
    unshifted = replace(settings, grid_shifts=((0, 0),))
    for path in sorted(sample.glob("*/*.jpeg"))[::48]:
        small = feature_band(read_scan(path), settings)
        np.testing.assert_allclose(grid_hog(small, unshifted), hog_features(small, settings), atol=1e-6)
        blocks = hog(small, **settings.hog_params, feature_vector=False)  # what hog_map draws
        np.testing.assert_allclose(shifted_hog_blocks(small, unshifted)[0], blocks, atol=1e-6)


@pytest.mark.parametrize("source", ["./hog-svm", "runs/hog svm", "owner/name/extra", "owner/-name"])
def test_a_source_that_is_no_folder_and_no_hub_id_is_refused_without_asking_the_hub(source, monkeypatch):
    """A missing folder whose name cannot be a Hub repo id (a relative path, a space, two slashes) is refused as
    neither, by the same rule the trainers use (octcore.hub.names_hub_repo), without a request to the Hub."""
    import huggingface_hub

    def no_hub(*args, **kwargs):
        raise AssertionError("the Hub was asked")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_hub)
    with pytest.raises(ModelFormatError, match="neither a model folder nor a Hub repo id"):
        load_model(source)
