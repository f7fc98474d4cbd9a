"""Calibration and out-of-scope detection: fitted as the trainers fit them, saved and loaded with a model."""

import numpy as np

from models.scope import ACCEPT, Calibration, OutOfScope, fit_calibration, fit_temperature, softmax, unit


def test_the_fitted_temperature_undoes_a_known_overconfidence():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(4000, 4))
    labels = np.array([rng.choice(4, p=p) for p in softmax(logits, 2.5)])  # the truth is 2.5 times softer
    assert abs(fit_temperature(logits, labels) - 2.5) < 0.2
    assert abs(fit_temperature(logits / 2.5, labels) - 1.0) < 0.1  # an already calibrated model keeps T near 1


def test_a_temperature_that_worsens_the_validation_calibration_is_not_kept():
    rng = np.random.default_rng(3)
    features, labels = rng.normal(size=(400, 8)), np.repeat(np.arange(4), 100)

    def calibration(val_logits, val_labels):
        return fit_calibration(features, labels, val_logits, features[:80], val_labels, "classical", "test")

    overconfident = rng.normal(0, 3, size=(2000, 4))
    truth = np.array([rng.choice(4, p=p) for p in softmax(overconfident, 2.5)])
    assert abs(calibration(overconfident, truth).temperature - 2.5) < 0.3  # helps: kept
    # Ten right answers at 90% (under-confident) and two wrong at 99%: the likelihood's temperature softens every
    # answer for the sake of the two, so the ten look even less sure, and the calibration error grows.
    logits = np.array([[3.3, 0, 0, 0]] * 10 + [[5.7, 0, 0, 0]] * 2)
    fitted = calibration(logits, np.array([0] * 10 + [1] * 2))
    ece = fitted.report["ece_validation"]
    assert fitted.report["fitted_temperature"] > 1.5 and ece["with_fitted_temperature"] > ece["before"]
    assert fitted.temperature == 1.0 and ece["after"] == ece["before"]


def test_a_validation_split_the_model_gets_all_right_does_not_sharpen_it():
    """Every validation scan right with a margin: the likelihood falls without end as the temperature shrinks, so
    the fit ends at the search's bound; the model keeps its own probabilities rather than being made certain."""
    rng = np.random.default_rng(4)
    features, labels = rng.normal(size=(400, 8)), np.repeat(np.arange(4), 100)
    val_labels = np.repeat(np.arange(4), 5)
    logits = np.eye(4)[val_labels] * 3 + rng.normal(0, 0.3, size=(20, 4))  # right, at about 85%
    fitted = fit_calibration(features, labels, logits, features[:20], val_labels, "vit", "test")
    assert fitted.report["fitted_temperature"] < 0.06  # the fit alone would make every answer certain
    assert fitted.report["ece_validation"]["with_fitted_temperature"] < fitted.report["ece_validation"]["before"]
    assert fitted.temperature == 1.0


def test_a_temperature_set_by_one_wrong_validation_scan_is_not_kept():
    """One scan wrong, by a small margin, and the rest right at about 85%: the likelihood shrinks the temperature
    until that one scan's loss stops it, which makes the right answers certain and lowers the validation ECE, but
    one scan's margin is no measure of how sure the model may be (the sixth round's ViT was sharpened 5.5-fold so)."""
    rng = np.random.default_rng(5)
    features, labels = rng.normal(size=(400, 8)), np.repeat(np.arange(4), 100)
    val_labels = np.repeat(np.arange(4), 5)
    logits = np.eye(4)[val_labels] * 3 + rng.normal(0, 0.3, size=(20, 4))
    logits[0] = [0.0, 0.3, 0.0, 0.0]  # a CNV scan read as DME, nearly a tie
    fitted = fit_calibration(features, labels, logits, features[:20], val_labels, "vit", "test")
    ece = fitted.report["ece_validation"]
    assert fitted.report["fitted_temperature"] < 0.5 and ece["with_fitted_temperature"] < ece["before"]
    assert fitted.report["validation_scans_wrong"] == 1
    assert fitted.temperature == 1.0 and ece["after"] == ece["before"]
    logits[1] = [0.0, 0.0, 0.3, 0.0]  # a second one wrong: the fit is no longer one scan's
    refitted = fit_calibration(features, labels, logits, features[:20], val_labels, "vit", "test")
    assert refitted.report["validation_scans_wrong"] == 2
    assert refitted.temperature == refitted.report["fitted_temperature"] < 1.0


