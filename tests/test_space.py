"""The Space: the prediction function on real and hostile uploads, then the launched app over HTTP."""

import io
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hostile import dicom
from octcore.labels import CLASSES
from space.engine import Models
from space.ui import analyse, batch, build

SUMMARY, VIT_LABEL, VIT_TEXT, VIT_MAP, SVM_LABEL, SVM_TEXT, HOG_MAP, LBP_MAP, FRAMES = range(9)


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def test_a_real_scan_gets_both_predictions_and_explanations(models, a_scan):
    out = analyse(str(a_scan), models)
    assert set(out[VIT_LABEL]) == set(CLASSES) and set(out[SVM_LABEL]) == set(CLASSES)
    assert abs(sum(out[SVM_LABEL].values()) - 1) < 1e-6
    images = [Image.open(out[i]) for i in (VIT_MAP, HOG_MAP, LBP_MAP)]
    assert [i.mode for i in images] == ["RGB", "L", "L"] and images[0].width == 512
    assert len({out[VIT_MAP], analyse(str(a_scan), models)[VIT_MAP]}) == 2  # each answer gets its own files
    assert " ms" in out[VIT_TEXT] and "referral" in out[SVM_TEXT]
    assert "does not look like" not in out[SUMMARY]


@pytest.mark.parametrize(
    "kind", ["text", "empty", "truncated", "bomb", "16-bit", "rgba", "palette", "photo", "blank", "zip-in-zip"]
)
def test_bad_or_odd_uploads_get_a_message_never_a_traceback(kind, models, a_scan, tmp_path):
    scan = Image.open(a_scan)
    data = {
        "text": b"this is not an image\n" * 10,
        "empty": b"",
        "truncated": a_scan.read_bytes()[:2000],
        "bomb": encoded(Image.new("L", (9000, 9000)), "PNG"),
        "16-bit": encoded(Image.fromarray(np.asarray(scan, np.uint16) * 257), "PNG"),
        "rgba": encoded(scan.convert("RGBA"), "PNG"),
        "palette": encoded(scan.convert("P"), "PNG"),
        "photo": encoded(
            Image.fromarray((np.random.default_rng(0).random((300, 400, 3)) * 255).astype(np.uint8)), "JPEG"
        ),
        "blank": encoded(Image.new("L", (512, 256), 0), "PNG"),
        "zip-in-zip": b"PK\x03\x04" + b"\0" * 100,
    }[kind]
    out = analyse(write(tmp_path / f"upload.{kind}", data), models)
    summary = out[SUMMARY]
    if kind in ("16-bit", "rgba", "palette"):
        assert out[VIT_LABEL] is not None and "Cannot read" not in summary
    elif kind in ("photo", "blank"):
        assert "⚠️" in summary and "does not look like an OCT B-scan" in summary
    else:
        assert "Cannot read" in summary and out[VIT_LABEL] is None


def test_dicom_frames_are_all_classified_and_the_most_urgent_is_shown(models, sample, tmp_path):
    scans = [
        np.asarray(Image.open(p).convert("L").resize((512, 248)))
        for p in sorted((sample / "NORMAL").glob("*.jpeg"))[:2]
    ]
    single = analyse(write(tmp_path / "one.dcm", dicom(scans[:1])), models)
    assert single[VIT_LABEL] is not None and len(single[FRAMES]) == 1
    multi = analyse(write(tmp_path / "volume.dcm", dicom(scans + scans[:1])), models)
    assert len(multi[FRAMES]) == 3 and "3 frames" in multi[SUMMARY] and "most urgent" in multi[SUMMARY]
    broken = analyse(write(tmp_path / "bad.dcm", dicom(scans[:1])[:400]), models)
    assert "Cannot read" in broken[SUMMARY]


def test_batch_of_files_and_a_hostile_zip_gives_a_table_and_csv(models, sample, tmp_path):
    scans = sorted((sample / "DME").glob("*.jpeg"))[:3]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../../escaped.jpeg", scans[0].read_bytes())  # path traversal: read in memory, never written
        z.writestr("notes.txt", "not a scan")
        z.writestr("deep/scan.jpeg", scans[1].read_bytes())
    paths = [str(scans[2]), write(tmp_path / "scans.zip", archive.getvalue())]
    table, csv_path = batch(paths, models)
    assert list(table.columns[:2]) == ["file", "ViT label"] and "HOG+LBP SVM label" in table.columns
    assert len(table) == 4
    assert table["ViT label"].isin(CLASSES).sum() == 3 and "cannot read" in table["warnings"].iloc[2].lower()
    assert Path(csv_path).read_text().count("\n") == 5
    assert not (tmp_path.parent / "escaped.jpeg").exists() and not Path("escaped.jpeg").exists()


