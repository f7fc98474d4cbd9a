"""Which attention map explains the ViT's answers? Candidates measured on validation scans, with the
model-randomisation sanity check (Adebayo et al. 2018).

    python benchmarks/explanations.py --vit MODEL --data DATA [--part val] [--scans 95]

For each candidate map (attention rollout; the class token's attention averaged over heads and the
last 1, 2, 4 or 6 layers), on the scans of the model's split part (validation by default: the choice
is made there), prints the deletion AUC (cells blacked out most salient first; lower is better),
the same for a random order, the share of the map's mass on the outer 5% of the image (compare/
explain.py measures the shipped map the same way), and the Spearman rank correlation between the map
and the one the same network gives with re-initialised weights: a map that explains the model must
change when the model does. The choice: the lowest deletion AUC among the maps below 0.5 there.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from transformers import AutoModelForImageClassification

from compare.explain import border_fraction, deletion_auc
from models import load_model
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


CANDIDATES = {"rollout": rollout, **{f"class token, last {k}": last_layers(k) for k in (1, 2, 3, 4, 6)}}


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
    # The same network with re-initialised weights (Adebayo et al. 2018's model randomisation).
    torch.manual_seed(0)
    random_network = AutoModelForImageClassification.from_config(network.config, attn_implementation="eager").eval()
    rng = np.random.default_rng(0)
    figures = {name: [] for name in [*CANDIDATES, "random order"]}
    for scan in chosen:
        decoded = read_scan(scan.path)
        pixels = torch.from_numpy(model.pixels([decoded]))
        with torch.no_grad():
            attentions = [n(pixel_values=pixels, output_attentions=True).attentions for n in (network, random_network)]
        for name, make in CANDIDATES.items():
            heat, random_heat = (make(a, model.grid)[0].numpy() for a in attentions)
            order = np.argsort(-heat.ravel(), kind="stable")
            figures[name].append(
                (
                    deletion_auc(model, decoded, order, heat.shape),
                    border_fraction(heat, decoded.gray.shape),
                    spearmanr(heat.ravel(), random_heat.ravel()).statistic,
                )
            )
        order = rng.permutation(heat.size)
        figures["random order"].append((deletion_auc(model, decoded, order, heat.shape), np.nan, np.nan))
    print(f"{len(chosen)} {args.part} scans of {folder.name}")
    print(f"{'map':24s} {'deletion AUC':>12s} {'border mass':>12s} {'Spearman to re-initialised':>27s}")
    for name, values in figures.items():
        values = np.array(values)
        extra = (
            ""
            if np.isnan(values[:, 1]).all()
            else f"{np.nanmean(values[:, 1]):12.1%} {np.nanmean(values[:, 2]):27.3f}"
        )
        print(f"{name:24s} {values[:, 0].mean():12.3f} {extra}")
    passing = [n for n in CANDIDATES if np.mean([v[2] for v in figures[n]]) < 0.5]
    best = min(passing, key=lambda n: np.mean([v[0] for v in figures[n]])) if passing else None
    print(
        f"chosen (lowest deletion AUC among the maps whose Spearman to the re-initialised model is below 0.5): {best}"
    )


if __name__ == "__main__":
    main()
