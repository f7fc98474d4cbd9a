"""Model folders: written whole or not at all, and published on the Hugging Face Hub (the one upload
path for every stage)."""

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def writing_folder(out: str | Path):
    """Yield an empty staging folder beside `out`; on success it replaces `out` by renames alone.

    A crash or an exception while the files are written leaves `out` as it was (absent, or the
    previous complete model), never a half-written folder that loads.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-new-", dir=out.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}-old-", dir=out.parent))
        os.replace(out, old / out.name)
    os.replace(staging, out)
    if old:
        shutil.rmtree(old)


def push_folder(
    folder: str | Path, repo_id: str, message: str, ignore: list[str] | None = None, private: bool = False
) -> str:
    """Create the repo if needed and upload the folder; returns the commit URL."""
    from huggingface_hub import create_repo, upload_folder

    create_repo(repo_id, exist_ok=True, private=private)
    return upload_folder(
        repo_id=repo_id, folder_path=str(folder), commit_message=message, ignore_patterns=ignore
    ).commit_url
