"""Classical baseline: patient-grouped 5-fold CV accuracy, feature throughput and one-scan latency.

    python benchmarks/baseline_cv.py [DATA]   (default ../shared/data/kermany-oct-sample)

Hyperparameters are the CLI defaults (C=10, gamma = 0.5/d), fixed, not searched per fold.
"""
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from baselines.io import load_baseline, save_model_folder
from baselines.model import OCTSVMClassifier
from baselines.train import cached_features
from octcore.data import discover, fingerprint_all, grouped_kfold, linked_groups, targets
from octcore.metrics import evaluate

data = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/kermany-oct-sample"
scans = discover(data)
y, patients = targets(scans)
settings = {"kind": "hog+lbp", "flatten": True, "sigma": 0.7}

start = time.perf_counter()
X = cached_features(scans, settings, cache_dir=None, progress=False)
seconds = time.perf_counter() - start
print(f"feature extraction (decode + preprocessing + HOG/LBP, all cores): {len(scans) / seconds:.1f} scans/s")

groups = linked_groups(scans, [d for d, _ in fingerprint_all(scans, progress=False)])
proba = np.zeros((len(scans), 4))
for train, test in grouped_kfold(scans, 5, seed=0, groups=groups):
    proba[test] = OCTSVMClassifier().fit(X[train], y[train], groups[train]).predict_proba(X[test])
report = evaluate(y, proba, patients)
print(f"5-fold patient-grouped CV on {len(scans)} scans: accuracy {report['accuracy']:.3f} "
      f"(95% CI {report['ci95']['accuracy'][0]:.3f}-{report['ci95']['accuracy'][1]:.3f}), "
      f"macro-F1 {report['macro_f1']:.3f} (95% CI {report['ci95']['macro_f1'][0]:.3f}-{report['ci95']['macro_f1'][1]:.3f})")

with tempfile.TemporaryDirectory() as folder:
    model = OCTSVMClassifier().fit(X, y, groups)
    save_model_folder(Path(folder) / "m", model, {"classes": ["CNV", "DME", "DRUSEN", "NORMAL"], "features": settings}, {}, "")
    loaded = load_baseline(Path(folder) / "m")
    files = [s.path.read_bytes() for s in scans[:50]]
    loaded.predict_proba([files[0]])
    times = []
    for data_bytes in files:
        t = time.perf_counter()
        loaded.predict_proba([data_bytes])
        times.append(time.perf_counter() - t)
    print(f"one-scan prediction (decode, features, SVM), 1 core: median {np.median(times) * 1000:.1f} ms, "
          f"p95 {np.percentile(times, 95) * 1000:.1f} ms")