def test_with_no_models_the_app_starts_and_says_what_is_missing(tmp_path, a_scan):
    none = Models(vit=str(tmp_path / "no-vit"), classical=str(tmp_path / "no-svm"))
    assert none.names == [] and len(none.problems) == 2
    assert "python -m train" in none.problems[0] and "baselines.train" in none.problems[1]
    build(none)
    assert "No model is loaded" in analyse(str(a_scan), none)[SUMMARY]


@pytest.fixture(scope="module")
def served(models):
    demo = build(models).queue(default_concurrency_limit=4, max_size=256)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    yield url
    demo.close()


def test_launched_app_answers_single_batch_dicom_and_bad_requests(served, a_scan, sample, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(served, verbose=False)
    out = client.predict(handle_file(str(a_scan)), api_name="/predict")
    assert out[VIT_LABEL]["label"] in CLASSES and out[SVM_LABEL]["label"] in CLASSES
    table, csv_file = client.predict([handle_file(str(a_scan))], api_name="/batch")
    assert len(table["data"]) == 1 and Path(csv_file).read_text().startswith("file,")
    bad = client.predict(handle_file(write(tmp_path / "x.jpeg", b"garbage")), api_name="/predict")
    assert "Cannot read" in bad[SUMMARY]
    frames = [
        np.asarray(Image.open(p).convert("L").resize((512, 248))) for p in sorted((sample / "CNV").glob("*.jpeg"))[:2]
    ]
    volume = client.predict(handle_file(write(tmp_path / "volume.dcm", dicom(frames))), api_name="/predict")
    assert "2 frames" in volume[SUMMARY] and len(volume[FRAMES]["data"]) == 2


def test_twenty_parallel_clients_are_all_answered(served, sample):
    from gradio_client import Client, handle_file

    scans = sorted(sample.glob("*/*.jpeg"))[:20]

    def one(path: Path) -> str:
        return Client(served, verbose=False).predict(handle_file(str(path)), api_name="/predict")[VIT_LABEL]["label"]

    with ThreadPoolExecutor(20) as pool:
        labels = list(pool.map(one, scans))
    assert len(labels) == 20 and all(label in CLASSES for label in labels)


def test_browser_upload_renders_both_predictions(served, a_scan):
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(served)
        page.locator("input[type=file]").first.set_input_files(str(a_scan))
        for element in ("#vit-label", "#svm-label"):
            page.wait_for_function(
                f"() => {{ const e = document.querySelector('{element}'); "
                "return e && /CNV|DME|DRUSEN|NORMAL/.test(e.innerText); }",
                timeout=60_000,
            )
        assert "not a diagnosis" in page.content()
        browser.close()


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
    assert not (bundle / "tests").exists() and len(list((bundle / "space" / "examples").glob("*.jpeg"))) == 4
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1"}
    env.pop("OCT_VIT_MODEL", None), env.pop("OCT_BASELINE_MODEL", None)
    check = (
        "import runpy; runpy.run_path('space/app.py', run_name='bundle_check'); "  # app.py puts the bundle first
        "import octcore, models.vit, models.classical, baselines.features, space.engine; "
        "print(octcore.__file__, models.vit.__file__, models.classical.__file__, baselines.features.__file__, "
        "space.engine.__file__)"
    )
    where = subprocess.run(
        [sys.executable, "-c", check], cwd=bundle, capture_output=True, text=True, env=env, timeout=120
    )
    assert where.returncode == 0, where.stderr[-2000:]
    assert all(path.startswith(str(bundle)) for path in where.stdout.split()), where.stdout
    server = subprocess.Popen(
        [sys.executable, "space/app.py"],
        cwd=bundle,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        printed = []
        for line in server.stdout:  # Gradio prints its URL once it serves; no polling against a clock
            printed.append(line)
            if "Running on local URL" in line:
                break
        else:
            pytest.fail("the bundle's app exited before serving:\n" + "".join(printed)[-2000:])
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        out = client.predict(handle_file(str(a_scan)), api_name="/predict")
        assert out[VIT_LABEL]["label"] in CLASSES and out[SVM_LABEL]["label"] in CLASSES
    finally:
        server.terminate()
        server.wait(timeout=30)


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
