"""Build the exact Hugging Face Space bundle into a folder, and upload it.

    python -m space.deploy --out DIR [--vit MODEL] [--baseline MODEL ...] [--repo USER/SPACE] [--dry-run]

The bundle keeps the repository's layout, trimmed to what the app imports: space/ (app, ui, engine,
a few example scans), octcore/, models/, the classical model's definition in baselines/ (features,
estimator and their option choices), requirements, and a README written with huggingface_hub's
SpaceCard (its YAML header points Spaces at space/app.py). A model is a local folder, copied into
space/models/ (only the int8 ONNX of a ViT when it has one, with its config and processor), or a Hub
model id: named under `models:` and `preload_from_hub` (downloaded when the Space is built, so the
first visitor does not wait) and, on upload, set as the Space's OCT_VIT_MODEL / OCT_BASELINE_MODEL
variable, which the app loads from. --dry-run builds the folder, prints its files and stops.
"""

import argparse
import shutil
import sys
from pathlib import Path

from huggingface_hub import SpaceCard, SpaceCardData

from octcore.hub import HubRulesError, card_problems, files_to_upload, is_repo_id, push_folder
from octcore.labels import CLASSES
from space.engine import BASELINE_ENV, VIT_ENV

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "octcore": None,
    "models": None,
    "baselines": ["__init__.py", "features.py", "model.py", "options.py"],
    "space": ["__init__.py", "app.py", "ui.py", "engine.py", "render.py", "uploads.py", "workers.py"],
}
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "checkpoints", "logs", "model.onnx", "*.rejected.onnx")
GRADIO_VERSION = "6.31.0"  # requirements.txt's pin: the Space runs what the tests ran
SHORT_DESCRIPTION = "OCT B-scans: a ViT and a classical model, side by side"


def _is_folder(model: str | None) -> bool:
    return bool(model) and Path(model).is_dir()


def space_card(hub_ids: list[str]) -> SpaceCard:
    """The Space's README: its configuration (SpaceCardData) and a short description for visitors."""
    data = SpaceCardData(
        title="OCT B-scan classifier: ViT vs classical",
        sdk="gradio",
        sdk_version=GRADIO_VERSION,
        python_version="3.11",
        app_file="space/app.py",
        license="apache-2.0",
        models=hub_ids or None,
        tags=["oct", "retina", "ophthalmology", "medical-imaging", "vision-transformer", "hog", "lbp", "svm"],
        emoji="👁️",
        colorFrom="indigo",
        colorTo="gray",
        short_description=SHORT_DESCRIPTION,
        preload_from_hub=hub_ids or None,
        suggested_hardware="cpu-basic",
        pinned=False,
    )
    template = (ROOT / "space" / "space_card.md").read_text()
    return SpaceCard.from_template(data, template_str=template, models=hub_ids)


def build_bundle(out: Path, vit: str | None = None, baselines: list[str] | None = None) -> Path:
    """The Space folder; each model a local folder (copied) or a Hub id (named in the card, preloaded)."""
    baselines = baselines or []
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    for package, files in PACKAGES.items():
        if files is None:
            shutil.copytree(ROOT / package, staging / package, ignore=SKIP)
        else:
            (staging / package).mkdir(parents=True)
            for name in files:
                shutil.copy2(ROOT / package / name, staging / package / name)
    space_card([m for m in (vit, *baselines) if m and not _is_folder(m)]).save(staging / "README.md")
    shutil.copy2(ROOT / "space" / "requirements.txt", staging / "requirements.txt")
    (staging / "space" / "examples").mkdir()
    for i, label in enumerate(CLASSES):  # one labelled scan per class for the page, another to try, named neutrally
        shown, tried = sorted((ROOT / "examples" / "sample" / label).glob("*.jpeg"))[:2]
        shutil.copy2(shown, staging / "space" / "examples" / f"class-{label}.jpeg")
        shutil.copy2(tried, staging / "space" / "examples" / f"example-{i + 1}.jpeg")
    if _is_folder(vit):
        shutil.copytree(vit, staging / "space" / "models" / "vit", ignore=SKIP)
        vit_copy = staging / "space" / "models" / "vit"
        if (vit_copy / "onnx" / "model_int8.onnx").is_file():
            (vit_copy / "model.safetensors").unlink(missing_ok=True)  # the Space runs the int8 export
    for source in filter(_is_folder, baselines):
        shutil.copytree(source, staging / "space" / "models" / Path(source).name, ignore=SKIP)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return out


def deploy(bundle: Path, repo_id: str, vit: str | None, baselines: list[str], api=None) -> str:
    """Upload a built bundle as a Gradio Space, with the Hub ids of its models as the Space's variables."""
    from huggingface_hub import HfApi

    api = api or HfApi()
    url = push_folder(
        bundle,
        repo_id,
        "Deploy the OCT Space",
        files_to_upload(bundle, []),
        repo_type="space",
        api=api,
        space_sdk="gradio",
    )
    hub_baselines = [m for m in baselines if not _is_folder(m)]
    for value, variable in (
        (vit if vit and not _is_folder(vit) else None, VIT_ENV),
        (",".join(hub_baselines) or None, BASELINE_ENV),
    ):
        if value:
            api.add_space_variable(repo_id, variable, value)
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m space.deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to build the bundle in (replaced)")
    parser.add_argument("--vit", help="a ViT folder from python -m train (and train.export_onnx), or its Hub id")
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        help="a model folder from python -m baselines.train, or its Hub id (repeat for several)",
    )
    parser.add_argument("--repo", help="the Space to upload to, e.g. USER/oct-classifier")
    parser.add_argument("--dry-run", action="store_true", help="build the folder and list its files only")
    args = parser.parse_args(argv)
    for model in (args.vit, *args.baseline):
        if _is_folder(model) and not (Path(model) / "config.json").is_file():
            print(f"error: {model} is not a model folder (no config.json)", file=sys.stderr)
            return 2
        if model and not _is_folder(model) and not is_repo_id(model):
            print(f"error: {model} is neither a folder nor a Hub id (USER/NAME)", file=sys.stderr)
            return 2
    bundle = build_bundle(Path(args.out), args.vit, args.baseline)
    problems = card_problems((bundle / "README.md").read_text(), "space")
    if problems:
        print(f"error: the Hub would refuse the Space card: {'; '.join(problems)}", file=sys.stderr)
        return 1
    size = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file())
    print(f"built {bundle} ({size / 1e6:.1f} MB); start it with: python {bundle / 'space' / 'app.py'}")
    if args.dry_run:
        print("\n".join(files_to_upload(bundle, [])))
        return 0
    if not args.repo:
        print("error: --repo USER/SPACE is needed to upload (or pass --dry-run)", file=sys.stderr)
        return 2
    try:
        print(f"uploaded: {deploy(bundle, args.repo, args.vit, args.baseline)}")
    except HubRulesError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
