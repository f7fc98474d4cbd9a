"""OCT B-scan classifier Space: a fine-tuned ViT and a HOG+LBP SVM side by side, with explanations.

    python space/app.py            (models from OCT_VIT_MODEL / OCT_BASELINE_MODEL: folders or Hub ids)

Research and education only: not a medical device, not a diagnosis. The page is `space/ui.py`.
"""

import ctypes
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo (or Space bundle) root holds the packages
try:  # glibc: at most 2 malloc arenas (M_ARENA_MAX), not 8 per core; Gradio's worker threads would
    ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # otherwise each grow one (~200 MB more resident under load)
except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to cap
    pass

from space.engine import Models  # noqa: E402
from space.ui import launch  # noqa: E402


def stop(*_) -> None:
    raise KeyboardInterrupt  # SIGTERM ends the app as Ctrl-C does: Gradio closes the server, the app exits 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, stop)
    launch(Models())  # host and port: GRADIO_SERVER_NAME / GRADIO_SERVER_PORT; returns once stopped
