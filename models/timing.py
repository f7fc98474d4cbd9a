"""How long one scan takes through a model, end to end: file bytes in, decode, preprocessing, model."""

import time

import numpy as np

from models.base import OCTModel


def one_scan_latency(model: OCTModel, scans: list[bytes], repeats: int = 30) -> dict[str, float]:
    """Median and 95th percentile in ms of `predict_proba` on one scan at a time, warm (the first call untimed)."""
    model.predict_proba([scans[0]])
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        model.predict_proba([scans[i % len(scans)]])
        times.append(time.perf_counter() - start)
    return {
        "median_ms": round(float(np.median(times)) * 1000, 1),
        "p95_ms": round(float(np.percentile(times, 95)) * 1000, 1),
    }
