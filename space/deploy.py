"""Build the exact Hugging Face Space bundle into a folder, and upload it.

    python -m space.deploy --out DIR [--vit MODEL_DIR] [--baseline MODEL_DIR] [--repo USER/SPACE] [--dry-run]

The bundle keeps the repository's layout, trimmed to what the app imports: space/ (app, ui, engine,
a few example scans), octcore/, models/, the classical model's definition in baselines/ (features
and estimator), the Space README (its YAML header
points Spaces at space/app.py) and requirements. --vit / --baseline take a local model folder, copied
into space/models/ (the app's defaults; only the int8 ONNX of the ViT is copied when one exists,
with the config and processor), or a Hub model id: listed in the README's `models:` (which links
the Space and the model pages) and, on upload, set as the Space's OCT_VIT_MODEL / OCT_BASELINE_MODEL
variable, which the app loads from. --dry-run builds the folder and stops; otherwise it is uploaded
with huggingface_hub.
"""

import argparse
import shutil
import sys
from pathlib import Path

from octcore.labels import CLASSES
from space.engine import BASELINE_ENV, VIT_ENV

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "octcore": None,
    "models": None,
    "baselines": ["__init__.py", "features.py", "model.py"],
    "space": ["__init__.py", "app.py", "ui.py", "engine.py"],
}
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "checkpoints", "model.onnx", "*.rejected.onnx")


def _is_folder(model: str | None) -> bool:
    return bool(model) and Path(model).is_dir()


def build_bundle(out: Path, vit: str | None = None, baseline: str | None = None) -> Path:
    """The Space folder; `vit` and `baseline` are local model folders (copied) or Hub ids (named in `models:`)."""
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    for package, files in PACKAGES.items():
        if files is None:
            shutil.copytree(ROOT / package, staging / package, ignore=SKIP)
        else:
            (staging / package).mkdir(parents=True)
            for name in files:
                shutil.copy2(ROOT / package / name, staging / package / name)
    hub_ids = [m for m in (vit, baseline) if m and not _is_folder(m)]
    readme = (ROOT / "space" / "README.md").read_text()
    (staging / "README.md").write_text(readme.replace("\nmodels: []\n", f"\nmodels: [{', '.join(hub_ids)}]\n", 1))
    shutil.copy2(ROOT / "space" / "requirements.txt", staging / "requirements.txt")
    (staging / "space" / "examples").mkdir()
    for label in CLASSES:
        example = sorted((ROOT / "examples" / "sample" / label).glob("*.jpeg"))[0]
        shutil.copy2(example, staging / "space" / "examples" / example.name)
    for source, name in ((vit, "vit"), (baseline, "hog-lbp-svm")):
        if _is_folder(source):
            shutil.copytree(source, staging / "space" / "models" / name, ignore=SKIP)
    vit_copy = staging / "space" / "models" / "vit"
    if (vit_copy / "onnx" / "model_int8.onnx").is_file():
        (vit_copy / "model.safetensors").unlink(missing_ok=True)  # the Space runs the int8 export
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m space.deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to build the bundle in (replaced)")
    parser.add_argument("--vit", help="a ViT folder from python -m train (and train.export_onnx), or its Hub id")
    parser.add_argument("--baseline", help="a model folder from python -m baselines.train, or its Hub id")
    parser.add_argument("--repo", help="the Space to upload to, e.g. USER/oct-classifier")
    parser.add_argument("--dry-run", action="store_true", help="build the folder only")
    args = parser.parse_args(argv)
    for model in (args.vit, args.baseline):
        if _is_folder(model) and not (Path(model) / "config.json").is_file():
            print(f"error: {model} is not a model folder (no config.json)", file=sys.stderr)
            return 2
        if model and not _is_folder(model) and model.count("/") != 1:
            print(f"error: {model} is neither a folder nor a Hub id (USER/NAME)", file=sys.stderr)
            return 2
    bundle = build_bundle(Path(args.out), args.vit, args.baseline)
    size = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file())
    print(f"built {bundle} ({size / 1e6:.1f} MB); start it with: python {bundle / 'space' / 'app.py'}")
    if args.dry_run:
        return 0
    if not args.repo:
        print("error: --repo USER/SPACE is needed to upload (or pass --dry-run)", file=sys.stderr)
        return 2
    from huggingface_hub import add_space_variable, create_repo, upload_folder

    create_repo(args.repo, repo_type="space", space_sdk="gradio", exist_ok=True)
    for model, variable in ((args.vit, VIT_ENV), (args.baseline, BASELINE_ENV)):
        if model and not _is_folder(model):
            add_space_variable(args.repo, variable, model)
    url = upload_folder(
        repo_id=args.repo, repo_type="space", folder_path=str(bundle), commit_message="Deploy OCT Space"
    ).commit_url
    print(f"uploaded: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
