"""The Space: what a visitor gets for real, odd and hostile uploads; the launched app over HTTP and in a browser."""

import base64
import html
import io
import re
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image
from skimage import data as pictures

from conftest import ROOT
from hostile import dicom
from models import load_model
from octcore.imaging import ScanImage, read_scan
from octcore.labels import CLASSES
from space.engine import Models, classify
from space.ui import batch, build, examples, look, model_table, predict
from space.uploads import DecodedFrame

SUMMARY, VIT_PANEL, CLASSICAL_PANEL = range(3)


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def test_a_sure_answer_never_reads_100_or_0_percent():
    """A calibrated probability of 0.9996 is not certainty: the page says >99% (and <1%), not 100% (and 0%)."""
    from models.base import Prediction
    from space.engine import Answer, Frame
    from space.render import model_panel

    frame = Frame("scan", results={"ViT": Answer(Prediction(np.array([0.9996, 0.0002, 0.0001, 0.0001])), 1)})
    panel = model_panel("ViT", "kind", frame.results["ViT"], frame)
    assert "(&gt;99%)" in panel and "<em>&gt;99%</em>" in panel and "<em>&lt;1%</em>" in panel
    assert "100%" not in panel.replace("width:100%", "") and "<em>0%</em>" not in panel


def test_a_real_scan_gets_both_answers_explained_side_by_side(models, a_scan):
    out = predict(str(a_scan), None, models, None)
    assert "Both models agree" in out[SUMMARY] or " says " in out[SUMMARY]
    assert out[SUMMARY].count("data:image/jpeg;base64,") == 1 and "as the models received it" in out[SUMMARY]
    shown = Image.open(io.BytesIO(base64.b64decode(out[SUMMARY].split("base64,")[1].split("'")[0])))
    assert shown.width <= 512 and shown.height <= 256
    for panel, name in ((out[VIT_PANEL], "ViT"), (out[CLASSICAL_PANEL], "HOG+LBP SVM")):
        assert f"<h3>{name}" in panel and "referral:" in panel and "Normal or not" in panel
        assert all(f"<span>{c}</span>" in panel for c in CLASSES) and "How to read this" in panel
    assert out[VIT_PANEL].count("data:image/jpeg;base64,") == 1 and "Where the ViT looked" in out[VIT_PANEL]
    assert (
        out[CLASSICAL_PANEL].count("data:image/jpeg;base64,") == 3 and "flattened retina band" in out[CLASSICAL_PANEL]
    )
    assert "class='bar'" in out[VIT_PANEL] and "class='legend'" in out[CLASSICAL_PANEL]  # colour bar and key
    assert "Every frame" not in out[SUMMARY]  # one frame: no table


def test_the_vit_may_use_every_cpu_beside_the_classical_model(tiny_vit, small_baseline, monkeypatch):
    """The ViT is loaded with every CPU the process may use (its idle threads yield, models.vit); the app then
    keeps that or one thread, whichever answers sooner (the test below)."""
    import os

    import space.engine
    from models import load_model

    asked = {}

    def load(source, backend="auto", threads=None):
        asked[Path(source).name] = threads
        return load_model(source, backend, threads)

    monkeypatch.setattr(space.engine, "load_model", load)
    space.engine.Models(vit=str(tiny_vit), classical=str(small_baseline))
    assert asked[Path(tiny_vit).name] == len(os.sched_getaffinity(0))


@pytest.fixture(scope="module")
def onnx_vit(tiny_vit, tmp_path_factory) -> Path:
    """The tiny ViT with an int8 ONNX export, which the Space runs when a folder has one."""
    import shutil

    from train.onnx_int8 import export

    folder = tmp_path_factory.mktemp("onnx-vit") / "vit"
    shutil.copytree(tiny_vit, folder)
    export(folder)
    return folder


