"""One-scan CPU latency of a trained ViT folder, end to end (JPEG bytes in: decode, processor, model, rollout).

    python benchmarks/vit_latency.py MODEL_DIR [SCAN] [--threads 2] [--repeats 200]

Times the int8 ONNX export (if the folder has one) and the PyTorch model, warm, one scan at a time.
"""
import argparse
from pathlib import Path

from train.export_onnx import latency
from train.inference import ONNX_DIR, ONNX_INT8

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
    figures = latency(folder, backend, scan, args.threads, args.repeats)
    print(f"{folder.name} {backend}: median {figures['median_ms']} ms, p95 {figures['p95_ms']} ms ({args.threads} threads)")
