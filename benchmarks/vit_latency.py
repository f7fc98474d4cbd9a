"""One-scan CPU latency of a trained ViT folder, end to end (JPEG bytes in: decode, processor, model, rollout).

    python benchmarks/vit_latency.py MODEL_DIR [SCAN] [--threads 2] [--repeats 200]

Times the int8 ONNX export (if the folder has one) and the PyTorch model, warm, one scan at a time.
"""

import argparse
from pathlib import Path

from models import load_model
from models.timing import one_scan_latency
from models.vit import ONNX_DIR, ONNX_INT8

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("model")
parser.add_argument("scan", nargs="?", default=str(sorted(Path("examples/sample/CNV").glob("*.jpeg"))[0]))
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--repeats", type=int, default=200)
args = parser.parse_args()
folder = Path(args.model)
scan = Path(args.scan).read_bytes()
backends = (["onnx"] if (folder / ONNX_DIR / ONNX_INT8).is_file() else []) + ["torch"]
for backend in backends:
    figures = one_scan_latency(load_model(folder, backend, args.threads), [scan], args.repeats)
    print(
        f"{folder.name} {backend}: median {figures['median_ms']} ms, p95 {figures['p95_ms']} ms "
        f"({args.threads} threads)"
    )