@pytest.mark.parametrize("faster", [1, 2])
def test_the_space_keeps_the_vit_threads_that_answer_sooner(onnx_vit, small_baseline, a_scan, faster, monkeypatch):
    """One ONNX Runtime thread or every CPU: whichever answers a request sooner on the machine (a fake clock here,
    on which the ViT takes 10 ms with the faster count and 20 ms with the other); the same answers either way."""
    import space.engine
    from models.vit import ViTModel

    clock = [0.0]
    monkeypatch.setattr(space.engine, "time", type("Clock", (), {"perf_counter": staticmethod(lambda: clock[0])}))
    monkeypatch.setattr(space.engine, "usable_cpus", lambda: 2)
    analyse = ViTModel.analyse

    def timed(self, *args, **kwargs):
        clock[0] += 0.010 if self.threads == faster else 0.020
        return analyse(self, *args, **kwargs)

    monkeypatch.setattr(ViTModel, "analyse", timed)
    loaded = Models(vit=str(onnx_vit), classical=str(small_baseline))
    before = loaded.vit
    assert loaded.vit.backend == "onnx" and loaded.vit.threads == 2
    medians = loaded.choose_vit_threads(a_scan, repeats=3)
    assert medians == pytest.approx({faster: 10.0, 3 - faster: 20.0})
    assert loaded.vit.threads == faster and loaded.sources()[0] == (loaded.vit, str(onnx_vit))
    assert (loaded.vit is before) == (faster == 2)
    monkeypatch.undo()
    other = load_model(str(onnx_vit), threads=3 - faster)
    mine, theirs = (m.analyse(ScanImage(read_scan(a_scan).gray)) for m in (loaded.vit, other))
    assert np.array_equal(mine.proba, theirs.proba)
    assert np.array_equal(mine.maps["attention"], theirs.maps["attention"])


def test_the_app_readies_every_model_before_it_serves(onnx_vit, small_baseline, small_lbp, monkeypatch):
    """Before serving, the app times the ViT's threads and answers an example once with every model, the classical
    variants after the first included, so that no visitor's first answer of a variant waits for its cold start; a
    model that fails there is warned about and the app starts."""
    import space.engine
    from space.ui import ready

    monkeypatch.setattr(space.engine, "usable_cpus", lambda: 2)
    loaded = Models(vit=str(onnx_vit), classical=[str(small_baseline), str(small_lbp)])
    asked = []

    def counted(model):
        def analyse(*args):
            asked.append(model.name)
            return answer(*args)

        answer = model.analyse
        return analyse

    for model in loaded.classical:
        monkeypatch.setattr(model, "analyse", counted(model))
    assert set(ready(loaded)) == {1, 2}
    assert {model.name for model in loaded.classical} <= set(asked), asked

    def broken(*args):
        raise MemoryError("no memory for the warm-up")

    monkeypatch.setattr(loaded.classical[1], "analyse", broken)
    with pytest.warns(RuntimeWarning, match="not warmed up .no memory for the warm-up"):
        ready(loaded)


def test_there_is_no_thread_count_to_choose_for_a_vit_in_pytorch(models, a_scan):
    assert models.vit.backend == "torch" and models.choose_vit_threads(a_scan) == {}


def test_a_failed_timing_keeps_the_vit_as_loaded_and_the_app_starts(onnx_vit, small_baseline, a_scan, monkeypatch):
    """Choosing the threads only makes requests faster: if the second session cannot be loaded (or the example
    cannot be read), the ViT stays as loaded, with where it came from, and the reason is warned about."""
    import space.engine

    monkeypatch.setattr(space.engine, "usable_cpus", lambda: 2)
    loaded = Models(vit=str(onnx_vit), classical=str(small_baseline))
    before = loaded.vit

    def no_second_session(source, backend="auto", threads=None):
        raise OSError("no memory left for a second session")

    monkeypatch.setattr(space.engine, "load_model", no_second_session)
    with pytest.warns(RuntimeWarning, match="keeps 2 threads: timing one failed .no memory left"):
        assert loaded.choose_vit_threads(a_scan) == {}
    assert loaded.vit is before and loaded.sources()[0] == (before, str(onnx_vit))
    monkeypatch.undo()
    with pytest.warns(RuntimeWarning, match="timing one failed"):
        assert loaded.choose_vit_threads(b"not a scan") == {}
    assert loaded.vit is before and loaded.sources()[0] == (before, str(onnx_vit))


def test_the_models_run_side_by_side_and_answer_as_they_do_alone(models, a_scan, monkeypatch):
    scan, threads = read_scan(a_scan), {}
    for model in models.chosen():
        analyse = model.analyse

        def spy(*args, model=model, analyse=analyse, **kwargs):
            threads[model.name] = threading.current_thread().name
            return analyse(*args, **kwargs)

        monkeypatch.setattr(model, "analyse", spy)
    frame = classify(DecodedFrame("scan", scan.gray), models.chosen())
    assert threads["ViT"].startswith("oct-model") and threads["HOG+LBP SVM"] == threading.current_thread().name
    assert list(frame.results) == ["ViT", "HOG+LBP SVM"]  # the models' order, whichever finished first
    monkeypatch.undo()
    for model in models.chosen():
        alone = model.analyse(ScanImage(scan.gray), explain=True)
        beside = frame.results[model.name].prediction
        np.testing.assert_allclose(beside.proba, alone.proba, rtol=1e-6)
        assert beside.maps.keys() == alone.maps.keys()


