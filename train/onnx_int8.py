"""Export a trained ViT folder to ONNX with dynamic int8 quantization, check it against PyTorch, time it: the
library behind `python -m train.export_onnx`, which the trainer also calls at the end of a run.

`export_and_check` writes DIR/onnx/model.onnx (float32) and DIR/onnx/model_int8.onnx (weights int8, activations
quantized on the fly). Given test scans, it classifies them with both, one scan at a time as the Space does.
Tolerance: mean absolute probability difference <= MAX_MEAN_PROB_DIFF, and the same top-1 label on at least
MIN_AGREEMENT of the scans PyTorch is not torn on (top-two margin >= CONFIDENT_MARGIN), at least one such scan allowed
to differ; otherwise the export is put aside as REJECTED (the model then runs in PyTorch). An export that passes gets
its own out-of-scope threshold, refitted on the int8 model's features of the validation scans, as the trainer fitted
the float32 one. The figures go to DIR/onnx/check.json.
"""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForImageClassification

from models import load_model
from models.base import read_json
from models.scope import Calibration
from models.timing import one_scan_latency
from models.vit import ONNX_CHECK, ONNX_DIR, ONNX_FP32, ONNX_INT8, ONNX_OUTPUTS, explained

MAX_MEAN_PROB_DIFF, CONFIDENT_MARGIN, MIN_AGREEMENT = 0.02, 0.1, 0.98
REJECTED = "model_int8.rejected.onnx"  # where an export that fails the check is put aside


