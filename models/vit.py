"""A fine-tuned ViT folder (written by `python -m train`) as an `OCTModel`.

It runs the int8 ONNX export when the folder has one (fastest on CPU) unless `backend="torch"`,
and always preprocesses with the image processor saved in the folder (through `processor_table` where its work
is one value per gray level, as in training), from the scan as `octcore.imaging.read_scan` decodes it (the same
decode as in training). Its explanation is the
class token's attention to each patch (`class_token_attention`); the ONNX export computes it inside
the graph, so the explanation costs no second pass.
"""

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from models.base import Classification, ModelFormatError, Prediction, UnsafeModelError, read_json
from models.scope import Calibration
from octcore.imaging import ScanInput, read_scan, to_image
from octcore.labels import CLASSES

ONNX_DIR, ONNX_FP32, ONNX_INT8, ONNX_CHECK = "onnx", "model.onnx", "model_int8.onnx", "check.json"
ONNX_OUTPUTS = ("logits", "attention", "features")
# Scans per forward pass in `embed`: PyTorch's eager attention (kept for the map) holds every layer's attention
# weights and activations, about 25 MB a scan at 168x336, so a thousand scans in one pass took all of 24 GB.
EMBED_BATCH = 32
HUB_FILES = ["*.json", "*.md", "*.safetensors", f"{ONNX_DIR}/{ONNX_INT8}"]  # never a pickle (calibration included)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def presized(processor) -> tuple[int, int] | None:
    """(width, height) processor_images resizes to, or None where the processor resizes otherwise (shortest edge,
    centre crop) and keeps that step."""
    size = dict(processor.size)
    if not processor.do_resize or getattr(processor, "do_center_crop", False):
        return None
    return (size["width"], size["height"]) if size.get("height") and size.get("width") else None


def processor_images(processor, grays: Sequence[np.ndarray]) -> list[Image.Image]:
    """Grayscale scans as 8-bit images for the saved processor, already resized to its height x width with its
    own filter. The processor converts an image to RGB before it resizes it, so it would resize three identical
    channels; resized first, the grayscale image gives the very same pixels (tests/test_train.py checks) for a
    third of the work, and the processor's own resize to the size it already has is a copy."""
    images = [to_image(gray) for gray in grays]
    target = presized(processor)
    if target is None:
        return images  # another kind of resize: the processor's alone
    return [image.resize(target, Image.Resampling(processor.resample)) for image in images]


def processor_table(processor) -> np.ndarray | None:
    """The saved processor's output for each 8-bit gray level, (channels, 256) float32, read from the processor
    itself: what it does to processor_images' output (RGB, rescale, normalize) is one value per gray level, so
    looking an image's levels up in this table gives its output bit for bit, without the processor's per-call
    work, and the trainer's loader workers can send 8-bit scans (a twelfth of the bytes of the float32 tensor)
    for the lookup on the training device. Checked on an image holding every level at random places; None where
    the processor does anything else to an image (then it runs in full)."""
    target = presized(processor)
    if target is None or target[0] * target[1] < 256:
        return None
    levels = np.random.default_rng(0).permutation(np.arange(target[0] * target[1]) % 256).astype(np.uint8)
    image = Image.fromarray(levels.reshape(target[1], target[0]))
    out = processor(images=[image], return_tensors="np")["pixel_values"][0].reshape(-1, levels.size)
    table = np.zeros((out.shape[0], 256), np.float32)
    table[:, levels] = out
    return table if np.array_equal(table[:, levels], out) else None


def table_pixels(table: np.ndarray, images: Sequence[Image.Image]) -> np.ndarray:
    """(n, channels, height, width) processor output of processor_images' images, by `processor_table`."""
    return np.stack([np.take(table, np.asarray(image), axis=1) for image in images])