def test_scans_far_from_every_class_are_flagged_and_the_threshold_accepts_its_share():
    rng = np.random.default_rng(1)
    centres = rng.normal(0, 5, size=(4, 32))
    labels = np.repeat(np.arange(4), 200)
    train = centres[labels] + rng.normal(size=(800, 32))
    validation = centres[labels[::4]] + rng.normal(size=(200, 32))
    scope = OutOfScope.fit(train, labels, components=16).with_threshold(validation)
    assert abs(np.mean(scope.score(validation) <= scope.threshold) - ACCEPT) < 0.01
    far = rng.normal(0, 5, size=(100, 32)) + 20
    assert np.mean(scope.score(far) > scope.threshold) == 1.0
    new_inliers = centres[labels[1::4]] + rng.normal(size=(200, 32))
    assert np.mean(scope.score(new_inliers) > scope.threshold) < 0.12


def test_cross_fitted_detectors_flag_their_own_training_scans_as_rarely_as_new_ones():
    """Many more features than training scans, as the classical model has: one detector's principal axes follow its
    training scans' own noise, so it flags them far more often than new scans; cross-fitted by patient, about as
    often. Both keep flagging scans far from every class."""
    rng = np.random.default_rng(5)
    centres = rng.normal(0, 1, size=(4, 2000))
    labels, patients = np.repeat(np.arange(4), 60), np.arange(240) // 2  # two scans per patient
    train = centres[labels] + rng.normal(size=(240, 2000))
    validation = centres[labels[::2]] + rng.normal(size=(120, 2000))
    far = rng.normal(0, 1, size=(50, 2000)) * 2
    single = OutOfScope.fit(train, labels, components=32).with_threshold(validation)
    crossed = OutOfScope.fit(train, labels, components=32, folds=3, groups=patients).with_threshold(validation)
    assert len(single.mean) == 1 and len(crossed.mean) == 3
    assert np.mean(single.score(train) > single.threshold) > 0.5  # the defect cross-fitting removes
    assert np.mean(crossed.score(train) > crossed.threshold) < 0.15
    assert np.mean(crossed.score(far) > crossed.threshold) == 1.0


def test_cross_fitting_on_a_few_scans_and_its_fallback():
    """40 training scans: the folds allow fewer axes than asked, as many for every detector; a class of fewer patients
    than folds gets one detector, and a warning says so."""
    import pytest

    rng = np.random.default_rng(6)
    labels = np.repeat(np.arange(4), 10)
    features = rng.normal(size=(40, 500)) + labels[:, None]
    crossed = OutOfScope.fit(features, labels, components=32, folds=3)
    assert crossed.components.shape[0] == 3 and crossed.components.shape[1] < 32
    assert np.isfinite(crossed.score(features)).all()
    patients = np.r_[np.arange(30), np.repeat([30, 31], 5)]  # the last class: two patients, five scans each
    with pytest.warns(UserWarning, match="one out-of-scope detector"):
        single = OutOfScope.fit(features, labels, components=32, folds=3, groups=patients)
    assert len(single.mean) == 1


