"""Train a peer's TopK SAE on the benchmark activations; print one JSON line of results.

Runs inside benchmarks/.peers-venv (see setup.sh):
    python peers.py {sparsify,sparsify-adam,overcomplete,saelens} ACTS.npy --steps N --batch 4096 --k 32 --latents 8448
Each peer runs its own recipe as its own trainer does: sparsify its Trainer.fit defaults (b_dec at the first
batch's mean, schedule-free SignSGD; see sparsify_runner), sparsify-adam its Adam option, overcomplete its
TopKSAE with its top_k_auxiliary_loss (Adam at 2e-4 / sqrt(m / 2**14)), SAELens its TopK trainer's defaults.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import json
import math
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common_data import fvu

STUBBED = ("torchvision", "cv2", "skimage", "timm", "overcomplete.visualization")


def _stub_vision_deps() -> None:
    """overcomplete imports torchvision, cv2, skimage, timm and its plotting module for vision backbones and plots only.

    The CPU torchvision build cannot be installed here (PyPI's is built for CUDA torch), so these
    names resolve to inert stubs; its SAE code does not touch them.
    """

    class Stub(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return Stub(f"{self.__name__}.{name}")

        def __call__(self, *a, **k):
            return self

    class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path, target=None):
            if any(name == s or name.startswith(s + ".") for s in STUBBED):
                return importlib.machinery.ModuleSpec(name, self, is_package=True)
            return None

        def create_module(self, spec):
            return Stub(spec.name)

        def exec_module(self, module):
            module.__path__ = []

    sys.meta_path.insert(0, Finder())


def sparsify_runner(d, m, k, lr):
    """sparsify's own recipe, step for step as its ``Trainer.fit`` (1.3.3) runs it with its defaults: b_dec set to the
    first batch's mean, the decoder made unit-norm before each forward, the FVU loss, gradients parallel to decoder
    rows removed, then its default optimizer, schedule-free SignSGD (momentum 0.95, lr 5e-3 / sqrt(m / 2**14), no
    schedule). AuxK is on (alpha 1/32, latents silent for 10M samples; its default alpha is 0). Evaluated, as its
    ``save`` writes them, with the optimizer's averaged weights (``opt.eval()``). ``lr`` is not used."""
    from schedulefree import ScheduleFreeWrapper
    from sparsify import SparseCoder, SparseCoderConfig
    from sparsify.sign_sgd import SignSGD

    sae = SparseCoder(d, SparseCoderConfig(num_latents=m, k=k), device="cpu")
    opt = ScheduleFreeWrapper(SignSGD([{"params": sae.parameters(), "lr": 5e-3 / (m / 2**14) ** 0.5}]), momentum=0.95)
    opt.train()
    return _sparsify_loop(sae, opt, m, evaluated=opt)


def sparsify_adam_runner(d, m, k, lr):
    """sparsify with its Adam option (torch Adam, default eps, lr 2e-4 / sqrt(m / 2**14)), the rest as in
    :func:`sparsify_runner`; its linear warm-up over 1,000 steps is left out (it would not end in these runs)."""
    from sparsify import SparseCoder, SparseCoderConfig

    sae = SparseCoder(d, SparseCoderConfig(num_latents=m, k=k), device="cpu")
    return _sparsify_loop(sae, torch.optim.Adam(sae.parameters(), lr=lr), m, evaluated=None)


def _sparsify_loop(sae, opt, m, evaluated):
    since = torch.zeros(m, dtype=torch.long)
    window, started = 10_000_000, False

    def step(x):
        nonlocal started
        if not started:  # Trainer.fit at global_step 0: centre the pre-activations
            sae.b_dec.data = x.mean(0).to(sae.b_dec.dtype)
            started = True
        sae.set_decoder_norm_to_unit_norm()
        out = sae(x, dead_mask=since > window)
        (out.fvu + out.auxk_loss / 32).backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
        fired = torch.zeros(m, dtype=torch.bool)
        fired[out.latent_indices.flatten()] = True
        since.add_(x.shape[0])
        since[fired] = 0

    def averaged(fn):  # schedule-free: read the averaged weights, as sparsify's save does, then go back
        def run(*a):
            if evaluated is None:
                return fn(*a)
            evaluated.eval()
            try:
                return fn(*a)
            finally:
                evaluated.train()

        return run

    @torch.no_grad()
    def recon(x):
        out = sae(x)
        return out.sae_out, out.latent_indices, out.latent_acts

    return step, averaged(recon), averaged(lambda: sae.W_dec.detach().clone())


def overcomplete_runner(d, m, k, lr):
    _stub_vision_deps()
    from overcomplete.sae import TopKSAE
    from overcomplete.sae.losses import top_k_auxiliary_loss

    sae = TopKSAE(d, nb_concepts=m, top_k=k, device="cpu")
    opt = torch.optim.Adam(sae.parameters(), lr=lr)

    def step(x):
        pre, z, x_hat = sae(x)
        top_k_auxiliary_loss(x, x_hat, pre, z, sae.get_dictionary()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def recon(x):
        _, z, x_hat = sae(x)
        vals, idx = z.topk(k, dim=1)
        return x_hat, idx, vals

    return step, recon, lambda: sae.get_dictionary().detach()


def saelens_runner(d, m, k, lr):
    """SAELens's TopK training SAE with its trainer's defaults: Adam (3e-4, betas 0.9/0.999, constant), clip 1.0,
    its AuxK (coefficient 1) on latents dead for 1,000 steps."""
    from sae_lens.saes.sae import TrainStepInput
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d, d_sae=m, k=k, device="cpu", dtype="float32"))
    opt = torch.optim.Adam(sae.parameters(), lr=3e-4, betas=(0.9, 0.999))
    since = torch.zeros(m)

    def step(x):
        out = sae.training_forward_pass(TrainStepInput(x, {}, since > 1000, 0, False))
        with torch.no_grad():
            since.add_(1)
            since[out.feature_acts.bool().any(0)] = 0
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def recon(x):
        z = sae.encode(x)
        vals, idx = z.topk(k, dim=1)
        return sae.decode(z), idx, vals

    def dec_rows():  # the decoder as it acts: rows rescaled by their norms (rescale_acts_by_decoder_norm)
        return sae.W_dec.detach()

    return step, recon, dec_rows