def test_the_quicker_models_pictures_are_drawn_while_the_other_model_still_runs(models, a_scan, monkeypatch):
    """The classical model answers before the ViT on the Space's CPUs; its pictures (about 2 ms of the app's work
    around the models) are drawn then, in its own thread, not after the ViT. The ViT here waits until they are
    drawn: were they drawn after both models, it would time out and say so. The panel is the one drawn later."""
    from space import render

    scan, drawn, order = read_scan(a_scan), threading.Event(), {}
    vit = models.chosen()[0]
    analyse = vit.analyse

    def slow(*args, **kwargs):
        order["drawn before the ViT answered"] = drawn.wait(timeout=20)
        return analyse(*args, **kwargs)

    def draw(answer, gray):
        if "band" in answer.prediction.maps:  # the classical model's
            drawn.set()
        return render.pictures(answer, gray)

    monkeypatch.setattr(vit, "analyse", slow)
    frame = classify(DecodedFrame("scan", scan.gray), models.chosen(), draw=draw)
    assert order == {"drawn before the ViT answered": True}
    classical = frame.results["HOG+LBP SVM"]
    assert classical.pictures.count("data:image/jpeg;base64,") == 3
    undrawn = render.model_panel("HOG+LBP SVM", "kind", replace(classical, pictures=""), frame)
    assert render.model_panel("HOG+LBP SVM", "kind", classical, frame) == undrawn


def test_every_classical_variant_can_be_chosen(models, a_scan, small_baseline, small_lbp):
    several = Models(vit=str(models.vit.folder), classical=[str(small_baseline), str(small_lbp)])
    assert [m.name for m in several.classical] == ["HOG+LBP SVM", "LBP SVM"]
    assert several.chosen("LBP SVM")[1].name == "LBP SVM" and several.chosen(None)[1].name == "HOG+LBP SVM"
    lbp_panel = predict(str(a_scan), "LBP SVM", several, None)[CLASSICAL_PANEL]
    assert "<h3>LBP SVM" in lbp_panel and "Its LBP" in lbp_panel and "HOG" not in lbp_panel  # only what it reads
    assert "Its HOG" in predict(str(a_scan), None, several, None)[CLASSICAL_PANEL]
    table = model_table(several)
    assert "HOG and LBP features + SVM" in table and "| LBP features + SVM" in table


@pytest.mark.parametrize("kind", ["text", "empty", "truncated", "bomb", "zip-in-zip", "zip named .jpeg"])
def test_unreadable_uploads_get_a_clear_error_never_a_traceback(kind, models, a_scan, tmp_path):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("scan.jpeg", a_scan.read_bytes())
    data = {
        "text": b"this is not an image\n" * 10,
        "empty": b"",
        "truncated": a_scan.read_bytes()[:2000],
        "bomb": encoded(Image.new("L", (9000, 9000)), "PNG"),
        "zip-in-zip": b"PK\x03\x04" + b"\0" * 100,
        "zip named .jpeg": archive.getvalue(),
    }[kind]
    with pytest.raises(gr.Error) as raised:
        predict(write(tmp_path / "upload.jpeg", data), None, models, None)
    expected = "Batch tab" if kind.startswith("zip") else "Cannot read this file"
    assert expected in raised.value.message and "Traceback" not in raised.value.message
    if kind == "truncated":  # what to do about it, not Pillow's words
        assert "ends before the image does" in raised.value.message and "OSError" not in raised.value.message


@pytest.mark.parametrize("kind", ["16-bit", "rgba", "palette"])
def test_odd_but_valid_images_are_classified(kind, models, a_scan, tmp_path):
    scan = Image.open(a_scan)
    image = {
        "16-bit": Image.fromarray(np.asarray(scan, np.uint16) * 257),
        "rgba": scan.convert("RGBA"),
        "palette": scan.convert("P"),
    }[kind]
    out = predict(write(tmp_path / "upload.png", encoded(image, "PNG")), None, models, None)
    assert "referral:" in out[VIT_PANEL] and "referral:" in out[CLASSICAL_PANEL]


