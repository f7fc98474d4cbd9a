"""Export a trained ViT folder to ONNX with dynamic int8 quantization, check it against PyTorch, time it.

    python -m train.export_onnx --model DIR [--data DIR] [--threads 2]

Writes DIR/onnx/model.onnx (float32) and DIR/onnx/model_int8.onnx (weights int8, activations
quantized on the fly). With --data, the scans of the folder's held-out test split (DIR/split.json)
are classified by both, one scan at a time as the Space does. Tolerance: mean absolute probability
difference <= MAX_MEAN_PROB_DIFF, and the same top-1 label on at least MIN_AGREEMENT of the scans
PyTorch is not torn on (top-two margin >= CONFIDENT_MARGIN); otherwise the command fails (exit 1).
The figures go to DIR/onnx/check.json.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForImageClassification

from models import load_model
from models.timing import one_scan_latency
from models.vit import ONNX_DIR, ONNX_FP32, ONNX_INT8, with_rollout
from octcore.data import discover, load_split, select

MAX_MEAN_PROB_DIFF, CONFIDENT_MARGIN, MIN_AGREEMENT = 0.02, 0.1, 0.98
REJECTED = "model_int8.rejected.onnx"  # where an export that fails the check is put aside


def export(folder: Path) -> Path:
    """float32 ONNX (logits and the attention rollout; batch dimension dynamic), then dynamic int8
    quantization of its MatMul/Gemm weights."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = AutoModelForImageClassification.from_pretrained(
        folder, attn_implementation="eager", use_safetensors=True
    ).eval()
    size = json.loads((folder / "preprocessor_config.json").read_text())["size"]
    grid = (size["height"] // model.config.patch_size, size["width"] // model.config.patch_size)
    example = torch.zeros(1, 3, size["height"], size["width"])
    out = folder / ONNX_DIR
    out.mkdir(exist_ok=True)
    torch.onnx.export(
        with_rollout(model, grid),
        (example,),
        str(out / ONNX_FP32),
        dynamo=False,
        opset_version=17,
        input_names=["pixel_values"],
        output_names=["logits", "rollout"],
        dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}, "rollout": {0: "batch"}},
    )
    quantize_dynamic(
        str(out / ONNX_FP32),
        str(out / ONNX_INT8),
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"MatMulConstBOnly": True},
    )  # weights only; attention products stay float
    return out / ONNX_INT8


def agreement(folder: Path, scans: list, threads: int) -> dict:
    reference, fast = load_model(folder, "torch", threads), load_model(folder, "onnx", threads)
    torch_proba = np.concatenate([reference.predict_proba(scans[i : i + 32]) for i in range(0, len(scans), 32)])
    onnx_proba = np.concatenate([fast.predict_proba(scans[i : i + 32]) for i in range(0, len(scans), 32)])
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.export_onnx", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a folder written by python -m train")
    parser.add_argument("--data", help="the dataset the model was trained on: check agreement on its test split")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for the check and the timing")
    args = parser.parse_args(argv)
    folder = Path(args.model)

    try:
        path = export(folder)
    except (OSError, ValueError, KeyError) as e:  # no folder, no config, not an image classifier, no processor
        print(
            f"error: {folder} is not a model folder written by python -m train ({type(e).__name__}: {e})",
            file=sys.stderr,
        )
        return 2
    print(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB; "
        f"float32 {(folder / ONNX_DIR / ONNX_FP32).stat().st_size / 1e6:.1f} MB)"
    )
    report = {
        "tolerance": {
            "max_mean_abs_prob_diff": MAX_MEAN_PROB_DIFF,
            "confident_margin": CONFIDENT_MARGIN,
            "min_top1_agreement_when_confident": MIN_AGREEMENT,
        }
    }
    if args.data:
        scans = discover(args.data)
        test = [s.path for s in select(scans, load_split(folder / "split.json", scans), "test")]
        report["agreement"] = agreement(folder, test, args.threads)
        report["latency_1_scan"] = {
            b: one_scan_latency(load_model(folder, b, args.threads), [test[0].read_bytes()]) for b in ("torch", "onnx")
        }
        print(json.dumps(report, indent=2))
    (folder / ONNX_DIR / "check.json").write_text(json.dumps(report, indent=2))
    check = report.get("agreement")
    if check and (
        check["top1_agreement_when_confident"] < MIN_AGREEMENT or check["mean_abs_prob_diff"] > MAX_MEAN_PROB_DIFF
    ):
        path.replace(path.with_name(REJECTED))  # so nothing serves it: load_model falls back to PyTorch
        print(
            f"error: the int8 export does not agree with PyTorch within the tolerance; kept aside as {REJECTED}, "
            "so the model runs in PyTorch",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
