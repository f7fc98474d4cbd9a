"""The classical trainer's option choices and defaults, in a module that imports nothing heavy: `python -m
baselines.train` reads its arguments, and answers --help or a usage error, before scikit-learn, scikit-image and
skops load (seconds)."""

KINDS = ("hog", "lbp", "hog+lbp")  # --features
SOLVERS = ("rbf", "nystroem", "linear")  # --solver
EXACT_LIMIT = 10_000  # 'auto' uses the exact kernel SVM below this many training rows (scans and their copies)
PARAM_GRID = {"C": [3.0, 10.0, 30.0], "gamma_scale": [0.25, 0.5, 1.0]}  # searched unless --C / --gamma-scale
SPECKLE_COPIES = 1  # --speckle-copies: speckled copies of each training scan (chosen: docs/results.md)