@pytest.mark.parametrize("kind", ["photo", "fundus photograph", "document", "blank"])
def test_what_is_not_an_oct_scan_gets_no_answer(kind, models, tmp_path):
    image = {
        "photo": Image.fromarray(pictures.chelsea()),
        "fundus photograph": Image.fromarray(pictures.retina()),
        "document": Image.fromarray(pictures.page()),
        "blank": Image.new("L", (512, 256), 0),
    }[kind]
    out = predict(write(tmp_path / "upload.png", encoded(image, "PNG")), None, models, None)
    assert "No answer: " in out[SUMMARY] and "cannot judge" in out[SUMMARY] and "know only four things" in out[SUMMARY]
    assert "disagree" not in out[SUMMARY] and "unsure" not in out[SUMMARY]  # no answer: nothing said about one
    assert "neither answer is shown" not in out[SUMMARY]  # the image checks, not one model's doubt, decided
    for panel in (out[VIT_PANEL], out[CLASSICAL_PANEL]):  # the classes are there, but only behind a click
        assert "No answer" in panel and "<details><summary>Show the model's guesses anyway" in panel
        assert panel.index("<details>") < panel.index("referral:")


def test_a_scan_of_a_condition_the_model_was_not_taught_is_withheld(model_without_dme, models, tmp_path):
    """A classical model trained without DME, whose out-of-scope detector flags a DME scan: the page gives no
    answer for it."""
    folder, flagged_scan = model_without_dme
    taught_three = Models(vit=str(models.vit.folder), classical=str(folder))
    out = predict(str(flagged_scan), None, taught_three, None)
    assert "far from every scan it was trained on" in out[SUMMARY]
    name = taught_three.classical[0].name
    assert f"No answer: {name} cannot judge this image" in out[SUMMARY]  # the one that objected, by name
    assert "neither answer is shown" in out[SUMMARY] and "No answer" in out[CLASSICAL_PANEL]
    assert f"{name} cannot judge this image, so no answer is shown" in out[VIT_PANEL]


def test_a_withheld_panel_says_which_model_objected():
    """When one model finds a scan out of its scope, the headline names it, and the other model's panel does not
    claim the same of itself; the guesses behind the click say they mean nothing."""
    from models.base import Prediction
    from space.engine import Answer, Frame, Upload
    from space.render import GUESSES, headline, model_panel

    proba = np.array([0.1, 0.8, 0.05, 0.05])
    frame = Frame(
        "scan", results={"ViT": Answer(Prediction(proba), 1), "SVM": Answer(Prediction(proba, flagged=True), 1)}
    )
    assert frame.withheld
    vit, svm = (model_panel(name, "kind", frame.results[name], frame) for name in ("ViT", "SVM"))
    assert "outside what SVM can judge" in svm and "SVM cannot judge this image" not in svm
    assert "outside what ViT" not in vit and "No answer: SVM cannot judge this image, so no answer is shown" in vit
    assert "<details>" in vit and "<details>" in svm and GUESSES in vit and GUESSES in svm
    said = headline(Upload(frame, [frame]))
    assert "No answer: SVM cannot judge this image." in said and "ViT cannot" not in said
    assert "neither answer is shown" in said


def test_disagreeing_models_are_named_once_and_the_reader_is_told_what_it_means():
    from models.base import Prediction
    from space.engine import Answer, Frame, Upload
    from space.render import PERCENTAGES, headline

    cnv, dme = np.array([0.7, 0.2, 0.05, 0.05]), np.array([0.2, 0.7, 0.05, 0.05])
    frame = Frame("scan", results={"ViT": Answer(Prediction(cnv), 1), "SVM": Answer(Prediction(dme), 1)})
    said = headline(Upload(frame, [frame]))
    assert said.count("ViT says <b>CNV</b>") == 1 and said.count("SVM says") == 1  # the headline's, not again
    assert "The models disagree: treat neither answer as reliable." in said and html.escape(PERCENTAGES) in said


def test_dicom_frames_are_all_classified_and_the_most_urgent_is_shown(models, sample, tmp_path):
    scans = [
        np.asarray(Image.open(p).convert("L").resize((512, 248)))
        for p in sorted((sample / "NORMAL").glob("*.jpeg"))[:2]
    ]
    single = predict(write(tmp_path / "one.dcm", dicom(scans[:1])), None, models, None)
    assert "referral:" in single[VIT_PANEL] and "Every frame" not in single[SUMMARY]
    multi = predict(write(tmp_path / "volume.dcm", dicom(scans + scans[:1])), None, models, None)
    assert "3 frames" in multi[SUMMARY] and "Every frame (3)" in multi[SUMMARY]
    assert multi[SUMMARY].count("<tr>") == 4 and "<td>volume.dcm frame 3/3</td>" in multi[SUMMARY]  # header, rows
    with pytest.raises(gr.Error, match="Cannot read"):
        predict(write(tmp_path / "bad.dcm", dicom(scans[:1])[:400]), None, models, None)


