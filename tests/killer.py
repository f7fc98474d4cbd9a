"""Run a module as `python -m` would, and SIGKILL its whole process group right after the Nth call of one
function returns: a crash at a known point, so the resume tests need no timing race.

    python tests/killer.py MODULE:FUNCTION N RUN_MODULE [ARGS...]

e.g. `python tests/killer.py numpy:savez 3 baselines.train --data ...` dies once the third feature-cache
part is written under its temporary name. Start it in a new session (its own process group).
"""

import importlib
import os
import runpy
import signal
import sys

target, calls, module = sys.argv[1], int(sys.argv[2]), sys.argv[3]
owner_name, function_name = target.split(":")
owner = importlib.import_module(owner_name)
original, count = getattr(owner, function_name), 0


def kill_after_call(*args, **kwargs):
    global count
    result = original(*args, **kwargs)
    count += 1
    if count == calls:
        os.killpg(0, signal.SIGKILL)
    return result


setattr(owner, function_name, kill_after_call)
sys.argv = [module, *sys.argv[4:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