def squared(gaps: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distances of rows of gaps."""
    return (gaps @ precision * gaps).sum(axis=1)


def test_the_relative_distance_is_the_nearest_class_less_the_background_and_survives_saving(tmp_path):
    """Relative (Ren et al. 2021): squared distance to the nearest class mean less the squared distance to one
    Gaussian over all training scans, per detector, the smallest over detectors; saved and loaded with the model."""
    rng = np.random.default_rng(7)
    labels = np.repeat(np.arange(4), 60)
    features = rng.normal(size=(240, 12)) + 3 * np.eye(12)[labels]
    new = rng.normal(size=(30, 12)) + 3 * np.eye(12)[rng.integers(0, 4, 30)]
    for folds in (1, 3):
        plain = OutOfScope.fit(features, labels, components=6, folds=folds)
        scope = OutOfScope.fit(features, labels, components=6, folds=folds, background_weight=1.0)
        scope = scope.with_threshold(features)
        assert scope.relative and not plain.relative
        by_hand = []
        for f in range(folds):
            z = (unit(new) - scope.mean[f]) @ scope.components[f].T
            nearest = np.min([squared(z - m, scope.precision[f]) for m in scope.class_means[f]], axis=0)
            by_hand.append(nearest - squared(z - scope.background_mean[f], scope.background_precision[f]))
        np.testing.assert_allclose(scope.score(new), np.min(by_hand, axis=0), rtol=1e-4, atol=1e-4)
        if folds == 1:  # the same detector, without the background: its distance to the nearest class
            nearest = np.min([squared(z - m, plain.precision[0]) for m in plain.class_means[0]], axis=0)
            np.testing.assert_allclose(plain.score(new), np.sqrt(nearest), rtol=1e-4)
        Calibration(1.0, scope).save(tmp_path)
        loaded = Calibration.load(tmp_path).out_of_scope
        assert loaded.relative
        np.testing.assert_allclose(loaded.score(new), scope.score(new), rtol=1e-6)
        assert loaded.threshold == scope.threshold


def test_a_negative_background_weight_is_refused():
    import pytest

    with pytest.raises(ValueError, match="background_weight"):
        OutOfScope.fit(np.eye(8), np.arange(8) % 4, components=2, background_weight=-0.5)


def test_the_relative_distance_keeps_scans_of_a_new_condition_apart_where_every_retina_varies():
    """A direction in which every training scan varies a lot (as brightness or tilt do) hides a new condition from
    the distance to the nearest class, whose covariance it dominates, less from the relative one; every weight accepts
    its share of new in-scope scans, and one below 1 still flags images far from every class."""
    rng = np.random.default_rng(8)
    d, n = 40, 800
    labels = np.repeat(np.arange(4), n // 4)
    centres = np.zeros((5, d))
    centres[np.arange(4), np.arange(4)] = 4.0
    centres[4, :4] = 2.0  # a fifth condition between the four, as drusen sit between NORMAL and the others

    def scans(classes: np.ndarray) -> np.ndarray:
        nuisance = rng.normal(0, 6, size=(len(classes), 1)) * np.r_[np.zeros(4), np.ones(d - 4)] / np.sqrt(d - 4)
        return 10 + centres[classes] + rng.normal(size=(len(classes), d)) + nuisance * 10

    train, validation = scans(labels), scans(labels[::4])
    unseen, new_inliers = scans(np.full(200, 4)), scans(labels[1::4])
    truth = np.r_[np.zeros(len(new_inliers)), np.ones(len(unseen))]
    from sklearn.metrics import roc_auc_score

    far = train - 20 * (centres[4] > 0)  # far off every class, and off the background in the same measure
    auroc, far_flagged = {}, {}
    for weight in (0.0, 0.5, 1.0):
        scope = OutOfScope.fit(train, labels, components=16, unit_length=False, background_weight=weight)
        scope.with_threshold(validation)
        auroc[weight] = roc_auc_score(truth, np.r_[scope.score(new_inliers), scope.score(unseen)])
        far_flagged[weight] = np.mean(scope.score(far) > scope.threshold)
        assert np.mean(scope.score(new_inliers) > scope.threshold) < 0.12
    assert auroc[0.0] + 0.05 < auroc[0.5] < auroc[1.0], auroc
    # at Ren et al.'s weight such an image can cancel out; below it keeps a part of its distance
    assert far_flagged[0.0] == far_flagged[0.5] == 1.0 and far_flagged[1.0] < 0.8, far_flagged


def test_calibration_is_saved_and_loaded_with_the_model(tmp_path):
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(4), 50)
    features = rng.normal(size=(200, 8)) + labels[:, None]
    scope = OutOfScope.fit(features, labels).with_threshold(features)
    Calibration(1.7, scope, {"note": "test"}).save(tmp_path)
    loaded = Calibration.load(tmp_path)
    assert loaded.temperature == 1.7 and loaded.report["note"] == "test"
    np.testing.assert_array_equal(loaded.out_of_scope.score(features), scope.score(features))
    crossed = OutOfScope.fit(features, labels, folds=3).with_threshold(features)
    Calibration(1.0, crossed).save(tmp_path)
    np.testing.assert_array_equal(Calibration.load(tmp_path).out_of_scope.score(features), crossed.score(features))
    # a folder saved before cross-fitting holds one detector's arrays without their leading axis
    from safetensors.numpy import save_file

    from models.scope import SCOPE_FILE

    Calibration(1.7, scope).save(tmp_path)
    save_file({name: array[0] for name, array in scope.arrays().items()}, tmp_path / SCOPE_FILE)
    np.testing.assert_array_equal(Calibration.load(tmp_path).out_of_scope.score(features), scope.score(features))
    assert Calibration.load(tmp_path / "elsewhere").temperature == 1.0  # a folder without one: used as it is


def test_a_trained_model_applies_its_saved_calibration(small_baseline, sample):
    """Without calibration files a model's probabilities are its own; with a calibration saved beside it,
    the loaded model applies the temperature and scores every scan."""
    import shutil

    from models import load_model
    from models.scope import CALIBRATION_FILE, SCOPE_FILE

    folder = small_baseline.parent / "recalibrated"
    shutil.copytree(small_baseline, folder, ignore=shutil.ignore_patterns(CALIBRATION_FILE, SCOPE_FILE))
    scans = sorted(sample.glob("*/*.jpeg"))[::8]
    plain = load_model(folder)
    logits, features = plain.embed(scans)
    assert plain.classify(scans).out_of_scope is None
    Calibration(2.0, OutOfScope.fit(features, np.arange(len(scans)) % 4).with_threshold(features)).save(folder)
    calibrated = load_model(folder).classify(scans)
    np.testing.assert_allclose(calibrated.proba, softmax(logits, 2.0))
    assert calibrated.out_of_scope.shape == (len(scans),) and calibrated.flagged.sum() <= 2  # 5% of 24, rounded up


def test_a_large_training_split_is_fitted_by_parts_and_its_axes_from_a_subsample(monkeypatch):
    """The full dataset's classical features are fitted a part at a time and the principal axes come from at most
    PCA_ROWS scans: the same mean as the whole array's, and nearly the same distances as axes from every scan."""
    import models.scope

    rng = np.random.default_rng(4)
    centres = rng.normal(0, 5, size=(4, 32))
    labels = np.repeat(np.arange(4), 2500)  # 10,000 scans: three parts of rows
    train = (centres[labels] + rng.normal(size=(10_000, 32))).astype(np.float32)
    whole = OutOfScope.fit(train, labels, components=3)
    unit = train / np.linalg.norm(train.astype(np.float64), axis=1, keepdims=True)
    np.testing.assert_allclose(whole.mean[0], unit.mean(axis=0), atol=1e-6)
    monkeypatch.setattr(models.scope, "PCA_ROWS", 2000)
    sampled = OutOfScope.fit(train, labels, components=3)
    probe = np.concatenate([centres[labels[::50]] + rng.normal(size=(200, 32)), rng.normal(0, 5, size=(100, 32)) + 20])
    assert np.corrcoef(whole.score(probe), sampled.score(probe))[0, 1] > 0.99
    # Larger still, the leading axes come from a randomized SVD: the same subspace as the exact one's.
    monkeypatch.setattr(models.scope, "EXACT_SVD_VALUES", 1000)
    randomized = OutOfScope.fit(train, labels, components=3)
    cosines = np.linalg.svd(randomized.components[0] @ sampled.components[0].T, compute_uv=False)
    assert cosines.min() > 0.999
    np.testing.assert_allclose(randomized.score(probe), sampled.score(probe), rtol=1e-3)


def test_a_damaged_calibration_file_is_a_clear_error(small_baseline, tmp_path):
    import shutil

    import pytest

    from models import ModelFormatError, load_model
    from models.scope import CALIBRATION_FILE

    folder = tmp_path / "damaged"
    shutil.copytree(small_baseline, folder)
    (folder / CALIBRATION_FILE).write_text('{"temperature": 1.')  # cut off mid-write
    with pytest.raises(ModelFormatError, match=f"{CALIBRATION_FILE} is not valid JSON"):
        load_model(folder)


def test_a_classical_model_judges_its_own_training_scans_as_it_judges_new_ones(small_baseline, sample):
    """Real scans: the small HOG+LBP model's detector was fitted on 64 bundled scans (9,504 features each). One
    detector flagged most of them (the quick start's Space withheld half the bundled scans); cross-fitted, about
    as few as of scans it never saw."""
    from models import load_model
    from octcore.data import discover

    scans = [s.path for s in discover(sample)]
    model = load_model(small_baseline)
    trained, new = (model.classify(part).flagged.mean() for part in (scans[::3][:64], scans[2::3][:64]))
    assert trained <= new + 0.1
