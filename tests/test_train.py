"""The ViT trainer on real scans with a tiny randomly initialised DINOv2: train, kill, resume, reload, export."""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image
from safetensors.numpy import load_file

from conftest import ROOT, SAMPLE, assert_no_local_paths, copy_scan
from models import ModelFormatError, UnsafeModelError, load_model
from models.card import training_summary
from models.scope import ACCEPT
from octcore.data import discover, load_split, select
from train import export_onnx, onnx_int8


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """16 real scans per class from the bundled sample, flat layout."""
    folder = tmp_path_factory.mktemp("data")
    for label in ("CNV", "DME", "DRUSEN", "NORMAL"):
        for scan in sorted((SAMPLE / label).glob("*.jpeg"))[:16]:
            copy_scan(scan, folder / label)
    return folder


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    from transformers import Dinov2Config, Dinov2Model

    folder = tmp_path_factory.mktemp("tiny-dinov2")
    config = Dinov2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=56, patch_size=14
    )
    # Its own seed, so its weights do not hang on what earlier tests drew from torch's global generator (a trainer
    # run in process seeds it with 0, the randomisation check's seed, which once made this base that check's
    # "randomised" network). fork_rng: the global generator is left as it was.
    with torch.random.fork_rng():
        torch.manual_seed(1)
        Dinov2Model(config).save_pretrained(folder)
    return folder


def train_command(data: Path, base: Path, out: Path) -> list[str]:
    options = (
        "--epochs 3 --batch-size 8 --checkpoint-every 2 --workers 0 --seed 1 --base-model-id facebook/dinov2-small"
    )
    paths = ["--data", str(data), "--base-model", str(base), "--out", str(out)]
    return [sys.executable, "-m", "train", *paths, *options.split()]


def run(command: list[str]) -> str:
    """Runs a trainer command to its end; its stderr (the progress and what it said)."""
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr


@pytest.fixture(scope="module")
def trained(small_data, tiny_base, tmp_path_factory) -> Path:
    """A tiny ViT trained by the default command; what it printed is kept beside it, in said.txt."""
    out = tmp_path_factory.mktemp("runs") / "tiny-vit"
    (out.parent / "said.txt").write_text(run(train_command(small_data, tiny_base, out)))
    return out


def test_killed_run_resumes_to_the_same_model_and_weights_average(trained, small_data, tiny_base, tmp_path):
    """--ema: the folder holds the moving average (not the weights the default run keeps). SIGKILL right after the
    second step checkpoint is saved (mid-run), then the same command again: it resumes from that checkpoint and ends
    bit-identical to the uninterrupted run. The average is updated from the weights at every step, so its bits
    check the weights' resume too; this is the one resume test, to keep the suite short (each run is a process)."""
    runs = {}
    for name in ("uninterrupted", "killed"):
        out = tmp_path / name
        command = train_command(small_data, tiny_base, out) + ["--ema", "0.9"]
        if name == "killed":
            killer = [sys.executable, "tests/killer.py", "train.loop:save_checkpoint", "2", *command[2:]]
            killed = subprocess.run(killer, cwd=ROOT, capture_output=True, start_new_session=True, timeout=300)
            assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
            assert not (out / "model.safetensors").exists() and len(list((out / "checkpoints").glob("step_*"))) == 1
        run(command)  # for the killed run, the same command again: it resumes from the last checkpoint
        runs[name] = load_file(out / "model.safetensors")
    plain = load_file(trained / "model.safetensors")  # the same command and seed without --ema
    assert runs["killed"].keys() == runs["uninterrupted"].keys() == plain.keys()
    for name in plain:
        np.testing.assert_array_equal(runs["killed"][name], runs["uninterrupted"][name], err_msg=name)
    assert any(not np.array_equal(runs["uninterrupted"][name], plain[name]) for name in plain)
    metrics = [json.loads((tmp_path / name / "metrics.json").read_text()) for name in runs]
    assert metrics[0]["history"] == metrics[1]["history"] and metrics[0]["accuracy"] == metrics[1]["accuracy"]
    said = "as a moving average of the weights (decay 0.9"  # the card says which weights it describes
    assert said in (tmp_path / "killed" / "README.md").read_text() and said not in (trained / "README.md").read_text()


def test_the_model_sees_the_same_pixels_in_training_and_in_the_space(trained, small_data):
    """One decode for both: the trainer's (unaugmented) input tensor for a file equals what the Space
    computes from the uploaded bytes of that file."""
    from transformers import AutoImageProcessor

    from octcore.data import discover
    from octcore.imaging import ScanImage
    from space.uploads import iter_upload
    from train.data import ModelInputs, scan_dataset

    scans = discover(small_data)[:3]
    processor = AutoImageProcessor.from_pretrained(trained)
    training, _ = scan_dataset(scans, processor)
    inputs, vit = ModelInputs(processor), load_model(trained, backend="torch")
    for i, scan in enumerate(scans):
        (frame,) = iter_upload(scan.path.read_bytes(), scan.path.name)
        seen = vit.pixels([ScanImage(frame.gray, frame.colour, frame.name)])[0]
        item = training[i]
        assert item["pixels"].dtype == torch.uint8  # what the loader workers send
        trained_on = inputs({"pixels": item["pixels"][None], "labels": torch.tensor([item["labels"]])})
        np.testing.assert_array_equal(trained_on["pixel_values"][0].numpy(), seen)


