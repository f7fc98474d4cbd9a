"""Classical baselines: nested patient-grouped 5-fold CV, feature throughput and one-scan latency.

    python benchmarks/baseline_cv.py DATA

For each feature kind and each outer fold, C and gamma are chosen by a 3-fold patient-grouped
search on the training patients only (baselines.model.search_hyperparameters), then the
calibrated model is fitted on them and scored on the held-out patients. Patients sharing an
identical image are kept together (octcore.data.linked_groups).
"""

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from baselines.cache import cached_features
from baselines.features import KINDS, FeatureSettings
from baselines.io import save_model_folder
from baselines.model import OCTSVMClassifier, search_hyperparameters
from models import load_model
from models.classical import FORMAT
from models.timing import one_scan_latency
from octcore.data import discover, fingerprint_all, grouped_kfold, linked_groups, targets
from octcore.labels import CLASSES
from octcore.metrics import evaluate, with_ci

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("data", metavar="DATA", help="dataset folder (either layout)")
data = parser.parse_args().data
scans = discover(data)
y, patients = targets(scans)
groups = linked_groups(scans, [d for d, _ in fingerprint_all(scans, progress=False)])
folds = grouped_kfold(scans, 5, seed=0, groups=groups)

for kind in KINDS:
    settings = FeatureSettings(kind=kind)
    start = time.perf_counter()
    X = cached_features(scans, settings, cache_dir=None, progress=False)
    rate = len(scans) / (time.perf_counter() - start)

    start = time.perf_counter()
    proba, chosen = np.zeros((len(scans), len(CLASSES))), Counter()
    for train, test in folds:
        best = search_hyperparameters(X[train], y[train], groups[train])
        chosen[f"C={best['C']:g} gamma={best['gamma_scale']:g}/d"] += 1
        model = OCTSVMClassifier(C=best["C"], gamma_scale=best["gamma_scale"]).fit(X[train], y[train], groups[train])
        proba[test] = model.predict_proba(X[test])
    report = evaluate(y, proba, patients)
    print(
        f"{kind:8s} nested 5-fold patient-grouped CV on {len(scans)} scans: "
        f"accuracy {with_ci(report, 'accuracy')}, macro-F1 {with_ci(report, 'macro_f1')} (95% CIs); "
        f"features {rate:.0f} scans/s on all cores; CV {time.perf_counter() - start:.0f} s; "
        f"chosen {dict(chosen)}",
        flush=True,
    )

# One-scan latency of the default (hog+lbp) model, saved and reloaded as the Space does.
with tempfile.TemporaryDirectory() as folder:
    model = OCTSVMClassifier().fit(X, y, groups)
    config = {"format": FORMAT, "classes": list(CLASSES), "features": settings.to_dict()}
    save_model_folder(Path(folder) / "m", model, config, {}, "")
    figures = one_scan_latency(load_model(Path(folder) / "m"), [s.path.read_bytes() for s in scans[:100]], 100)
    print(
        f"one-scan prediction (decode, features, SVM), 1 process: median {figures['median_ms']} ms, "
        f"p95 {figures['p95_ms']} ms"
    )
