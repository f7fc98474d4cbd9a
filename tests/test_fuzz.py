"""Hostile input, fuzzed with hypothesis: the image loader, the upload reader and the Space's request path never
crash, bombs are refused before they expand, and zip member names never reach the disk.

`python benchmarks/fuzz_inputs.py --inputs N` runs the same generators for many more inputs (docs/results.md).
No time bounds here (a loaded machine would make them flaky): hangs and slow inputs are what the benchmark
measures, and the decode workers' time budget is tested deterministically in test_uploads.py.
"""

import random
from pathlib import Path

import gradio as gr
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostile import KINDS, hostile_file, hostile_zip, zip_bomb
from octcore.imaging import ScanError, load_scan
from space.ui import batch, predict
from space.uploads import iter_upload

FUZZ = settings(max_examples=120, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(kind=st.sampled_from(KINDS), rng=st.randoms(use_true_random=False))
def test_the_loader_reads_or_refuses_every_input(kind, rng):
    data = hostile_file(kind, rng)
    try:
        gray = load_scan(data)
    except ScanError as e:
        assert e.reason  # refused, with a reason a person can read
    else:
        assert gray.ndim == 2 and gray.dtype == np.float32 and np.isfinite(gray).all()
        assert 0 <= gray.min() and gray.max() <= 1
    for frame in iter_upload(data, "upload"):  # what the Space makes of the same bytes
        assert (frame.gray is None) != (frame.error is None)


@settings(FUZZ, max_examples=40)
@given(kind=st.sampled_from(KINDS), rng=st.randoms(use_true_random=False))
def test_the_space_answers_every_input(models, tmp_path_factory, kind, rng):
    path = tmp_path_factory.mktemp("upload") / f"upload{rng.choice(['.jpeg', '.dcm', '.zip', '.png', ''])}"
    path.write_bytes(hostile_file(kind, rng))
    try:
        outputs = predict(str(path), None, models, None)
    except gr.Error as e:  # what went wrong, said to the visitor
        assert e.message and "Traceback" not in e.message
    else:
        assert len(outputs) == 3 and all(isinstance(o, str) for o in outputs) and outputs[0]
    table, csv = batch([str(path)], None, models, None)
    assert len(table) >= 1 and Path(csv).is_file()


def test_zip_member_names_never_reach_the_disk(models, tmp_path, monkeypatch):
    inside = tmp_path / "a" / "b" / "c"
    inside.mkdir(parents=True)
    monkeypatch.chdir(inside)
    before = sorted(tmp_path.rglob("*"))
    rng = random.Random(0)
    for i in range(30):
        upload = tmp_path / f"{i}.zip"
        upload.write_bytes(hostile_zip(rng))
        batch([str(upload)], None, models, None)
        upload.unlink()
    assert sorted(tmp_path.rglob("*")) == before  # no ../../etc/passwd, a/../../b.jpeg, ... anywhere up the tree


def test_zip_bombs_are_refused_without_expanding():
    for lying in (False, True):
        bomb = zip_bomb(lying)
        assert len(bomb) < 1024**2  # 100 MB of zeros inside
        frames = list(iter_upload(bomb, "bomb.zip"))
        assert len(frames) == 1 and frames[0].gray is None
        assert ("zip bomb" in frames[0].error) if not lying else ("cannot read" in frames[0].error)


def test_inputs_the_long_campaign_found_get_a_message():
    """Regressions from `benchmarks/fuzz_inputs.py` (seed-index of the input): a zip directory claiming a version
    zipfile does not implement (0-26402), and a zip with no file in it (0-257)."""
    for kind, seed in (("mutated zip", "0-26402"), ("zip directory field", "0-257")):
        data = hostile_file(kind, random.Random(seed))
        frames = list(iter_upload(data, "upload.zip"))
        assert frames and all((f.gray is None) != (f.error is None) for f in frames)
