"""The shared metrics against values worked out by hand, and the plots a report shows."""

import numpy as np
import pytest
from PIL import Image

from octcore.labels import penalty_matrix
from octcore.metrics import evaluate, weighted_aucs
from octcore.plots import save_report_plots

# CNV=0, DME=1, DRUSEN=2, NORMAL=3. Three errors: CNV->DME, DRUSEN->NORMAL, NORMAL->CNV.
Y_TRUE = np.array([0, 0, 1, 1, 2, 2, 3, 3])
Y_PRED = np.array([0, 1, 1, 1, 2, 3, 3, 0])


def proba_for(pred: np.ndarray, confidence: float = 0.7) -> np.ndarray:
    proba = np.full((len(pred), 4), (1 - confidence) / 3)
    proba[np.arange(len(pred)), pred] = confidence
    return proba


@pytest.fixture
def report():
    return evaluate(Y_TRUE, proba_for(Y_PRED), patient_ids=[f"p{i}" for i in range(8)], n_boot=200)


def test_headline_figures_match_hand_computation(report):
    assert report["accuracy"] == pytest.approx(5 / 8)
    # per-class F1: CNV 1/2, DME 4/5, DRUSEN 2/3, NORMAL 1/2
    assert report["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3 + 0.5) / 4)
    assert report["confusion_matrix"] == [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 1, 1], [1, 0, 0, 1]]


def test_per_class_rates_match_hand_computation(report):
    dme, drusen = report["per_class"]["DME"], report["per_class"]["DRUSEN"]
    assert (dme["sensitivity"], dme["specificity"], dme["precision"]) == pytest.approx((1.0, 5 / 6, 2 / 3))
    assert (drusen["sensitivity"], drusen["specificity"], drusen["precision"]) == pytest.approx((0.5, 1.0, 1.0))
    assert report["per_class"]["CNV"]["support"] == 2


def test_referral_weighting_and_calibration_match_hand_computation(report):
    urgent = report["urgent_referral"]
    assert urgent["sensitivity"] == 1.0 and urgent["specificity"] == pytest.approx(3 / 4)
    # urgent score 0.8 for the 5 scans called CNV/DME, 0.2 otherwise: 14 of 16 pairs ranked right,
    # counting a tie as half
    assert urgent["auc"] == pytest.approx(14 / 16)
    # penalties: same level 1 + under-referral by one level 2 + over-referral 1 = 4 over 8 scans,
    # scaled by the worst (4)
    assert penalty_matrix()[0, 3] == 4 and report["weighted_error"] == pytest.approx(4 / 8 / 4)
    assert report["ece"] == pytest.approx(abs(5 / 8 - 0.7))


def test_intervals_hold_the_estimate(report):
    for name in ("accuracy", "macro_f1", "weighted_error"):
        low, high = report["ci95"][name]
        assert low <= report[name] <= high
    low, high = report["ci95"]["accuracy"]
    assert 0 <= low < 5 / 8 < high <= 1


def test_bootstrap_resamples_patients_not_images():
    # Two patients, 50 scans each: one patient always right, the other always wrong.
    y = np.zeros(100, dtype=int)
    pred = np.array([0] * 50 + [1] * 50)
    by_patient = evaluate(y, proba_for(pred), patient_ids=["a"] * 50 + ["b"] * 50, n_boot=500)
    by_image = evaluate(y, proba_for(pred), patient_ids=None, n_boot=500)
    patient_width = np.diff(by_patient["ci95"]["accuracy"])[0]
    image_width = np.diff(by_image["ci95"]["accuracy"])[0]
    assert patient_width > 0.9 and image_width < 0.3
    assert by_patient["bootstrap"]["unit"] == "patient" and by_image["bootstrap"]["unit"] == "image"


def test_the_bootstraps_aucs_are_scikit_learns():
    """weighted_aucs, the bootstrap's thousand AUCs at once (in chunks of rows), gives what roc_auc_score gives for
    each resample's weights, per scan or per patient: with tied scores, scans weighed zero, and NaN where a
    resample holds one class only."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    truth = rng.random(120) < 0.4
    for score in (rng.random(120) + truth * 0.3, np.round(rng.random(120) + truth * 0.3, 1)):  # the second with ties
        weights = rng.multinomial(120, np.full(120, 1 / 120), size=200).astype(float)  # as the bootstrap draws them
        weights[0] = truth  # a resample of positives alone
        aucs = weighted_aucs(truth, score, weights)
        assert np.isnan(aucs[0]) and np.isfinite(aucs[1:]).all()
        expected = [roc_auc_score(truth[w > 0], score[w > 0], sample_weight=w[w > 0]) for w in weights[1:]]
        np.testing.assert_allclose(aucs[1:], expected, rtol=0, atol=1e-12)
        patient_of = rng.integers(0, 40, 120)  # weights per patient, as the bootstrap resamples them
        by_patient = rng.multinomial(40, np.full(40, 1 / 40), size=200).astype(float)
        expected = [roc_auc_score(truth, score, sample_weight=w[patient_of]) for w in by_patient]
        np.testing.assert_allclose(weighted_aucs(truth, score, by_patient, patient_of), expected, rtol=0, atol=1e-12)


def test_undefined_figures_are_none_not_crashes():
    report = evaluate([3, 3, 3], proba_for(np.array([3, 3, 2])), n_boot=50)
    assert report["per_class"]["CNV"]["sensitivity"] is None and report["roc_auc"]["CNV"] is None
    assert report["urgent_referral"]["sensitivity"] is None and report["urgent_referral"]["auc"] is None


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="shape"):
        evaluate([0, 1], np.ones((2, 3)) / 3)
    with pytest.raises(ValueError, match="class ids"):
        evaluate([0, 7], proba_for(np.array([0, 1])))


def test_plots_are_written_as_images(tmp_path):
    paths = save_report_plots(tmp_path, Y_TRUE, proba_for(Y_PRED), title="test model")
    assert [p.name for p in paths] == ["confusion_matrix.png", "roc_curves.png", "reliability.png"]
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 300