RUNNERS = {
    "sparsify": sparsify_runner,
    "sparsify-adam": sparsify_adam_runner,
    "overcomplete": overcomplete_runner,
    "saelens": saelens_runner,
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("peer", choices=sorted(RUNNERS))
    p.add_argument("acts")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--latents", type=int, default=8448)
    p.add_argument("--eval", type=int, default=16384)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    X = np.load(a.acts, mmap_mode="r")
    train, held = X[: len(X) - a.eval], torch.from_numpy(np.ascontiguousarray(X[len(X) - a.eval :]))
    d, m = X.shape[1], a.latents
    lr = 2e-4 / math.sqrt(m / 2**14)
    step, recon, _ = RUNNERS[a.peer](d, m, a.k, lr)
    order = np.random.default_rng(0).permutation(len(train))
    times = []
    for s in range(a.steps):
        rows = np.sort(order[(s * a.batch) % (len(train) - a.batch) :][: a.batch])
        x = torch.from_numpy(np.ascontiguousarray(train[rows]))
        tic = time.perf_counter()
        step(x)
        times.append(time.perf_counter() - tic)
    fired = torch.zeros(m, dtype=torch.bool)
    parts = []
    for s in range(0, len(held), 4096):
        x_hat, idx, vals = recon(held[s : s + 4096])
        fired[idx[vals > 0]] = True
        parts.append(x_hat.float().numpy())
    med = float(np.median(times[3:]))
    print(
        json.dumps(
            {
                "trainer": a.peer,
                "samples": a.steps * a.batch,
                "step_s": med,
                "samples_per_s": a.batch / med,
                "fvu": fvu(held.numpy(), np.concatenate(parts)),
                "dead_fraction": float(1 - fired.float().mean()),
            }
        )
    )


if __name__ == "__main__":
    main()
