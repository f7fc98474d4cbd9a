"""Folders written whole, and the one path to the Hugging Face Hub: the Hub's rules for cards, checked
before anything is sent, and one push for models, the dataset and the Space.

The Hub checks a card's YAML only when it receives it, and refuses the whole upload if a rule is
broken; nothing offline tells. `card_problems` checks the documented rules here, so a push stops
with the reason before it contacts the Hub (and the tests check every card the project makes).
"""

import os
import shutil
import tempfile
from contextlib import contextmanager
from fnmatch import fnmatch
from pathlib import Path

import yaml

# Hub license ids (docs/hub/repositories-licenses): lowercase, not SPDX case.
LICENSES = {
    "apache-2.0",
    "mit",
    "cc-by-4.0",
    "cc-by-sa-4.0",
    "cc-by-nc-4.0",
    "cc0-1.0",
    "bsd-3-clause",
    "openrail",
    "other",
    "unknown",
}
SPACE_COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
SPACE_SDKS = {"gradio", "docker", "static"}
SPACE_HARDWARE = {
    "cpu-basic",
    "cpu-upgrade",
    "t4-small",
    "t4-medium",
    "l4x1",
    "l4x4",
    "a10g-small",
    "a10g-large",
    "a100-large",
}
SHORT_DESCRIPTION_MAX = 60  # the Hub refuses a Space card whose short_description is longer


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


def is_repo_id(value) -> bool:
    """A Hub repo id of the form owner/name (what `base_model`, `datasets` and `models` must hold)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(value, str) or value.count("/") != 1 or value.startswith((".", "/")):
        return False
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


def names_hub_repo(source: str | Path) -> bool:
    """Whether a model source given by a user names a Hub repo: an owner/name id that is not also a local path
    (a folder `models/dinov2-small` has the shape of one)."""
    return is_repo_id(str(source)) and not Path(source).exists()


def unreachable_hub(repo_id: str, filename: str = "config.json") -> str | None:
    """Why a file of a Hub repo cannot be had here at once: the Hub's host name does not resolve (no network) and
    the file is not in the local cache; None otherwise, and the loader then says what else may be wrong. Without
    this, a command run offline said so only after huggingface_hub's retries of the request, about 25 s."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants, try_to_load_from_cache

    host = urlparse(constants.ENDPOINT).hostname
    if not host:
        return None
    try:
        socket.getaddrinfo(host, 443)
        return None
    except OSError:  # socket.gaierror: the name does not resolve
        pass
    if isinstance(try_to_load_from_cache(repo_id, filename), str):
        return None  # cached: the loader finds it
    return f"{host} cannot be reached from here (its name does not resolve) and {repo_id} is not in the local cache"


def card_metadata(text: str) -> dict:
    """The YAML header of a card, as the Hub parses it (yaml.safe_load); ValueError when there is none."""
    if not text.startswith("---\n") or "\n---" not in text[4:]:
        raise ValueError("the card has no YAML header (--- ... ---)")
    metadata = yaml.safe_load(text[4 : text.index("\n---", 4)])
    if not isinstance(metadata, dict):
        raise ValueError("the card's YAML header is not a mapping")
    return metadata


def _index_problems(index) -> list[str]:
    problems = []
    if not isinstance(index, list) or not index:
        return ["model-index must be a non-empty list"]
    for entry in index:
        for result in entry.get("results") or [None]:
            if not isinstance(result, dict):
                problems.append(f"model-index {entry.get('name')!r} has no results")
                continue
            if not result.get("task", {}).get("type"):
                problems.append("a model-index result has no task.type")
            if not {"type", "name"} <= set(result.get("dataset", {})):
                problems.append("a model-index result's dataset needs type and name")
            for metric in result.get("metrics") or []:
                if not metric.get("type") or not isinstance(metric.get("value"), (int, float)):
                    problems.append(f"metric {metric.get('type')!r} needs a type and a numeric value")
    return problems


