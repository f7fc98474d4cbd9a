"""Publish a trained model folder (ViT or classical) on the Hugging Face Hub.

    python -m models.push FOLDER --repo-id USER/NAME [--private] [--dry-run]

Uploads everything `from_pretrained`, `pipeline()`, `models.load_model` and the Space need, the
int8 ONNX export included, in one commit, after rendering the card again with the repo id (so its
usage snippet names it) and checking the card against the Hub's rules. --dry-run prints the files
it would upload, one per line, and the card's problems if any, without contacting the Hub.
"""

import argparse
import json
import sys
from pathlib import Path

from models import ModelFormatError, model_kind
from models.card import render_card
from octcore.hub import HubRulesError, card_problems, files_to_upload, push_folder

# Never uploaded: resume state, the float32 ONNX (the Space runs the int8 one), an export that failed its check.
IGNORE = ["checkpoints/*", "onnx/model.onnx", "onnx/*.rejected.onnx"]


def push_model(folder: str | Path, repo_id: str, api=None, private: bool = False, dry_run: bool = False) -> list[str]:
    """The files pushed (or, with dry_run, that would be); raises HubRulesError before sending a bad card."""
    folder = Path(folder)
    kind = model_kind(json.loads((folder / "config.json").read_text()))
    files = files_to_upload(folder, IGNORE)
    card = render_card(folder, repo_id)
    if dry_run:
        problems = card_problems(str(card))
        if problems:
            raise HubRulesError("; ".join(problems))
        return files
    card.save(folder / "README.md")
    push_folder(folder, repo_id, f"Upload OCT {kind} model", files, api=api, private=private)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.push", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a model folder written by python -m train or python -m baselines.train")
    parser.add_argument("--repo-id", required=True, help="the Hub model repo to create or update, e.g. USER/oct-vit")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="print the files it would upload; contact nothing")
    args = parser.parse_args(argv)
    try:
        files = push_model(args.folder, args.repo_id, private=args.private, dry_run=args.dry_run)
    except (OSError, KeyError, ModelFormatError) as e:
        print(f"error: {args.folder} is not a trained model folder ({type(e).__name__}: {e})", file=sys.stderr)
        return 2
    except HubRulesError as e:
        print(f"error: the Hub would refuse this card: {e}", file=sys.stderr)
        return 1
    print("\n".join(files))
    if not args.dry_run:
        print(f"uploaded {len(files)} files to https://huggingface.co/{args.repo_id}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
