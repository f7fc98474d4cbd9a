"""The trainer's option vocabularies and defaults, in a module that imports nothing heavy: `python -m train` reads
its arguments, and answers --help or a usage error, before torch, transformers and datasets load (seconds)."""

DEFAULT_BASE = "facebook/dinov2-small"
DEFAULT_DROP_PATH = 0.1  # benchmarks/vit_recipe.py, third round

# Where the augmentation runs: on the decoded scan, or as part of the resize to the model's input (the default):
# the scans are decoded once (train.data.decoded_table), the zoom and shift become the resize's source box and the
# rest works on about a quarter of the pixels, so a loader worker neither decodes nor resamples a full-size scan
# every epoch. Chosen on validation (benchmarks/vit_recipe.py): it scored as 'scan' does, and feeds a GPU with a
# third of the loader cores.
AUGMENT_AT = ("scan", "input")
DEFAULT_AUGMENT_AT = "input"

MIXED_PRECISION = ("auto", "no", "fp16", "bf16")  # --mixed-precision: auto (train.loop.native_mixed_precision), then
# what Accelerate takes

HEAD_INIT = ("random", "linear-probe")  # --head-init: train.loop.fit_head_by_linear_probe