def test_the_processors_table_gives_its_output_bit_for_bit(trained, small_data):
    """processor_table: the processor's output for every gray level, so that a lookup is the processor; None for a
    processor whose output is not one value per level (here, one that centre-crops)."""
    from transformers import AutoImageProcessor

    from models.vit import processor_images, processor_table, table_pixels
    from octcore.imaging import read_scan

    processor = AutoImageProcessor.from_pretrained(trained)
    images = processor_images(processor, [read_scan(path).gray for path in sorted(small_data.glob("*/*.jpeg"))[:8]])
    table = processor_table(processor)
    assert table.shape == (3, 256) and table.dtype == np.float32
    own = processor(images=images, return_tensors="np")["pixel_values"]
    np.testing.assert_array_equal(table_pixels(table, images), own)
    assert processor_table(AutoImageProcessor.from_pretrained(trained, do_center_crop=True)) is None


def test_grayscale_resized_first_gives_the_processors_own_pixels(trained, small_data):
    """processor_images resizes the 8-bit scan before the processor turns it into RGB: the same tensor as the
    processor given the whole scan, for a third of the work."""
    from transformers import AutoImageProcessor

    from models.vit import processor_images
    from octcore.imaging import read_scan, to_image

    processor = AutoImageProcessor.from_pretrained(trained)
    grays = [read_scan(path).gray for path in sorted(small_data.glob("*/*.jpeg"))[:12]]
    own = processor(images=[to_image(g) for g in grays], return_tensors="np")["pixel_values"]
    presized = processor_images(processor, grays)
    assert presized[0].size == (processor.size["width"], processor.size["height"])
    np.testing.assert_array_equal(processor(images=presized, return_tensors="np")["pixel_values"], own)


def test_augmenting_at_the_input_size_keeps_the_scans_speckle_and_the_unaugmented_pixels(
    trained, small_data, tiny_base, tmp_path
):
    """--augment-at input: the draws of the augmentation at the scan, made on the resized one, with a speckle as strong
    as the decoded scan's is after the processor's resize (at any input size); decoding once or each time gives the
    same; refused for a processor that does not resize so."""
    from transformers import AutoImageProcessor

    from models.vit import processor_images
    from octcore.data import discover
    from octcore.imaging import DECODE_SIZE, eight_bit, read_scan
    from train.data import (
        augment_resized,
        input_speckle,
        make_processor,
        scan_dataset,
        speckle_bank,
        tone_and_speckle,
    )

    processor = AutoImageProcessor.from_pretrained(trained)
    flat = 0.4 * speckle_bank()[: DECODE_SIZE[0] * DECODE_SIZE[1]].reshape(DECODE_SIZE)  # the scan's speckle...
    for sized in (processor, make_processor(str(tiny_base), (224, 224))):  # DINOv2's 168 x 336, a square ViT's
        kept = np.asarray(processor_images(sized, [flat])[0], np.float32)[4:-4, 4:-4]  # ...after the resize
        small = np.full(kept.shape, 0.4, dtype=np.float32)
        own = [tone_and_speckle(small.copy(), np.random.default_rng(i), input_speckle(sized)) for i in range(40)]
        spread = [out.std() / out.mean() for out in own if out.std() / out.mean() > 0.05]
        assert len(spread) >= 10 and abs(np.median(spread) / (kept.std() / kept.mean()) - 1) < 0.05

    scans = discover(small_data)[:4]
    plain, _ = scan_dataset(scans, processor)
    at_scan, _ = scan_dataset(scans, processor, augment_seed=3)
    at_input, _ = scan_dataset(scans, processor, augment_seed=3, augment_at="input")
    decoded_once, _ = scan_dataset(scans, processor, augment_seed=3, augment_at="input", decoded=tmp_path, workers=2)
    assert "image" not in decoded_once.column_names and list(tmp_path.glob("*.arrow"))  # read from pixels on disk
    for i in range(len(scans)):
        unaugmented = plain[i]["pixels"].numpy()
        a, b = (data[i]["pixels"].numpy().astype(float) for data in (at_scan, at_input))
        assert a.shape == b.shape == unaugmented.shape and not np.array_equal(a, b)
        np.testing.assert_array_equal(decoded_once[i]["pixels"].numpy(), b)  # decoded once or every time: the same
        # the same draws (shift, zoom, flip, brightness, speckle or not) at the other size: within a few gray levels
        assert np.abs(a - b).mean() < 8 and np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95

    class Middle:  # every draw at the middle of its range, no flip, no speckle: no augmentation at all
        def uniform(self, low: float, high: float) -> float:
            return (low + high) / 2

        def random(self) -> float:
            return 0.9

    gray = read_scan(scans[0].path).gray
    unchanged = np.asarray(augment_resized(eight_bit(gray), Middle(), processor), dtype=int)
    plain_image = np.asarray(processor_images(processor, [gray])[0], dtype=int)
    assert np.abs(unchanged - plain_image)[3:-3, 3:-3].max() <= 1  # the very resize, but at the edges
    # The same folder for other scans (a new run where a killed one left its files): theirs, never the old ones.
    others = discover(small_data)[-3:]
    again, _ = scan_dataset(others, processor, augment_seed=3, augment_at="input", decoded=tmp_path, workers=2)
    fresh, _ = scan_dataset(others, processor, augment_seed=3, augment_at="input")
    assert [again[i]["labels"] for i in range(3)] == [scan.label_id for scan in others]
    np.testing.assert_array_equal(again[2]["pixels"].numpy(), fresh[2]["pixels"].numpy())
    assert len(list(tmp_path.glob("*.arrow"))) == 2  # the two workers' parts of this list alone
    # docs/results.md's figures: 97 at the 126 x 252 input it was measured at, 55 at DINOv2's default 168 x 336
    assert input_speckle(make_processor(str(tiny_base), (126, 252))) == 97 and input_speckle(processor) == 55
    with pytest.raises(ValueError, match="fixed height x width"):
        scan_dataset(scans, AutoImageProcessor.from_pretrained(trained, do_center_crop=True), 3, "input")


