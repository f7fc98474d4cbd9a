"""Which attention map explains the ViT's answers? Candidates measured on validation scans, and the
model-randomisation sanity check (Adebayo et al. 2018) of the chosen one.

    python benchmarks/explanations.py --vit MODEL --data DATA [--part val] [--scans 95]

For each candidate map (attention rollout; the class token's attention averaged over heads and the
last 1, 2, 4 or 6 layers), on the scans of the model's split part (validation by default: the choice
is made there), prints the deletion AUC (cells blacked out most salient first; lower is better),
the same for a random order, and the share of the map's mass on the outer 5% of the image
(compare/explain.py measures the shipped map the same way). Then the Spearman rank correlation
between the shipped map and the map of the same network with re-initialised weights: a map that
explains the model must change when the model does (well below 0.5).
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from transformers import AutoModelForImageClassification

from compare.explain import border_fraction, deletion_auc
from models import load_model
from models.vit import class_token_attention
from octcore.data import discover, load_split, select
from octcore.imaging import read_scan


def rollout(attentions, grid):
    """Attention rollout (Abnar & Zuidema 2020): head-averaged attention plus identity, chained through layers."""
    tokens = attentions[0].shape[-1]
    chained = torch.eye(tokens).expand(attentions[0].shape[0], tokens, tokens)
    for layer in attentions:
        mixed = 0.5 * layer.mean(dim=1) + 0.5 * torch.eye(tokens)
        chained = torch.bmm(mixed / mixed.sum(dim=-1, keepdim=True), chained)
    return chained[:, 0, -grid[0] * grid[1] :].reshape(-1, *grid)


def last_layers(k: int):
    def attention(attentions, grid):
        patches = grid[0] * grid[1]
        return torch.stack([a.mean(dim=1)[:, 0, -patches:] for a in attentions[-k:]]).mean(0).reshape(-1, *grid)

    return attention


CANDIDATES = {"rollout": rollout, **{f"class token, last {k}": last_layers(k) for k in (1, 2, 4, 6)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vit", required=True, help="a trained ViT folder (with its split.json)")
    parser.add_argument("--data", required=True, help="the data it was trained on")
    parser.add_argument("--part", default="val", choices=("val", "test"))
    parser.add_argument("--scans", type=int, default=95)
    args = parser.parse_args()
    folder = Path(args.vit)
    model = load_model(folder, backend="torch")
    network = model.model.model  # the transformers model inside the exported graph's module
    scans = discover(args.data)
    chosen = select(scans, load_split(folder / "split.json", scans), args.part)[: args.scans]
    rng = np.random.default_rng(0)
    figures = {name: [] for name in [*CANDIDATES, "random order"]}
    for scan in chosen:
        decoded = read_scan(scan.path)
        with torch.no_grad():
            attentions = network(
                pixel_values=torch.from_numpy(model.pixels([decoded])), output_attentions=True
            ).attentions
        for name, make in CANDIDATES.items():
            heat = make(attentions, model.grid)[0].numpy()
            order = np.argsort(-heat.ravel(), kind="stable")
            figures[name].append(
                (deletion_auc(model, decoded, order, heat.shape), border_fraction(heat, decoded.gray.shape))
            )
        figures["random order"].append((deletion_auc(model, decoded, rng.permutation(heat.size), heat.shape), np.nan))
    print(f"{len(chosen)} {args.part} scans of {folder.name}")
    print(f"{'map':24s} {'deletion AUC':>12s} {'border mass':>12s}")
    for name, values in figures.items():
        values = np.array(values)
        border = "" if np.isnan(values[:, 1]).all() else f"{np.nanmean(values[:, 1]):12.1%}"
        print(f"{name:24s} {values[:, 0].mean():12.3f} {border}")

    # Model randomisation: the shipped map of the trained network against that of a re-initialised copy.
    random_network = AutoModelForImageClassification.from_config(network.config, attn_implementation="eager").eval()
    correlations = []
    for scan in chosen:
        pixels = torch.from_numpy(model.pixels([scan.path]))
        with torch.no_grad():
            maps = [
                class_token_attention(n(pixel_values=pixels, output_attentions=True).attentions, model.grid)[0]
                for n in (network, random_network)
            ]
        correlations.append(spearmanr(maps[0].numpy().ravel(), maps[1].numpy().ravel()).statistic)
    print(
        f"model randomisation: Spearman rank correlation of the shipped map, trained against re-initialised "
        f"weights: mean {np.mean(correlations):.3f} (max {np.max(correlations):.3f}) over {len(chosen)} scans"
    )


if __name__ == "__main__":
    main()