def test_batch_of_files_and_a_hostile_zip_gives_a_table_and_csv(models, sample, tmp_path):
    scans = sorted((sample / "DME").glob("*.jpeg"))[:3]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../../escaped.jpeg", scans[0].read_bytes())  # path traversal: read in memory, never written
        z.writestr("notes.txt", "not a scan")
        z.writestr("deep/scan.jpeg", scans[1].read_bytes())
    photo = tmp_path / "holiday.png"
    Image.fromarray(pictures.chelsea()).save(photo)
    paths = [str(scans[2]), write(tmp_path / "scans.zip", archive.getvalue()), str(photo)]
    table, csv_path = batch(paths, None, models, None)
    assert list(table.columns) == ["file", "status", "ViT", "HOG+LBP SVM", "notes"]
    assert len(table) == 5 and table["ViT"].isin(CLASSES).sum() == 3
    assert table["status"].iloc[2] == "unreadable" and "cannot read" in table["notes"].iloc[2]
    # a photograph gets no answer in the table, as on the one-scan view; its probabilities stay in the CSV
    assert table.iloc[4][["status", "ViT", "HOG+LBP SVM"]].tolist() == ["withheld", "—", "—"]
    csv = Path(csv_path).read_text()
    assert csv.count("\n") == 6 and "ViT p(CNV)" in csv.splitlines()[0]
    assert all(cell for cell in csv.splitlines()[-1].split(",")[-8:])
    assert Path(csv_path).is_relative_to(gr.utils.get_upload_folder())  # where Gradio's cache clean-up finds it
    assert not (tmp_path.parent / "escaped.jpeg").exists() and not Path("escaped.jpeg").exists()


def test_with_no_models_the_app_starts_and_says_what_is_missing(tmp_path, a_scan):
    none = Models(vit=str(tmp_path / "no-vit"), classical=str(tmp_path / "no-svm"))
    assert none.names == [] and len(none.problems) == 2
    assert "python -m train" in none.problems[0] and "baselines.train" in none.problems[1]
    build(none)
    with pytest.raises(gr.Error, match="No model is loaded"):
        predict(str(a_scan), None, none, None)


def test_the_app_starts_before_gradio_has_made_its_upload_folder(tmp_path, monkeypatch):
    """On a fresh machine (a new Space) Gradio's upload folder does not exist until Gradio first saves a file; the
    app copies its example scans there while it is built, and must make the folder rather than crash."""
    fresh = tmp_path / "gradio-not-made-yet"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(fresh))
    examples.cache_clear()
    try:
        build(Models(vit=str(tmp_path / "no-vit"), classical=str(tmp_path / "no-svm")))
        tries, _ = examples()
        assert len(tries) == len(CLASSES) and all(Path(t).is_file() and Path(t).is_relative_to(fresh) for t in tries)
    finally:
        examples.cache_clear()  # the other tests' examples live in their own upload folder


def test_one_model_alone_says_its_answer_and_does_not_agree_with_itself(small_baseline, tmp_path, a_scan):
    alone = Models(vit=str(tmp_path / "no-vit"), classical=str(small_baseline))  # the quick start offline: no ViT
    summary = predict(str(a_scan), None, alone, None)[SUMMARY]
    assert "HOG+LBP SVM says" in summary and "Both models" not in summary


@pytest.fixture(scope="module")
def served(models, small_lbp):
    """The app as the Space runs it (decode workers, queue, upload cap), with two classical variants."""
    from space.workers import DecodePool

    pool = DecodePool(size=2).start()
    two = Models(vit=str(models.vit.folder), classical=[str(models.classical[0].folder), str(small_lbp)])
    demo = build(two, pool).queue(default_concurrency_limit=4, max_size=256)
    _, url, _ = demo.launch(
        prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, max_file_size="64mb", **look()
    )
    yield url
    demo.close()
    pool.close()