def card_problems(text: str, repo_type: str = "model") -> list[str]:
    """What the Hub would refuse (or mis-render) in a card: the documented rules, checked offline."""
    try:
        metadata = card_metadata(text)
    except (ValueError, yaml.YAMLError) as e:
        return [f"the YAML header does not parse: {e}"]
    problems = []
    if "!!python" in text:
        problems.append("the YAML holds Python objects (numpy scalars not cast to float?)")
    if metadata.get("license") not in LICENSES:
        problems.append(f"license {metadata.get('license')!r} is not a Hub license id")
    for key in ("base_model", "datasets", "models"):
        values = metadata.get(key) or []
        for value in [values] if isinstance(values, str) else values:
            if not is_repo_id(value):
                problems.append(f"{key}: {value!r} is not a Hub repo id (owner/name)")
    if "model-index" in metadata:
        problems += _index_problems(metadata["model-index"])
    if repo_type == "space":
        short = metadata.get("short_description", "")
        if len(short) > SHORT_DESCRIPTION_MAX:
            problems.append(f"short_description is {len(short)} characters; the Hub allows {SHORT_DESCRIPTION_MAX}")
        for key in ("colorFrom", "colorTo"):
            if metadata.get(key) not in SPACE_COLORS:
                problems.append(f"{key} {metadata.get(key)!r} is not one of {sorted(SPACE_COLORS)}")
        if metadata.get("sdk") not in SPACE_SDKS:
            problems.append(f"sdk {metadata.get('sdk')!r} is not one of {sorted(SPACE_SDKS)}")
        if not isinstance(metadata.get("python_version", "3.10"), str):
            problems.append("python_version must be a quoted string (3.10 unquoted reads as 3.1)")
        if metadata.get("suggested_hardware", "cpu-basic") not in SPACE_HARDWARE:
            problems.append(f"suggested_hardware {metadata.get('suggested_hardware')!r} is not a Hub hardware name")
        for entry in metadata.get("preload_from_hub") or []:
            if not isinstance(entry, str) or not is_repo_id(entry.split(" ")[0]) or len(entry.split(" ")) > 3:
                problems.append(f"preload_from_hub entry {entry!r} is not 'owner/name [file1,file2 [commit]]'")
    elif repo_type == "model":
        if metadata.get("pipeline_tag") != "image-classification":
            problems.append("pipeline_tag must be image-classification")
        if metadata.get("library_name") not in ("transformers", "sklearn"):
            problems.append(f"library_name {metadata.get('library_name')!r} is not transformers or sklearn")
    return problems


def files_to_upload(folder: str | Path, ignore: list[str]) -> list[str]:
    """The folder's files (POSIX paths relative to it), less hidden ones and those matching `ignore`."""
    folder = Path(folder)
    found = (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return sorted(
        f
        for f in found
        if not any(part.startswith(".") for part in f.split("/"))
        and not any(fnmatch(f, pattern) for pattern in ignore)
    )


class HubRulesError(ValueError):
    """A card that breaks the Hub's rules; nothing was sent."""


def push_folder(
    folder: str | Path,
    repo_id: str,
    message: str,
    files: list[str],
    repo_type: str = "model",
    private: bool = False,
    api=None,
    **create,
) -> str:
    """Create the repo if needed and upload exactly `files` of the folder in one commit; the commit URL.

    The folder's README.md is checked against the Hub's rules first (HubRulesError, nothing sent).
    api: an `huggingface_hub.HfApi` (a test double in the tests); create: more create_repo arguments.
    """
    from huggingface_hub import HfApi

    readme = Path(folder) / "README.md"
    problems = card_problems(readme.read_text(), repo_type) if readme.is_file() else ["the folder has no README.md"]
    if problems:
        raise HubRulesError(f"{readme}: " + "; ".join(problems))
    api = api or HfApi()
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, **create)
    commit = api.upload_folder(
        repo_id=repo_id, repo_type=repo_type, folder_path=str(folder), allow_patterns=files, commit_message=message
    )
    return commit.commit_url