def test_training_decodes_the_scans_once_by_default_and_leaves_none_behind(trained, small_data, tiny_base, tmp_path):
    """The default (--augment-at input) decodes the training scans once and removes them at the end; the recipe
    before (--augment-at scan) decodes each scan every epoch and writes none."""
    assert "decoding the training scans once" in (trained.parent / "said.txt").read_text()  # the default command
    assert not (trained / "checkpoints" / "decoded").exists()
    out = tmp_path / "tiny-vit-scan"
    said = run(train_command(small_data, tiny_base, out) + ["--augment-at", "scan", "--max-steps", "2"])
    assert "decoding the training scans once" not in said
    assert not (out / "checkpoints" / "decoded").exists()


def test_augmentation_flips_in_its_affine_pass_and_speckles_like_gamma_16(a_scan):
    from octcore.imaging import read_scan
    from train.data import affine_matrix, augment

    gray = read_scan(a_scan).gray
    height, width = gray.shape

    def warp(flip: bool) -> np.ndarray:
        matrix = affine_matrix(width, height, 1.07, 9.5, -4.2, flip)
        warped = Image.fromarray(gray).transform((width, height), Image.Transform.AFFINE, matrix, Image.BILINEAR)
        return np.asarray(warped)

    np.testing.assert_allclose(warp(True), warp(False)[:, ::-1], atol=1e-5)
    # On a flat grey image only the brightness and the speckle show: in about half the draws, pixel noise with
    # sd/mean 0.25 (gamma(16)/16), independent from pixel to pixel and different from scan to scan.
    flat = np.full((248, 512), 0.4, dtype=np.float32)
    outs = [augment(flat, np.random.default_rng([0, 0, index])) for index in range(40)]
    spread = np.array([out[30:-30, 60:-60].std() / out[30:-30, 60:-60].mean() for out in outs])
    speckled = [out[30:-30, 60:-60] for out, s in zip(outs, spread) if s > 0.1]
    assert 10 <= len(speckled) <= 30 and np.all((spread < 1e-3) | (np.abs(spread - 0.25) < 0.01))
    first = speckled[0] - speckled[0].mean()
    assert abs(np.corrcoef(first[:, 1:].ravel(), first[:, :-1].ravel())[0, 1]) < 0.02
    assert abs(np.corrcoef(first.ravel(), (speckled[1] - speckled[1].mean()).ravel())[0, 1]) < 0.02
    np.testing.assert_array_equal(augment(gray, np.random.default_rng(5)), augment(gray, np.random.default_rng(5)))
    big = np.full((2100, 2100), 0.4, dtype=np.float32)  # more pixels than the bank holds: drawn for it alone
    middles = [augment(big, np.random.default_rng(i))[500:-500, 500:-500] for i in range(6)]
    spread = np.array([middle.std() / middle.mean() for middle in middles])
    assert np.any(np.abs(spread - 0.25) < 0.01) and np.any(spread < 1e-3)


