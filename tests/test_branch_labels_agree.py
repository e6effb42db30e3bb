"""One label per feature: the analysis, the circuits graph and compare say the same dominant branch.

Two SAEs (mixed4c, mixed4d) with a quarter of their rows driving the 5x5 branch harder, one set of images:
`analyze` labels every feature; `circuits` and `compare` read those labels when given the analysis folders,
and compute the same ones by the same rule on the same images when they are not.
"""

from __future__ import annotations

import json

import pytest
import torch
from factories import make_images, make_sae, unit_rows

from inception_sae.analysis.config import AnalyzeConfig
from inception_sae.analysis.run import analyze
from inception_sae.circuits.config import CircuitsConfig
from inception_sae.circuits.run import run as run_circuits
from inception_sae.circuits.saes import layer_rms
from inception_sae.compare.run import CompareConfig
from inception_sae.compare.run import run as compare_saes
from inception_sae.data.images import ImageDataset, Preprocess
from inception_sae.models.layers import layer_info

M = 64


def rows(rms: torch.Tensor, layer: str, g: torch.Generator) -> torch.Tensor:
    """Centred activation-like rows in units of ``rms``; the first M/4 drive the 5x5 branch four times harder."""
    Y = torch.randn(M, len(rms), generator=g).abs() * (torch.rand(M, len(rms), generator=g) < 0.5)
    a, b = layer_info(layer).branch("5x5").slice
    Y[: M // 4, a:b] *= 4
    Y = Y - Y.mean(1, keepdim=True)
    return unit_rows(Y * rms)


def labels_of(folder) -> list[str]:
    return [json.loads((folder / "features" / f"{i}.json").read_text())["dominant_branch"] for i in range(M)]


@pytest.mark.slow
def test_one_label_per_feature_in_analysis_graph_and_compare(model, tmp_path):
    imgs = tmp_path / "imgs"
    make_images(imgs, 6, size=(240, 240))
    rms = layer_rms(model, ImageDataset.from_path(imgs, Preprocess(256, 224)), ["mixed4c", "mixed4d"], 6)
    g = torch.Generator().manual_seed(0)
    sae = {
        layer: make_sae(tmp_path / layer, W_dec=rows(rms[layer], layer, g), layer=layer)
        for layer in ("mixed4c", "mixed4d")
    }
    ana, labels = {}, {}
    for layer, folder in sae.items():
        ana[layer] = tmp_path / f"ana_{layer}"
        analyze(
            AnalyzeConfig(
                sae=folder,
                images=imgs,
                out=ana[layer],
                batch_size=6,
                umap=False,
                logit_effect=False,
                render_top=0,
                render_intervals=0,
                n_top=3,
            ),
            model=model,
            progress=False,
        )
        labels[layer] = labels_of(ana[layer])
        assert labels[layer][: M // 4].count("5x5") >= 14 and labels[layer][M // 4 :].count("none") >= 44
    for given in (True, False):  # the analysis folders' labels read, then the same rule on the same images
        out = tmp_path / f"given_{given}"
        folders = (ana["mixed4c"], ana["mixed4d"]) if given else ()
        run_circuits(
            CircuitsConfig(
                upstream=sae["mixed4c"],
                downstream=sae["mixed4d"],
                out=out / "circuits",
                images=imgs,
                input_size=224,
                analysis=folders,
                feature=0,
                compare_features=1,
                sites=2,
                candidates=4,
            ),
            model=model,
        )
        nodes = json.loads((out / "circuits" / "graph.json").read_text())["nodes"]
        shown = [n for n in nodes if "/f/" in n["id"]]
        assert len(shown) >= 5
        for n in shown:
            assert n["branch"] == labels[n["layer"]][n["feature"]], (given, n)
        cmp = compare_saes(CompareConfig(sae_a=sae["mixed4c"], sae_b=sae["mixed4d"], out=out / "compare", images=imgs,
                                         analysis_a=ana["mixed4c"] if given else None,
                                         analysis_b=ana["mixed4d"] if given else None), model=model)  # fmt: skip
        disk = json.loads((out / "compare" / "compare.json").read_text())
        assert disk["features_a"]["dominant_branch"] == cmp.features_a["dominant_branch"] == labels["mixed4c"]
        assert disk["features_b"]["dominant_branch"] == labels["mixed4d"]
