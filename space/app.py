"""OCT B-scan classifier Space: a fine-tuned ViT and a HOG+LBP SVM side by side, with explanations.

    python space/app.py [--vit MODEL] [--baseline MODEL[,MODEL...]]

Research and education only: not a medical device, not a diagnosis. The page is `space/ui.py`.
"""

import argparse
import ctypes
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo (or Space bundle) root holds the packages
try:  # glibc: at most 2 malloc arenas (M_ARENA_MAX), not 8 per core; Gradio's worker threads would
    ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # otherwise each grow one (~200 MB more resident under load)
except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to cap
    pass


def stop(*_) -> None:
    raise KeyboardInterrupt  # SIGTERM ends the app as Ctrl-C does: Gradio closes the server, the app exits 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Host and port: GRADIO_SERVER_NAME and GRADIO_SERVER_PORT (default 127.0.0.1:7860). Stop with Ctrl-C.",
    )
    parser.add_argument(
        "--vit", help="the ViT: a model folder or Hub id (default: $OCT_VIT_MODEL, else space/models/vit)"
    )
    parser.add_argument(
        "--baseline",
        "--classical",
        dest="classical",
        help="classical models, comma-separated, the first shown (default: $OCT_BASELINE_MODEL, else space/models/)",
    )
    args = parser.parse_args(argv)
    from space.engine import Models  # Gradio, ONNX Runtime and the models' libraries: seconds, so after --help
    from space.ui import launch

    signal.signal(signal.SIGTERM, stop)
    launch(Models(args.vit, args.classical))  # returns once stopped
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