def test_folder_works_with_pipeline_and_from_pretrained(trained, small_data):
    from transformers import AutoModelForImageClassification, pipeline

    scan = next((small_data / "DRUSEN").glob("*.jpeg"))
    result = pipeline("image-classification", model=str(trained), top_k=4)(str(scan))
    assert sorted(r["label"] for r in result) == ["CNV", "DME", "DRUSEN", "NORMAL"]
    assert abs(sum(r["score"] for r in result) - 1) < 1e-4
    model = AutoModelForImageClassification.from_pretrained(trained)
    assert model.config.id2label == {0: "CNV", 1: "DME", 2: "DRUSEN", 3: "NORMAL"}
    processor = json.loads((trained / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": 168, "width": 336} and not processor["do_center_crop"]
    assert (trained / "split.json").is_file()


def test_model_card_carries_the_measured_figures_and_follows_the_hub_rules(trained):
    from octcore.hub import card_problems

    metrics = json.loads((trained / "metrics.json").read_text())
    text = (trained / "README.md").read_text()
    assert card_problems(text) == []
    card = ModelCard.load(trained / "README.md")
    assert card.data.pipeline_tag == "image-classification" and card.data.library_name == "transformers"
    assert card.data.base_model == "facebook/dinov2-small"  # the Hub id the local base stands for, not its path
    results = {r.metric_type: r for r in card.data.eval_results}
    assert set(results) == {"accuracy", "f1", "sensitivity", "specificity"}
    assert results["accuracy"].metric_value == round(metrics["accuracy"], 4) and results["f1"].dataset_split == "test"
    assert results["f1"].metric_args["average"] == "macro"
    assert results["f1"].metric_args["ci95"] == [round(v, 4) for v in metrics["ci95"]["macro_f1"]]
    assert "not a diagnosis" in card.text and "Patient leakage" in card.text and "USER/MODEL" in card.text
    assert "model_int8.onnx" not in card.text  # no int8 file yet
    assert f"test {metrics['n_images']} scans" in card.text and "![training curves](training_curves.png)" in card.text
    record = json.loads((trained / "training.json").read_text())
    precision = record["details"]["mixed_precision"]
    assert ("in float32" in card.text) == (precision == "no")  # the precision it was trained in, in words
    # The line a side-by-side report shows for it: base, input, epochs, seed and training scans from the record.
    details, n_train = record["details"], record["dataset"]["counts"]["train"]
    assert training_summary(trained) == (
        f"fine-tuned from `facebook/dinov2-small` at {details['height']}x{details['width']}, {details['epochs']} "
        f"epochs, seed {details['seed']}, on {n_train} training scans"
    )
    assert_no_local_paths(trained, ["README.md", "training.json", "metrics.json", "config.json", "logs/metrics.jsonl"])


def test_training_is_logged_to_a_tracker_and_drawn(trained):
    from octcore.plots import read_training_log

    records = read_training_log(trained / "logs" / "metrics.jsonl")
    steps = [r for r in records if "train/loss" in r]
    epochs = [r for r in records if "val/macro_f1" in r]
    assert len(epochs) == 3 and all(r["val/n_scans"] == epochs[0]["val/n_scans"] for r in epochs)
    assert [r["step"] for r in steps] == list(range(1, len(steps) + 1)) and all(
        r["train/images_per_s"] > 0 for r in steps
    )
    assert Image.open(trained / "training_curves.png").size[0] > 500


def test_a_name_with_yaml_syntax_still_makes_a_valid_card(trained, tmp_path):
    from models.card import render_card
    from octcore.hub import card_problems

    folder = tmp_path / "vit: test"
    shutil.copytree(trained, folder, ignore=shutil.ignore_patterns("checkpoints", "onnx"))
    record = json.loads((folder / "training.json").read_text())
    (folder / "training.json").write_text(json.dumps({**record, "model_name": "vit: test #1"}))
    text = str(render_card(folder))  # the card written beside the run: named after the run
    assert card_problems(text) == [] and ModelCard(text).data.model_name == "vit: test #1"
    text = str(render_card(folder, "someone/vit-test"))  # the card pushed: named after its repo
    assert card_problems(text) == [] and ModelCard(text).data.model_name == "vit-test"


def test_int8_onnx_export_agrees_with_pytorch(trained, small_data, tmp_path):
    assert export_onnx.main(["--model", str(trained), "--data", str(small_data), "--threads", "1"]) == 0
    check = json.loads((trained / "onnx" / "check.json").read_text())
    assert check["agreement"]["mean_abs_prob_diff"] <= onnx_int8.MAX_MEAN_PROB_DIFF
    # The position embeddings are a constant of the graph, not resized again for every scan.
    graph = onnx.load(str(trained / "onnx" / "model_int8.onnx"), load_external_data=False).graph
    operators = {node.op_type for node in graph.node}
    assert "Resize" not in operators
    # The patch embedding stays float (ONNX Runtime's ConvInteger is about four times slower); every weight
    # matrix product is int8.
    weights = {tensor.name for tensor in graph.initializer}
    float_products = [node for node in graph.node if node.op_type == "MatMul"]
    assert "ConvInteger" not in operators and "Conv" in operators
    assert float_products and not any(weights & set(node.input) for node in float_products)
    scans = sorted((small_data / "CNV").glob("*.jpeg"))[:3]
    fast, reference = load_model(trained), load_model(trained, backend="torch")
    assert fast.backend == "onnx"
    np.testing.assert_allclose(fast.predict_proba(scans), reference.predict_proba(scans), atol=0.05)
    # The int8 model's out-of-scope threshold is its own, refitted on the validation scans it passes.
    refit = check["out_of_scope"]
    assert refit["threshold"] != refit["float32_threshold"] == reference.calibration.out_of_scope.threshold
    assert fast.calibration.out_of_scope.threshold == refit["threshold"]
    everything = discover(small_data)
    val = [s.path for s in select(everything, load_split(trained / "split.json", everything), "val")]
    assert f"({len(val)} scans)" in refit["fitted_on"]
    assert fast.classify(val).flagged.mean() <= 1 - ACCEPT
    # Exported again, the folder's float32 threshold is the one refitted from, not the last export's.
    assert onnx_int8.int8_threshold(trained, val, 1) == refit
    damaged = tmp_path / "damaged"
    shutil.copytree(trained, damaged, ignore=shutil.ignore_patterns("checkpoints"))
    (damaged / "onnx" / "check.json").write_text("[")
    with pytest.raises(ModelFormatError, match="check.json is not valid JSON"):
        load_model(damaged)


def test_unreadable_scan_stops_training_with_its_reason(small_data, tiny_base, tmp_path, capsys):
    from train.__main__ import main

    data = tmp_path / "data"
    for label in ("CNV", "NORMAL"):
        for scan in sorted((small_data / label).glob("*.jpeg"))[:4]:
            copy_scan(scan, data / label)
    (data / "CNV" / "CNV-999-1.jpeg").write_bytes(b"not a jpeg")
    assert main(["--data", str(data), "--base-model", str(tiny_base), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "CNV-999-1.jpeg" in err and "not an image" in err and "octcore.audit" in err


def test_export_of_a_folder_that_is_no_vit_is_a_clear_error(small_baseline, capsys):
    assert export_onnx.main(["--model", str(small_baseline)]) == 2
    assert "not a model folder written by python -m train" in capsys.readouterr().err


def test_a_crash_while_saving_never_leaves_a_half_written_folder(trained, tmp_path):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from train.loop import save_model_folder

    model, processor = (
        AutoModelForImageClassification.from_pretrained(trained),
        AutoImageProcessor.from_pretrained(trained),
    )
    unserialisable = {"accuracy": object()}  # fails after the weights and processor are written
    fresh = tmp_path / "fresh"
    with pytest.raises(TypeError):
        save_model_folder(fresh, model, processor, unserialisable, {})
    assert not fresh.exists() and not list(tmp_path.iterdir())  # nothing that could load, no staging left

    previous = tmp_path / "previous"
    shutil.copytree(trained, previous, ignore=shutil.ignore_patterns("onnx"))
    (previous / "checkpoints").mkdir(exist_ok=True)
    weights = load_file(previous / "model.safetensors")
    model.classifier.weight.data += 1  # a different model whose save then crashes
    with pytest.raises(TypeError):
        save_model_folder(previous, model, processor, unserialisable, {})
    kept = load_file(previous / "model.safetensors")
    assert all(np.array_equal(kept[k], weights[k]) for k in weights) and (previous / "checkpoints").is_dir()
    assert [p.name for p in tmp_path.iterdir()] == ["previous"]


def test_pickle_weights_are_never_loaded(trained, tmp_path):
    import torch
    from transformers import AutoModelForImageClassification

    folder = tmp_path / "pickled"
    shutil.copytree(trained, folder, ignore=shutil.ignore_patterns("onnx", "checkpoints", "model.safetensors"))
    torch.save(
        AutoModelForImageClassification.from_pretrained(trained).state_dict(), folder / "pytorch_model.bin"
    )  # a pickle
    with pytest.raises(UnsafeModelError, match="pytorch_model.bin"):
        load_model(folder)


def test_base_checkpoint_check(tiny_base, tmp_path, capsys):
    from train.__main__ import main

    assert main(["--check-base", "--base-model", str(tiny_base)]) == 0
    assert main(["--check-base", "--base-model", str(tmp_path)]) == 3  # a folder with no checkpoint in it
    assert "cannot load the base checkpoint" in capsys.readouterr().err


def test_an_unreachable_hub_is_said_at_once(tiny_base, tmp_path, capsys, monkeypatch):
    """Offline (the Hub's name does not resolve), a Hub id not in the local cache is refused without asking the Hub,
    whose client would retry for about 25 s first; one in the cache, and a local folder, are loaded as before."""
    import huggingface_hub
    import transformers

    from train.__main__ import main

    def no_name(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    asked = []
    load = transformers.AutoConfig.from_pretrained

    def config(source, *args, **kwargs):  # the real loader, for sources it can have without the network
        asked.append(str(source))
        if str(source) == "facebook/dinov2-small":
            return load(tiny_base)
        return load(source, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", no_name)
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", config)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert main(["--check-base", "--base-model", "facebook/dinov2-small"]) == 3
    assert "huggingface.co cannot be reached from here" in capsys.readouterr().err and asked == []
    cached = tmp_path / "hub" / "models--facebook--dinov2-small"
    (cached / "refs").mkdir(parents=True)
    (cached / "refs" / "main").write_text("0" * 40)
    shutil.copytree(tiny_base, cached / "snapshots" / ("0" * 40))
    assert main(["--check-base", "--base-model", "facebook/dinov2-small"]) == 0 and asked == ["facebook/dinov2-small"]
    assert main(["--check-base", "--base-model", str(tiny_base)]) == 0


@pytest.mark.parametrize(
    "capabilities, auto",
    [
        ({"architecture": "x86_64", "avx2": True}, "no"),  # AVX2 alone: bf16 emulated, far slower than float32
        ({"architecture": "x86_64", "avx2": True, "avx512_bw": True, "avx512_vl": True, "avx512_dq": True}, "bf16"),
        ({"architecture": "aarch64", "neon": True, "bf16": True}, "bf16"),
    ],
)
def test_auto_mixed_precision_is_bf16_only_where_the_cpu_computes_in_it(capabilities, auto, monkeypatch):
    from train.__main__ import parse_args

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    given = ["--data", str(SAMPLE), "--out", "unused"]
    assert parse_args(given).mixed_precision == auto
    assert parse_args([*given, "--mixed-precision", "bf16"]).mixed_precision == "bf16"  # asked for, as asked


def test_recipe_candidates_are_distinct_recipes_and_one_is_the_trainer_default():
    """Each candidate of benchmarks/vit_recipe.py names every setting any candidate varies, so no two train the same
    recipe when the trainer's defaults move on (augment-at-input once inherited the drop path drop-path-0.1 adds);
    and the candidate the docs report as the trainer's default is what `python -m train` runs with no options."""
    import importlib.util

    from transformers import Dinov2Config

    import train.__main__ as trainer
    from train.data import input_size

    spec = importlib.util.spec_from_file_location("vit_recipe", ROOT / "benchmarks" / "vit_recipe.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    named = {name: set(options[::2]) for name, options in recipe.CANDIDATES.items()}
    assert all(options == named[recipe.DEFAULT] for options in named.values()), named
    varied = [option.lstrip("-").replace("-", "_") for option in sorted(named[recipe.DEFAULT])]
    given = ["--data", str(SAMPLE), "--out", "unused"]

    def settings(options: list[str]) -> tuple:
        args = trainer.parse_args([*given, *options])
        if args.drop_path is None:  # as main resolves it for the DINOv2 base
            args.drop_path = trainer.default_drop_path(Dinov2Config())
        if args.image_size is None:  # likewise
            args.image_size = "x".join(map(str, input_size(Dinov2Config())))
        return tuple(getattr(args, name) for name in varied)

    recipes = {name: settings(options) for name, options in recipe.CANDIDATES.items()}
    assert len(set(recipes.values())) == len(recipes), recipes
    assert settings([]) == recipes[recipe.DEFAULT]


def test_recipe_runs_from_a_local_base_name_its_hub_id_when_given(tmp_path, monkeypatch):
    """A round run from a local copy of the base (as on a machine without the Hub) passes --base-model-id to every
    run, so each card still names its base; the trainer accepts the command as built. Without it, none is passed."""
    import argparse
    import importlib.util

    import train.__main__ as trainer

    spec = importlib.util.spec_from_file_location("vit_recipe", ROOT / "benchmarks" / "vit_recipe.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    commands = []

    def run(command, **kwargs):
        commands.append(command)
        return argparse.Namespace(returncode=0)

    monkeypatch.setattr(recipe.subprocess, "run", run)
    for base_id in ("facebook/dinov2-small", None):
        args = argparse.Namespace(
            data=str(SAMPLE), base_model="local/copy/folder", base_model_id=base_id, split_file="split.json",
            out=str(tmp_path / str(base_id).replace("/", "-")), workers=1, folds=None,
        )  # fmt: skip
        Path(args.out).mkdir()
        recipe.train(recipe.DEFAULT, 0, args)
    with_id, without_id = commands
    assert with_id[with_id.index("--base-model-id") + 1] == "facebook/dinov2-small"
    assert "--base-model-id" not in without_id
    parsed = trainer.parse_args(with_id[with_id.index("train") + 1 :])
    assert (parsed.base_model, parsed.base_model_id) == ("local/copy/folder", "facebook/dinov2-small")


def test_the_card_says_whether_pipeline_gives_the_probabilities_the_figures_were_scored_on(trained, tmp_path):
    """`pipeline` gives the softmax as it is: the card says it lacks the temperature where one was kept, and that it
    is what the figures were scored on where the temperature is 1 (the fitted one not kept)."""
    import shutil

    from models.card import render_card

    for temperature, said in ((0.8, "without the temperature"), (1.0, "`pipeline` gives the probabilities")):
        folder = tmp_path / f"t{temperature}"
        shutil.copytree(trained, folder, ignore=shutil.ignore_patterns("checkpoints", "*.safetensors"))
        calibration = json.loads((folder / "calibration.json").read_text())
        (folder / "calibration.json").write_text(json.dumps({**calibration, "temperature": temperature}))
        text = render_card(folder).text
        assert said in text, temperature
        kept = (
            "temperature of 0.80 before the softmax" if temperature != 1 else "the model's own softmax (temperature 1)"
        )
        assert kept in text, temperature
        assert ("(temperature-scaled)" in text) == (temperature != 1)
        assert ("without the temperature" in text) == (temperature != 1)


def test_a_base_that_names_no_hub_id_is_said_before_training(small_data, tiny_base, tmp_path, capsys, monkeypatch):
    """A local base makes a card with no base_model unless --base-model-id names one: the trainer says so before it
    trains, and how to name one. A local folder whose path has the shape of a Hub id is never taken for one."""
    import train.__main__ as trainer

    options = ["--data", str(small_data), "--workers", "0", "--max-steps", "1", "--out", str(tmp_path / "run")]
    monkeypatch.chdir(tiny_base.parent.parent)
    shaped = f"{tiny_base.parent.name}/{tiny_base.name}"  # owner/name, and a folder here
    for base in (str(tiny_base), shaped):
        assert trainer.main([*options, "--base-model", base]) == 0
        assert "pass it with --base-model-id" in capsys.readouterr().out, base
    assert trainer.main([*options, "--base-model", shaped, "--base-model-id", "facebook/dinov2-small"]) == 0
    assert "--base-model-id" not in capsys.readouterr().out
    with pytest.raises(SystemExit):  # a card would silently leave out an id of another form
        trainer.main([*options, "--base-model", shaped, "--base-model-id", "dinov2-small"])
    assert "is not a Hub id" in capsys.readouterr().err
    ask = argparse.Namespace(base_model="facebook/dinov2-small", base_model_id=None)
    assert trainer.base_model_id(ask) == "facebook/dinov2-small"  # a Hub id given as the base is named as it is


def test_a_linear_probe_head_gives_the_logistic_regressions_probabilities():
    """--head-init linear-probe: the head, taking the features as they come, gives the probabilities of the logistic
    regression fitted on them standardised (features of very different scales, as a ViT's are); a class with no
    training scan is never predicted, and two classes give the one-row binary fit's answers."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from train.loop import fit_head_by_linear_probe

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 30)
    features = rng.normal(size=(120, 12)) + labels[:, None] * rng.normal(size=12)  # overlapping class clouds
    features = features * np.logspace(-2, 3, 12) + 50.0  # scales from 0.01 to 1000, off centre
    model = torch.nn.Module()
    model.classifier = torch.nn.Linear(12, 4)
    for present in ([0, 1, 2, 3], [0, 1, 3], [1, 3]):
        keep = np.isin(labels, present)
        x, y = features[keep], labels[keep]
        accuracy = fit_head_by_linear_probe(model, x, y)
        with torch.no_grad():
            proba = model.classifier(torch.as_tensor(features, dtype=torch.float32)).double().softmax(1).numpy()
        scaler = StandardScaler().fit(x)
        fitted = LogisticRegression(max_iter=2000).fit(scaler.transform(x), y)
        expected = fitted.predict_proba(scaler.transform(features))
        np.testing.assert_allclose(proba[:, present], expected, atol=1e-3, err_msg=str(present))
        assert proba[:, np.setdiff1d(np.arange(4), present)].max(initial=0) < 1e-3
        assert accuracy == pytest.approx((fitted.predict(scaler.transform(x)) == y).mean()) and accuracy > 0.5


def test_a_run_with_a_linear_probe_head_fits_it_on_the_training_scans_and_says_so(
    trained, small_data, tiny_base, tmp_path, capsys
):
    """The notebook's ViT (--head-init linear-probe --freeze-layers all): the probe is fitted on every training scan
    of the split (each once, unaugmented) before the first step, the pretrained blocks and embeddings come out as
    they went in, and the run's record and card say how its head began. More blocks than the base has are refused."""
    import train.__main__ as trainer

    out = tmp_path / "probed"
    options = ["--data", str(small_data), "--base-model", str(tiny_base), "--workers", "0", "--epochs", "1"]
    probe = ["--head-init", "linear-probe", "--freeze-layers", "all", "--batch-size", "8"]
    assert trainer.main([*options, *probe, "--out", str(out)]) == 0
    scans = discover(small_data)
    n_train = len(select(scans, load_split(out / "split.json", scans), "train"))
    assert f"head: linear probe on {n_train} training scans" in capsys.readouterr().out
    base, probed = load_file(tiny_base / "model.safetensors"), load_file(out / "model.safetensors")
    frozen = [name for name in base if name.startswith(("embeddings.", "encoder."))]
    assert frozen and all(np.array_equal(base[name], probed[f"dinov2.{name}"]) for name in frozen)
    details = json.loads((out / "training.json").read_text())["details"]
    assert details["head_init"] == "linear-probe" and "lowest 2 blocks frozen" in details["frozen"]
    card, default_card = (out / "README.md").read_text(), (trained / "README.md").read_text()
    assert "first fitted as a linear probe" in card and "linear probe" not in default_card  # default: a random head
    assert "trained on the frozen pretrained blocks of" in card and "fine-tuned" not in card.lower()
    assert "A Vision Transformer fine-tuned from" in default_card and "Fine-tuned from" in default_card

    assert trainer.main([*options, "--freeze-layers", "3", "--out", str(tmp_path / "three")]) == 2
    assert "--freeze-layers 3: the base model has 2 blocks" in capsys.readouterr().err


def test_stochastic_depth_reaches_the_blocks_or_is_refused(small_data, tiny_base, tmp_path, monkeypatch, capsys):
    """Stochastic depth (DINOv2 skips residual branches in training only) is on by default where the base has it,
    as asked with --drop-path, and off by default for a base without it (ViT), which refuses an explicit one
    rather than train without it."""
    from transformers import AutoModelForImageClassification, ViTConfig, ViTModel

    import train.__main__ as trainer

    built = []
    load = AutoModelForImageClassification.from_pretrained
    monkeypatch.setattr(
        AutoModelForImageClassification,
        "from_pretrained",
        lambda *a, **k: built.append(load(*a, **k)) or built[-1],
    )
    vit = tmp_path / "tiny-vit-base"
    config = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=56)
    ViTModel(config).save_pretrained(vit)
    options = ["--data", str(small_data), "--workers", "0", "--max-steps", "1"]
    for base, asked, rate in ((tiny_base, [], trainer.DEFAULT_DROP_PATH), (tiny_base, ["--drop-path", "0.3"], 0.3)):
        assert trainer.main([*options, *asked, "--base-model", str(base), "--out", str(tmp_path / "dinov2")]) == 0
        blocks = [layer.drop_path for layer in built[-1].base_model.encoder.layer]
        assert [type(b).__name__ for b in blocks] == ["Dinov2DropPath"] * 2 and blocks[0].drop_prob == rate

    assert trainer.main([*options, "--base-model", str(vit), "--out", str(tmp_path / "vit")]) == 0  # default: none
    assert trainer.main([*options, "--drop-path", "0.3", "--base-model", str(vit), "--out", str(tmp_path / "x")]) == 2
    assert "ViTConfig has no stochastic depth" in capsys.readouterr().err
    for bad in (["--drop-path", "1"], ["--ema", "-0.5"]):
        with pytest.raises(SystemExit):
            trainer.main([*options, *bad, "--base-model", str(tiny_base), "--out", str(tmp_path / "bad")])
        assert "must be at least 0 and below 1" in capsys.readouterr().err


def test_an_int8_export_outside_the_tolerance_is_never_served(trained, small_data, tmp_path, monkeypatch):
    folder = tmp_path / "vit"
    shutil.copytree(trained, folder, ignore=shutil.ignore_patterns("onnx", "checkpoints"))
    monkeypatch.setattr(onnx_int8, "MAX_MEAN_PROB_DIFF", -1.0)  # no export can pass this
    assert export_onnx.main(["--model", str(folder), "--data", str(small_data), "--threads", "1"]) == 1
    assert not (folder / "onnx" / "model_int8.onnx").exists() and (folder / "onnx" / onnx_int8.REJECTED).is_file()
    assert load_model(folder).backend == "torch"


def test_push_uploads_what_from_pretrained_and_the_space_need(trained, small_data, fake_hub, tmp_path):
    from models.push import push_model

    folder = tmp_path / "vit"
    shutil.copytree(trained, folder)
    assert export_onnx.main(["--model", str(folder), "--data", str(small_data), "--threads", "1"]) == 0
    files = push_model(folder, "someone/oct-vit", api=fake_hub)
    (_, create), (_, upload) = fake_hub.calls
    assert create["repo_id"] == "someone/oct-vit" and create["exist_ok"] is True
    assert upload["commit_message"] and fake_hub.uploaded["someone/oct-vit"] == files
    needed = {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "onnx/model_int8.onnx"}
    assert needed <= set(files) and not any(f.startswith("checkpoints/") or f == "onnx/model.onnx" for f in files)
    card = ModelCard.load(folder / "README.md")
    assert 'pipeline("image-classification", model="someone/oct-vit")' in card.text
    assert card.data.model_name == "oct-vit" and card.data.eval_results[0].dataset_split == "test"
    # It says how far the int8 file it ships is from the weights its figures are of, as the export measured it.
    agreement = json.loads((folder / "onnx" / "check.json").read_text())["agreement"]
    said = f"on the {agreement['n_scans']} test scans it gives the same top class as these weights for "
    assert said + f"{agreement['top1_agreement']:.1%}" in " ".join(card.text.split())
    assert_no_local_paths(folder, files)


def test_push_dry_run_lists_the_files_and_contacts_nothing(trained, small_data, tmp_path, capsys, monkeypatch):
    from models import push

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "vit"
    shutil.copytree(trained, folder)
    assert export_onnx.main(["--model", str(folder), "--data", str(small_data), "--threads", "1"]) == 0
    capsys.readouterr()
    before = (folder / "README.md").read_text()
    assert push.main([str(folder), "--repo-id", "someone/oct-vit", "--dry-run"]) == 0
    listed = capsys.readouterr().out.split()
    assert "onnx/model_int8.onnx" in listed and "model.safetensors" in listed and "README.md" in listed
    assert (folder / "README.md").read_text() == before  # a dry run changes nothing
    assert push.main([str(tmp_path / "nothing"), "--repo-id", "someone/x", "--dry-run"]) == 2


def test_two_processes_evaluate_every_scan_once_and_train_like_one(trained, small_data, tiny_base, tmp_path):
    """`accelerate launch` with 2 CPU processes (gloo): every validation epoch and the test evaluation
    gather each scan exactly once, and the model ends as good as the one-process run within noise."""
    from octcore.data import discover, load_split
    from octcore.plots import read_training_log

    out = tmp_path / "two"
    with socket.socket() as free:  # not accelerate's default 29500, which another run on this machine may be using
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--main_process_port",
        str(port),
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    command = train_command(small_data, tiny_base, out)
    command[command.index("--batch-size") + 1] = "4"  # per process: the same 8 scans per step as one process
    # In a session of its own, so that on a timeout (a worker that never joins) the workers are killed with the
    # launcher: `subprocess.run`'s timeout kills the launcher alone, and its workers would go on holding the port
    # and the CPUs for the tests after it.
    with subprocess.Popen(
        [*launch, *command[2:]],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "ACCELERATE_USE_CPU": "1"},
    ) as run:
        try:
            _, stderr = run.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            pytest.fail(f"the two processes did not end within 600 s: {run.communicate()[1][-3000:]}")
    assert run.returncode == 0, stderr[-3000:]
    split = load_split(out / "split.json", discover(small_data))
    epochs = [r for r in read_training_log(out / "logs" / "metrics.jsonl") if "val/n_scans" in r]
    assert [r["val/n_scans"] for r in epochs] == [split.count("val")] * 3
    two, one = (json.loads((folder / "metrics.json").read_text()) for folder in (out, trained))
    assert two["n_images"] == split.count("test") == one["n_images"]
    assert json.loads((out / "training.json").read_text())["details"]["processes"] == 2
    assert abs(two["accuracy"] - one["accuracy"]) <= 0.35  # a tiny random model on 13 test scans: noise only


def test_launched_processes_that_form_no_group_are_refused(small_data, tiny_base, tmp_path):
    command = train_command(small_data, tiny_base, tmp_path / "x")
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "WORLD_SIZE": "2"}
    )
    assert result.returncode == 2 and "did not form one group" in result.stderr


def test_the_attention_map_is_the_class_tokens_attention_over_heads_and_the_last_half_of_the_layers():
    import torch

    from models.vit import class_token_attention

    rng = np.random.default_rng(0)
    attentions = [torch.from_numpy(rng.random((2, 3, 7, 7), dtype=np.float32)) for _ in range(4)]  # 1 + 6 tokens
    heat = class_token_attention(attentions, (2, 3)).numpy()
    expected = np.mean([a.numpy().mean(axis=1)[:, 0, 1:] for a in attentions[2:]], axis=0).reshape(2, 2, 3)
    low, high = expected.min(axis=(1, 2), keepdims=True), expected.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(heat, (expected - low) / (high - low), atol=1e-6)


def test_the_attention_map_passes_the_model_randomisation_check(trained, small_data):
    """Adebayo et al. (2018): the map of the same network with re-initialised weights must differ clearly from
    the trained model's (mean Spearman rank correlation below 0.5 on the test scans), or it explains the
    input, not the model."""
    import torch
    from scipy.stats import spearmanr
    from transformers import AutoModelForImageClassification

    from models.vit import class_token_attention
    from octcore.data import discover, load_split, select

    vit = load_model(trained, backend="torch")
    network = vit.model.model
    torch.manual_seed(0)
    randomised = AutoModelForImageClassification.from_config(network.config, attn_implementation="eager").eval()
    scans = discover(small_data)
    test = select(scans, load_split(trained / "split.json", scans), "test")
    correlations = []
    for scan in test:
        pixels = torch.from_numpy(vit.pixels([scan.path]))
        with torch.no_grad():
            maps = [
                class_token_attention(n(pixel_values=pixels, output_attentions=True).attentions, vit.grid)[0]
                for n in (network, randomised)
            ]
        correlations.append(spearmanr(maps[0].ravel(), maps[1].ravel()).statistic)
        assert np.allclose(maps[0], vit.explain(scan.path)["attention"], atol=1e-5)  # the map the Space shows
    assert np.mean(correlations) < 0.5, correlations


def test_a_vit_embeds_many_scans_a_batch_at_a_time(tiny_vit, monkeypatch):
    """PyTorch's eager attention holds every layer's weights: a thousand scans in one forward pass took all of a 24 GB
    machine (benchmarks/out_of_scope.py --choose was killed so). Any number of scans go through a batch at a time,
    with the answers they get one at a time."""
    import models.vit
    from models import load_model
    from octcore.data import discover

    model = load_model(tiny_vit, backend="torch")
    passes, forward = [], model.forward
    monkeypatch.setattr(model, "forward", lambda pixels: passes.append(len(pixels)) or forward(pixels))
    monkeypatch.setattr(models.vit, "EMBED_BATCH", 3)
    scans = [s.path for s in discover(SAMPLE)[:7]]
    logits, features = model.embed(scans)
    assert passes == [3, 3, 1] and logits.shape == (7, 4) and len(features) == 7
    alone = [model.embed([scan]) for scan in scans]
    np.testing.assert_allclose(logits, np.concatenate([a[0] for a in alone]), atol=1e-5)
    np.testing.assert_allclose(features, np.concatenate([a[1] for a in alone]), atol=1e-5)