def class_token_attention(attentions, grid: tuple[int, int]):
    """Where the class token looks: its attention to each patch, averaged over the heads and the last half of
    the layers, as a (batch, rows, cols) map scaled to [0, 1].

    Chosen over attention rollout (Abnar & Zuidema 2020) and over fewer layers by measurement on validation
    scans (benchmarks/explanations.py, figures in docs/results.md): blacking out the patches it ranks first
    lowers the predicted class's probability sooner, and far less of it lies on the image's border, where
    rollout put the hot spots that DINOv2's high-norm background tokens attract.
    """
    import torch

    patches = grid[0] * grid[1]
    last = attentions[len(attentions) // 2 :]
    # The class token's row (patches are last) taken before the mean over heads: the same numbers, and the ONNX
    # graph then averages 6 x 288 values a layer, not 6 x 289 x 289.
    heat = torch.stack([layer[:, :, 0, -patches:].mean(dim=1) for layer in last]).mean(dim=0)
    heat = heat.reshape(-1, grid[0], grid[1])
    low, high = heat.amin(dim=(1, 2), keepdim=True), heat.amax(dim=(1, 2), keepdim=True)
    return (heat - low) / (high - low + 1e-8)


def explained(model, grid: tuple[int, int]):
    """The model as a module whose forward returns (logits, attention map, features): the graph the ONNX export
    traces. The features are the classifier's input (for DINOv2 the class token and the mean patch token),
    which the out-of-scope detector reads. (torch is imported here, so the ONNX path never loads it.)"""
    import torch

    class Explained(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.captured = {}
            model.classifier.register_forward_pre_hook(lambda _, inputs: self.captured.update(features=inputs[0]))

        def forward(self, pixel_values):
            out = self.model(pixel_values=pixel_values, output_attentions=True)
            return out.logits, class_token_attention(out.attentions, grid), self.captured["features"]

    return Explained()


class ViTModel:
    """A trained ViT: scans in, probabilities, attention maps and out-of-scope scores out (`models.base.OCTModel`)."""

    kind = "vit"
    classes = CLASSES

    def __init__(self, folder: Path, backend: str = "auto", threads: int | None = None, name: str = "ViT"):
        from transformers import AutoConfig, AutoImageProcessor

        self.folder, self.name, self.threads = folder, name, threads
        self.config = AutoConfig.from_pretrained(folder)
        labels = [self.config.id2label[i] for i in range(self.config.num_labels)]
        if labels != list(CLASSES):
            raise ModelFormatError(f"{folder}: the model's classes {labels} are not {list(CLASSES)}")
        self.processor = AutoImageProcessor.from_pretrained(folder)
        self.table = processor_table(self.processor)
        self.calibration = Calibration.load(folder)
        size, patch = self.processor.size, self.config.patch_size
        self.grid = (size["height"] // patch, size["width"] // patch)
        onnx_file = folder / ONNX_DIR / ONNX_INT8
        self.backend = ("onnx" if onnx_file.is_file() else "torch") if backend == "auto" else backend
        if self.backend == "onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            # Idle threads must not spin and steal the CPU from the rest of a request.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            if threads:
                options.intra_op_num_threads = threads
            self.session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
            if [o.name for o in self.session.get_outputs()] != list(ONNX_OUTPUTS):
                raise ModelFormatError(
                    f"{onnx_file} was exported by an older version: export it again with python -m train.export_onnx"
                )
            # int8 arithmetic moves the features a little, so the export refits the out-of-scope threshold on the
            # int8 model's own validation features (train.onnx_int8), so that it keeps its promise on in-scope scans.
            check = folder / ONNX_DIR / ONNX_CHECK
            refit = read_json(check).get("out_of_scope") if check.is_file() else None
            if refit and self.calibration.out_of_scope is not None:
                self.calibration.out_of_scope = replace(self.calibration.out_of_scope, threshold=refit["threshold"])
        else:
            import torch
            from transformers import AutoModelForImageClassification

            if threads:
                torch.set_num_threads(threads)
            self.model = explained(
                AutoModelForImageClassification.from_pretrained(
                    folder, attn_implementation="eager", use_safetensors=True
                ),
                self.grid,
            ).eval()

    def pixels(self, scans: Sequence[ScanInput]) -> np.ndarray:
        """The saved processor's input tensor for scans decoded as in training (read_scan)."""
        images = processor_images(self.processor, [read_scan(s).gray for s in scans])
        if self.table is not None:
            return table_pixels(self.table, images)
        return self.processor(images=images, return_tensors="np")["pixel_values"].astype(np.float32)

    def forward(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(logits, attention maps, features) for preprocessed pixels."""
        if self.backend == "onnx":
            # One scan per run: dynamic int8 scales activations per tensor, so a batch would change each scan's result.
            runs = [
                self.session.run(list(ONNX_OUTPUTS), {"pixel_values": pixel_values[i : i + 1]})
                for i in range(len(pixel_values))
            ]
            return tuple(np.concatenate([r[k] for r in runs]) for k in range(3))
        import torch

        with torch.no_grad():
            return tuple(t.float().numpy() for t in self.model(torch.from_numpy(pixel_values)))

    def embed(self, scans: Sequence[ScanInput]) -> tuple[np.ndarray, np.ndarray]:
        """(logits, features) of any number of scans, decoded and run EMBED_BATCH at a time."""
        parts = [self.forward(self.pixels(scans[i : i + EMBED_BATCH])) for i in range(0, len(scans), EMBED_BATCH)]
        if not parts:  # no scans: the empty arrays of one pass, shaped as before batching
            parts = [self.forward(self.pixels(scans))]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[2] for p in parts])

    def classify(self, scans: Sequence[ScanInput]) -> Classification:
        return Classification.of(*self.embed(scans), self.calibration)

    def predict_proba(self, scans: Sequence[ScanInput]) -> np.ndarray:
        return self.classify(scans).proba

    def analyse(self, scan: ScanInput, explain: bool = True) -> Prediction:
        logits, heat, features = self.forward(self.pixels([scan]))
        return Classification.of(logits, features, self.calibration).prediction(
            0, {"attention": heat[0]} if explain else None
        )

    def explain(self, scan: ScanInput) -> dict[str, np.ndarray]:
        return self.analyse(scan).maps


def load_vit(folder: Path, backend: str = "auto", threads: int | None = None) -> ViTModel:
    """A ViT from a local folder; weights from safetensors or ONNX only, never a pickle."""
    if not (folder / "config.json").is_file():
        raise ModelFormatError(f"{folder} is not a model folder (no config.json)")
    has_onnx = backend != "torch" and (folder / ONNX_DIR / ONNX_INT8).is_file()
    if not (folder / "model.safetensors").is_file() and not has_onnx:
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        only = f" (only {', '.join(pickles)})" if pickles else ""
        raise UnsafeModelError(
            f"{folder} has no model.safetensors{only}; pickle weights can run code when loaded "
            "and are never loaded here"
        )
    return ViTModel(folder, backend, threads)