def test_launched_app_answers_every_endpoint_and_refuses_bad_files_clearly(served, a_scan, sample, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(served, verbose=False)
    out = client.predict(handle_file(str(a_scan)), "HOG+LBP SVM", api_name="/predict")
    assert "referral:" in out[VIT_PANEL] and "referral:" in out[CLASSICAL_PANEL]
    record = client.predict(handle_file(str(a_scan)), "HOG+LBP SVM", api_name="/classify")
    (frame,) = record["frames"]
    assert set(frame["models"]) == {"ViT", "HOG+LBP SVM"} and frame["withheld"] in (True, False)
    assert abs(sum(frame["models"]["ViT"]["probabilities"].values()) - 1) < 1e-6
    table, csv_file = client.predict([handle_file(str(a_scan))], "HOG+LBP SVM", api_name="/batch")
    assert len(table["data"]) == 1 and Path(csv_file).read_text().startswith("file,")
    with pytest.raises(AppError, match="Cannot read this file"):
        client.predict(handle_file(write(tmp_path / "x.jpeg", b"garbage")), None, api_name="/predict")
    frames = [
        np.asarray(Image.open(p).convert("L").resize((512, 248))) for p in sorted((sample / "CNV").glob("*.jpeg"))[:2]
    ]
    volume = client.predict(handle_file(write(tmp_path / "volume.dcm", dicom(frames))), None, api_name="/predict")
    assert "2 frames" in volume[SUMMARY] and volume[SUMMARY].count("<tr>") == 3


def test_twenty_parallel_clients_are_all_answered(served, sample):
    from gradio_client import Client, handle_file

    scans = sorted(sample.glob("*/*.jpeg"))[:20]

    def one(path: Path) -> str:
        return Client(served, verbose=False).predict(handle_file(str(path)), None, api_name="/predict")[VIT_PANEL]

    with ThreadPoolExecutor(20) as pool:
        panels = list(pool.map(one, scans))
    assert len(panels) == 20 and all("referral:" in panel for panel in panels)


def test_the_api_offers_only_its_three_documented_endpoints(models):
    """Programs get /predict, /classify and /batch; the page's own events (an example's click, clearing an answer
    after a failure) are no endpoints of their own."""
    assert sorted(build(models).get_api_info()["named_endpoints"]) == ["/batch", "/classify", "/predict"]


def test_a_bundles_example_scans_are_served_from_gradios_upload_folder(tmp_path, monkeypatch, a_scan):
    """Gradio serves a file an event returns only from its upload folder, the temp folder or the working folder, so a
    Space bundle started from another folder must still put its example scans where Gradio serves them."""
    import shutil

    import space.ui

    (tmp_path / "examples").mkdir()
    shutil.copy(a_scan, tmp_path / "examples" / "example-1.jpeg")
    monkeypatch.setattr(space.ui, "HERE", tmp_path)  # the bundle's space/ folder
    tries, _ = space.ui.examples.__wrapped__()  # not the cached examples of the repo
    upload = Path(gr.utils.get_upload_folder()).resolve()
    assert [Path(t).name for t in tries] == ["example-1.jpeg"]
    assert all(Path(t).resolve().is_relative_to(upload) for t in tries), tries


def test_deploy_bundle_starts_from_its_folder_alone(tiny_vit, small_baseline, tmp_path, a_scan):
    import os
    import socket
    import subprocess
    import sys

    from gradio_client import Client, handle_file

    from space.deploy import main as deploy

    bundle = tmp_path / "bundle"
    assert deploy(["--out", str(bundle), "--vit", str(tiny_vit), "--baseline", str(small_baseline), "--dry-run"]) == 0
    assert (bundle / "README.md").read_text().startswith("---") and "app_file: space/app.py" in (
        bundle / "README.md"
    ).read_text()
    assert {p.name for p in (bundle / "space" / "models").iterdir()} == {"vit", "hog-lbp-svm"}
    assert not (bundle / "tests").exists() and len(list((bundle / "space" / "examples").glob("example-*.jpeg"))) == 4
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1", "PYTHONUNBUFFERED": "1"}
    env.pop("OCT_VIT_MODEL", None), env.pop("OCT_BASELINE_MODEL", None), env.pop("PYTHONPATH", None)
    # Started as the Space starts it, with -v: Python then names the file of every module it imports, so the
    # one start shows both that the app serves and that the project's code came from the bundle, not the repo.
    server = subprocess.Popen(
        [sys.executable, "-v", "space/app.py"],
        cwd=bundle,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    printed, serving = [], threading.Event()

    def drain() -> None:  # read everything, so that the server never blocks on a full pipe
        for line in server.stdout:
            printed.append(line)
            if "Running on local URL" in line:
                serving.set()
        serving.set()  # exited: let the test fail at once

    threading.Thread(target=drain, daemon=True).start()
    try:
        serving.wait(timeout=600)  # set when Gradio prints its URL, or when the app exits; no polling
        assert server.poll() is None, "the bundle's app exited before serving:\n" + "".join(printed)[-2000:]
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        out = client.predict(handle_file(str(a_scan)), None, api_name="/predict")
        assert "referral:" in out[VIT_PANEL] and "referral:" in out[CLASSICAL_PANEL]
    finally:
        server.terminate()
        server.wait(timeout=30)
    loaded = {
        re.sub(r"__pycache__/(\w+)\.cpython-\d+\.pyc$", r"\1.py", line.split("code object from ")[1].strip(" '\n"))
        for line in list(printed)
        if line.startswith("# code object from ")
    }
    ours = ("octcore/__init__.py", "models/vit.py", "models/classical.py", "baselines/features.py", "space/engine.py")
    assert {str(bundle / name) for name in ours} <= loaded, sorted(p for p in loaded if str(bundle) in p)
    packages = [str(ROOT / name) + "/" for name in ("octcore", "models", "baselines", "space", "train", "compare")]
    assert not [p for p in loaded if p.startswith(tuple(packages))], "the bundle imported the repo's own code"


def test_deploy_with_hub_ids_writes_a_space_card_the_hub_accepts(tmp_path):
    from huggingface_hub import SpaceCard

    from octcore.hub import SHORT_DESCRIPTION_MAX, card_problems
    from space.deploy import main as deploy

    bundle = tmp_path / "bundle"
    ids = ["someone/oct-vit", "someone/oct-hog-lbp-svm"]
    assert deploy(["--out", str(bundle), "--vit", ids[0], "--baseline", ids[1], "--dry-run"]) == 0
    text = (bundle / "README.md").read_text()
    assert card_problems(text, "space") == []
    card = SpaceCard.load(bundle / "README.md").data
    assert card.models == ids and card.preload_from_hub == ids and card.suggested_hardware == "cpu-basic"
    assert card.app_file == "space/app.py" and card.sdk == "gradio" and card.python_version == "3.11"
    assert len(card.short_description) <= SHORT_DESCRIPTION_MAX and "huggingface.co/someone/oct-vit" in text
    assert not (bundle / "space" / "models").exists()
    assert deploy(["--out", str(bundle), "--vit", "not-a-folder-or-id", "--dry-run"]) == 2


def test_the_rules_catch_what_the_hub_refuses():
    from octcore.hub import card_problems

    good = "---\ntitle: x\nsdk: gradio\ncolorFrom: indigo\ncolorTo: gray\nlicense: apache-2.0\n---\n"
    assert card_problems(good, "space") == []
    long = good.replace("title: x", "title: x\nshort_description: " + "a" * 61)
    assert "short_description is 61 characters" in card_problems(long, "space")[0]
    assert card_problems(good.replace("indigo", "teal"), "space")
    assert card_problems(good.replace("apache-2.0", "Apache-2.0"), "space")
    assert card_problems(good.replace("title: x", "models: [../runs/vit]"), "space")
    assert card_problems(good.replace("title: x", "python_version: 3.10"), "space")


def test_deploy_uploads_the_bundle_and_sets_the_model_variables(tmp_path, fake_hub):
    from space.deploy import build_bundle, deploy

    bundle = build_bundle(tmp_path / "bundle", "someone/oct-vit", ["someone/oct-hog-svm", "someone/oct-lbp-svm"])
    url = deploy(
        bundle, "someone/oct-space", "someone/oct-vit", ["someone/oct-hog-svm", "someone/oct-lbp-svm"], api=fake_hub
    )
    assert url.startswith("https://huggingface.co/spaces/someone/oct-space")
    names = [name for name, _ in fake_hub.calls]
    assert names == ["create_repo", "upload_folder", "add_space_variable", "add_space_variable"]
    create, upload = fake_hub.calls[0][1], fake_hub.calls[1][1]
    assert create["repo_type"] == "space" and create["space_sdk"] == "gradio" and create["exist_ok"] is True
    assert upload["repo_type"] == "space" and "README.md" in fake_hub.uploaded["someone/oct-space"]
    assert "space/app.py" in fake_hub.uploaded["someone/oct-space"]
    variables = {call["key"]: call["value"] for name, call in fake_hub.calls if name == "add_space_variable"}
    assert variables == {
        "OCT_VIT_MODEL": "someone/oct-vit",
        "OCT_BASELINE_MODEL": "someone/oct-hog-svm,someone/oct-lbp-svm",
    }


def test_a_visitor_in_a_real_browser(served, a_scan, tmp_path, sample, monkeypatch):
    """Chromium through the visitor's path: the landing view, an upload and its preview, an unreadable file (no answer
    left on the page), a volume then a scan (the page answers for the last), another classical model (when several
    are loaded), an example clicked, an unreadable file again, an image the models cannot judge, a zip in the wrong
    place, then on the Batch tab; the landing view on a phone, with an example's answer scrolled into view, and its
    Batch table within the screen, a row without notes taking no empty line; and in
    dark mode the words that say there is no answer readable."""
    playwright = pytest.importorskip("playwright.sync_api")
    import browser as walk

    if not Path(walk.CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install chromium)")

    photo = tmp_path / "holiday.png"
    Image.fromarray(pictures.chelsea()).save(photo)
    notes = tmp_path / "notes.jpeg"
    notes.write_text("not a scan")
    archive = tmp_path / "scans.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for scan in sorted(sample.glob("*/*.jpeg"))[:3]:
            z.write(scan, scan.name)
    frames = [np.asarray(Image.open(p).convert("L").resize((512, 248))) for p in sorted(sample.glob("CNV/*.jpeg"))[:2]]
    volume = Path(write(tmp_path / "volume.dcm", dicom(frames)))
    with playwright.sync_playwright() as p:
        browser = walk.browser(p)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            walk.landing(page, served)
            walk.upload(page, a_scan)
            walk.unreadable(page, notes)
            walk.upload(page, a_scan)
            walk.volume_then_scan(page, volume, a_scan)
            walk.switch_variant(page, "LBP SVM")
            walk.example(page)
            import space.ui

            answer, answered = space.ui.predict, []

            def slowly(path, *rest):  # the files asked about, each answered slowly enough to click again meanwhile
                answered.append(Path(path).name if path else None)
                time.sleep(2)
                return answer(path, *rest)

            monkeypatch.setattr(space.ui, "predict", slowly)
            walk.two_examples(page, answered)
            monkeypatch.undo()
            walk.unreadable(page, notes)  # after an example too: its click must not leave a stricter input behind
            walk.withheld(page, photo)
            walk.wrong_place(page, archive)
            walk.batch(page, archive, more=(notes,))  # an unreadable file's long note among the rows
        except Exception as e:  # what the page showed when a step failed: for a failure seen only on a loaded CI
            page.screenshot(path=tmp_path / "failure.png", full_page=True)
            toasts = page.locator(".toast-body").all_inner_texts()
            e.add_note(f"the page at the failure: {tmp_path / 'failure.png'}; its messages: {toasts}")
            raise
        on_phone = browser.new_page(viewport={"width": 390, "height": 844})
        walk.phone(on_phone, served)
        walk.batch(on_phone, archive, more=(notes,))  # the table fits the phone's screen, notes included
        walk.row_without_notes(on_phone)
        walk.dark(browser.new_page(viewport={"width": 390, "height": 844}), served, photo)
        browser.close()


def test_the_attention_overlay_is_matplotlibs_colours_blended_over_the_scan(a_scan):
    from matplotlib import colormaps

    from space.render import DISPLAY, blend_table, colour_index, fitted, overlay

    rng = np.random.default_rng(0)
    heat = np.concatenate([[0.0, 1.0, 0.5, 255 / 256, 1 / 256], rng.random(2000)]).astype(np.float32)
    gray = rng.integers(0, 256, heat.size)
    expected = 0.55 * gray[:, None] + 0.45 * 255 * colormaps["inferno"](heat)[:, :3]
    assert np.abs(blend_table("inferno")[gray * 256 + colour_index(heat)] - expected).max() <= 0.5 + 1e-3
    gray = read_scan(a_scan).gray
    for value in (0.0, 0.3, 1.0):  # a flat map: every pixel the scan's gray level blended with one colour
        picture = overlay(gray, np.full((9, 18), value, np.float32))
        colour = np.asarray(colormaps["inferno"](value))[:3]
        expected = 0.55 * fitted(gray)[..., None].astype(float) + 0.45 * 255 * colour
        assert picture.dtype == np.uint8 and picture.shape[1] <= DISPLAY[0]
        assert np.abs(picture - expected).max() <= 0.5 + 1e-3
