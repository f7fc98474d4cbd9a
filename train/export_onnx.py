"""Export a trained ViT folder to ONNX with dynamic int8 quantization, check it against PyTorch, time it.

    python -m train.export_onnx --model DIR [--data DIR] [--threads 2]

Writes DIR/onnx/model.onnx (float32) and DIR/onnx/model_int8.onnx (weights int8, activations
quantized on the fly). With --data, the scans of the folder's held-out test split (DIR/split.json)
are classified by both, one scan at a time as the Space does; an export outside the tolerance
(train/onnx_int8.py) is put aside and the command exits 1 (the model then runs in PyTorch). An export
that passes gets its own out-of-scope threshold, refitted on the int8 model's features of the
validation split. The figures go to DIR/onnx/check.json.
"""

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.export_onnx", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a folder written by python -m train")
    parser.add_argument("--data", help="the dataset the model was trained on: check agreement on its test split")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for the check and the timing")
    args = parser.parse_args(argv)

    # torch, transformers and ONNX Runtime take seconds to load: only once the arguments are good
    from models.vit import ONNX_DIR, ONNX_INT8
    from octcore.data import discover, load_split, select
    from train.onnx_int8 import REJECTED, allowed_disagreements, export_and_check

    folder = Path(args.model)
    try:
        test = val = None
        if args.data:
            scans = discover(args.data)
            split = load_split(folder / "split.json", scans)
            test, val = ([s.path for s in select(scans, split, name)] for name in ("test", "val"))
        report = export_and_check(folder, test, args.threads, val)
    except (OSError, ValueError, KeyError) as e:  # no folder, no config, not an image classifier, no processor
        print(
            f"error: {folder} is not a model folder written by python -m train ({type(e).__name__}: {e})",
            file=sys.stderr,
        )
        return 2
    size = report["size_mb"]
    print(f"wrote {folder / ONNX_DIR / ONNX_INT8} ({size['int8']} MB; float32 {size['float32']} MB)")
    check = report.get("agreement")
    if check:
        print(
            f"int8 against PyTorch on {check['n_scans']} test scans: same label on {check['top1_agreement']:.1%} "
            f"({check['top1_disagreements_when_confident']} of {check['n_confident']} confident scans differ; "
            f"{allowed_disagreements(check['n_confident'])} allowed), mean |probability difference| "
            f"{check['mean_abs_prob_diff']:.4f}; one scan: int8 {report['latency_1_scan']['onnx']['median_ms']} ms, "
            f"PyTorch {report['latency_1_scan']['torch']['median_ms']} ms"
        )
    if not report["passed"]:
        print(
            f"note: the int8 export does not agree with PyTorch within the tolerance (onnx/check.json); it is kept "
            f"aside as {REJECTED} and the model runs in PyTorch",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
