"""Publishing a model folder on the Hugging Face Hub: the one upload path for every stage."""
from pathlib import Path


def push_folder(folder: str | Path, repo_id: str, message: str, ignore: list[str] | None = None, private: bool = False) -> str:
    """Create the repo if needed and upload the folder; returns the commit URL."""
    from huggingface_hub import create_repo, upload_folder

    create_repo(repo_id, exist_ok=True, private=private)
    return upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=message, ignore_patterns=ignore).commit_url
