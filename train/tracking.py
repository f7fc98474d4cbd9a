"""A training log that needs no service and no extra package: an Accelerate tracker writing JSON lines.

Accelerate's own trackers (TensorBoard, W&B, ...) each need their package and, for most, a service;
this one writes `OUT/logs/metrics.jsonl`, one record per `accelerator.log` call, which the training
curves and the throughput benchmark read back. Pass more trackers with --report-to.
"""

import json
from pathlib import Path

from accelerate.tracking import GeneralTracker, on_main_process


class JSONLinesTracker(GeneralTracker):
    name = "jsonl"
    requires_logging_directory = False
    main_process_only = True

    def __init__(self, path: Path):
        super().__init__()
        self.path, self.handle = Path(path), None

    @on_main_process
    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = self.path.open("a")  # a resumed run appends; readers keep the last record of a step

    @property
    def tracker(self):
        return self.handle

    @on_main_process
    def store_init_configuration(self, values: dict) -> None:
        self._write({"config": values})

    @on_main_process
    def log(self, values: dict, step: int | None = None, **kwargs) -> None:
        self._write({"step": step, **values})

    @on_main_process
    def finish(self) -> None:
        if self.handle:
            self.handle.close()

    def _write(self, record: dict) -> None:
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()