def fix_position_embeddings(model, height: int, width: int) -> None:
    """Replace a model's per-call interpolation of its position embeddings by their values at the one input
    size its processor makes. DINOv2 resizes its 37 x 37 pretraining grid to the input's patch grid on every
    forward pass; traced, that is an ONNX Resize run for every scan to compute a constant, a large share of the
    int8 model's CPU time (benchmarks/where_time_goes.py --compare-onnx measures it). The graph then holds the
    constant and takes only that height and width."""
    embeddings = getattr(getattr(model, model.base_model_prefix, None), "embeddings", None)
    if not hasattr(embeddings, "interpolate_pos_encoding") or not hasattr(embeddings, "position_embeddings"):
        return  # e.g. ViT at its pretraining size: nothing is interpolated
    patches = (height // model.config.patch_size) * (width // model.config.patch_size)
    with torch.no_grad():
        dummy = torch.zeros(1, patches + 1, embeddings.position_embeddings.shape[-1])
        fixed = embeddings.interpolate_pos_encoding(dummy, height, width).detach().clone()
    embeddings.interpolate_pos_encoding = lambda _embeddings, _height, _width: fixed


def export(folder: Path) -> Path:
    """float32 ONNX (logits, the attention map and the features the out-of-scope detector reads; batch
    dimension dynamic, height and width the processor's), then dynamic int8 quantization of its MatMul
    weights."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = AutoModelForImageClassification.from_pretrained(
        folder, attn_implementation="eager", use_safetensors=True
    ).eval()
    size = read_json(folder / "preprocessor_config.json")["size"]
    grid = (size["height"] // model.config.patch_size, size["width"] // model.config.patch_size)
    fix_position_embeddings(model, size["height"], size["width"])
    example = torch.zeros(1, 3, size["height"], size["width"])
    out = folder / ONNX_DIR
    out.mkdir(exist_ok=True)
    torch.onnx.export(
        explained(model, grid),
        (example,),
        str(out / ONNX_FP32),
        dynamo=False,
        opset_version=17,
        input_names=["pixel_values"],
        output_names=list(ONNX_OUTPUTS),
        dynamic_axes={name: {0: "batch"} for name in ("pixel_values", *ONNX_OUTPUTS)},
    )
    quantize_dynamic(
        str(out / ONNX_FP32),
        str(out / ONNX_INT8),
        weight_type=QuantType.QInt8,
        per_channel=True,
        # The matrix products with weights only (MatMulConstBOnly): the attention products stay float, and so does
        # the patch embedding's convolution, since ONNX Runtime's ConvInteger took about four times as long as its
        # float Conv for this one layer (benchmarks/where_time_goes.py --compare-onnx measures such a change).
        op_types_to_quantize=["MatMul"],
        extra_options={"MatMulConstBOnly": True},
    )
    return out / ONNX_INT8


def agreement(folder: Path, scans: list, threads: int) -> dict:
    reference, fast = load_model(folder, "torch", threads), load_model(folder, "onnx", threads)
    torch_proba, onnx_proba = reference.predict_proba(scans), fast.predict_proba(scans)  # a batch at a time (embed)
    same = torch_proba.argmax(1) == onnx_proba.argmax(1)
    top_two = np.sort(torch_proba, axis=1)[:, -2:]
    confident = top_two[:, 1] - top_two[:, 0] >= CONFIDENT_MARGIN
    return {
        "n_scans": len(scans),
        "n_confident": int(confident.sum()),
        "top1_agreement": float(same.mean()),
        "top1_disagreements_when_confident": int((~same & confident).sum()),
        "top1_agreement_when_confident": float(same[confident].mean()) if confident.any() else 1.0,
        "mean_abs_prob_diff": float(np.abs(torch_proba - onnx_proba).mean()),
        "max_abs_prob_diff": float(np.abs(torch_proba - onnx_proba).max()),
    }


def int8_threshold(folder: Path, val_scans: list, threads: int) -> dict | None:
    """The out-of-scope threshold refitted on the int8 model's features of the validation scans (the same
    split-conformal rule as the float32 one): its features differ a little, and so do its distances.
    The detector is the folder's own (calibration files): the loaded ONNX model already carries the
    threshold of any earlier export."""
    scope = Calibration.load(folder).out_of_scope
    if scope is None:
        return None
    fast = load_model(folder, "onnx", threads)
    features = fast.embed(val_scans)[1]
    return {
        "threshold": replace(scope).with_threshold(features).threshold,
        "float32_threshold": scope.threshold,
        "fitted_on": f"validation split ({len(val_scans)} scans), the int8 model's features",
    }


def allowed_disagreements(n_confident: int) -> int:
    """How many confident scans may change label: MIN_AGREEMENT's share, and at least one, so that a check
    on a few dozen scans (the quick start's) is not failed by a single borderline scan."""
    return max(1, int((1 - MIN_AGREEMENT) * n_confident))


def export_and_check(
    folder: Path, test_scans: list | None = None, threads: int = 2, val_scans: list | None = None
) -> dict:
    """Export, then (with test scans) check against PyTorch: an export outside the tolerance is put aside
    as REJECTED so nothing serves it; one that passes gets its out-of-scope threshold refitted on the
    validation scans, when given. The report, also written to onnx/check.json; report["passed"]."""
    path = export(folder)
    report = {
        "tolerance": {
            "max_mean_abs_prob_diff": MAX_MEAN_PROB_DIFF,
            "confident_margin": CONFIDENT_MARGIN,
            "min_top1_agreement_when_confident": MIN_AGREEMENT,
            "at_least_allowed_disagreements": 1,
        },
        "size_mb": {
            "int8": round(path.stat().st_size / 1e6, 1),
            "float32": round((folder / ONNX_DIR / ONNX_FP32).stat().st_size / 1e6, 1),
        },
    }
    if test_scans:
        check = report["agreement"] = agreement(folder, test_scans, threads)
        report["latency_1_scan"] = {
            backend: one_scan_latency(load_model(folder, backend, threads), [Path(test_scans[0]).read_bytes()])
            for backend in ("torch", "onnx")
        }
        allowed = allowed_disagreements(check["n_confident"])
        report["passed"] = (
            check["top1_disagreements_when_confident"] <= allowed and check["mean_abs_prob_diff"] <= MAX_MEAN_PROB_DIFF
        )
    else:
        report["passed"] = True  # nothing to check against: exported, not verified
    if report["passed"] and val_scans:
        report["out_of_scope"] = int8_threshold(folder, val_scans, threads)
    (folder / ONNX_DIR / ONNX_CHECK).write_text(json.dumps(report, indent=2))
    if not report["passed"]:
        path.replace(path.with_name(REJECTED))  # so nothing serves it: load_model falls back to PyTorch
    return report
