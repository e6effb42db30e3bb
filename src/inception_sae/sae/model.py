"""The TopK sparse autoencoder (Gao et al. 2024; Bozoukov 2025 eqs. 1-2) and its on-disk folder.

``z = ReLU(TopK(W_enc (x - b_dec) + b_enc))``, ``x_hat = W_dec z + b_dec``.
Internally the encoder is stored one row per latent, ``enc`` (m, d), which
makes the sparse backward a row gather; the public ``W_enc`` view and the
saved file use the SAELens layout (d_in, d_sae).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple, get_args

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from ..errors import UserError
from ..fsio import atomic_save_safetensors, atomic_write_json
from .kernels import (
    Codes,
    dense_decode,
    dense_encode,
    normalize_rows_,
    recycle_grads,
    remove_parallel_rows,
    sparse_decode,
    sparse_encode,
    sparse_forward,
)
from .settings import Tie
from .view import TENSORS, SAETensors

TIES: tuple[str, ...] = get_args(Tie)
WEIGHTS_FILE = "sae_weights.safetensors"
CFG_FILE = "cfg.json"


@dataclass(frozen=True)
class SAEConfig:
    """Shape and tying of one SAE."""

    d_in: int  #: input dimension (layer channels)
    d_sae: int  #: number of latents m
    k: int = 32  #: active latents per input
    tie: str = "init"  #: "init": encoder starts as decoder^T then trains freely (Gao); "full": decoder == encoder^T
    seed: int = 0  #: initialisation seed

    def __post_init__(self) -> None:
        if self.d_in < 1 or self.d_sae < 1:
            raise UserError(f"d_in and d_sae must be positive, got {self.d_in}, {self.d_sae}")
        if not 1 <= self.k <= self.d_sae:
            raise UserError(f"k must be in 1..{self.d_sae} (the latent count), got {self.k}")
        if self.tie not in TIES:
            raise UserError(f"tie must be one of {TIES}, got {self.tie!r}")

    @classmethod
    def from_expansion(cls, d_in: int, expansion: float = 16, latents: int | None = None, **kw: Any) -> SAEConfig:
        """Latent count from an explicit ``latents`` or ``expansion * d_in``."""
        return cls(d_in=d_in, d_sae=int(latents) if latents else round(expansion * d_in), **kw)


class ForwardOutput(NamedTuple):
    """What one training forward pass returns."""

    x_hat: Tensor  #: (B, d) reconstruction
    codes: Codes  #: (B, k) values and indices
    multi_x_hat: Tensor | None  #: (B, d) reconstruction from 4k latents (MultiTopK), else None
    sq_err: Tensor | None = None  #: sum((x_hat - v)^2), differentiable, when the fused CPU path formed it


class TopKSAE(nn.Module):
    """TopK SAE. ``encode(v) -> (values, indices)``, ``decode(values, indices) -> v_hat``."""

    def __init__(self, cfg: SAEConfig, device: str | torch.device = "cpu", meta: dict | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.meta: dict[str, Any] = dict(meta or {})  #: layer, model identity, training summary...
        g = torch.Generator().manual_seed(cfg.seed)
        dec = torch.randn(cfg.d_sae, cfg.d_in, generator=g)
        dec /= dec.norm(dim=1, keepdim=True)  # unit-norm decoder rows
        self.enc = nn.Parameter(dec.clone().to(device))  # (m, d): tied init, W_enc = W_dec^T
        self.dec = None if cfg.tie == "full" else nn.Parameter(dec.to(device))  # (m, d)
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, device=device))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, device=device))

    # ----- views in SAELens layout
    @property
    def W_dec(self) -> Tensor:
        """(d_sae, d_in) decoder, one row per latent."""
        return self.enc if self.dec is None else self.dec

    @property
    def W_enc(self) -> Tensor:
        """(d_in, d_sae) encoder (a transposed view of the internal row-per-latent matrix)."""
        return self.enc.t()

    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    @property
    def k(self) -> int:
        return self.cfg.k

    # ----- compute
    def encode(self, v: Tensor, k: int | None = None, compute_dtype=None) -> Codes:
        """(B, d) -> Codes((B, k) values, (B, k) indices); sparse backward."""
        self._check_input(v)
        return sparse_encode(v, self.enc, self.b_enc, self.b_dec, k or self.k, compute_dtype)

    def decode(self, values: Tensor, indices: Tensor) -> Tensor:
        """(B, k) values and indices -> (B, d) reconstruction."""
        return sparse_decode(values, indices, self.W_dec) + self.b_dec

    def forward(self, v: Tensor, multi_topk: bool = False, compute_dtype=None) -> ForwardOutput:
        """Training forward pass on the sparse path. MultiTopK (Gao) also decodes the top 4k."""
        self._check_input(v)
        if not multi_topk:
            x_hat, codes, sq_err = sparse_forward(v, self.enc, self.dec, self.b_enc, self.b_dec, self.k, compute_dtype)
            return ForwardOutput(x_hat, codes, None, sq_err)
        k4 = min(4 * self.k, self.d_sae)
        wide = sparse_encode(v, self.enc, self.b_enc, self.b_dec, k4, compute_dtype, sort=True)
        codes = Codes(wide.values[:, : self.k], wide.indices[:, : self.k])
        return ForwardOutput(self.decode(*codes), codes, self.decode(*wide))

    def forward_dense(self, v: Tensor) -> ForwardOutput:
        """The plain dense reference (materialises (B, m)); same maths as :meth:`forward`."""
        z, codes = dense_encode(v, self.enc, self.b_enc, self.b_dec, self.k)
        return ForwardOutput(dense_decode(z, self.W_dec) + self.b_dec, codes, None)

    def _check_input(self, v: Tensor) -> None:
        if v.ndim != 2 or v.shape[1] != self.d_in:
            raise UserError(f"SAE expects (batch, {self.d_in}) vectors, got shape {tuple(v.shape)}")

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale decoder rows to unit norm (Gao et al.)."""
        normalize_rows_(self.W_dec)

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        """Drop each decoder row's gradient component along the row, so the step keeps it unit-norm."""
        w = self.W_dec
        if w.grad is not None:
            remove_parallel_rows(w.grad, w)

    def release_grads(self) -> None:
        """``zero_grad(set_to_none=True)`` that keeps CPU gradient buffers for the next backward."""
        recycle_grads(self.parameters())

    # ----- folder I/O: the only writer (save) and reader (load) of SAE folders
    def folder_cfg(self, input_scale: float = 1.0) -> dict[str, Any]:
        """The ``cfg.json`` of this SAE: SAELens's keys, then ours (layer, model, tie, training summary...)."""
        return {
            "d_in": self.d_in,
            "d_sae": self.d_sae,
            "k": self.k,
            "architecture": "topk",
            "dtype": "float32",
            "device": "cpu",
            "apply_b_dec_to_input": True,
            "normalize_activations": "none",
            "tie": self.cfg.tie,
            "seed": self.cfg.seed,
            "input_scale": float(input_scale),
            "input_scale_folded": True,
            **{k: v for k, v in self.meta.items() if k not in ("d_in", "d_sae", "k", "input_scale")},
        }

    def save(self, path: str | Path, input_scale: float = 1.0) -> Path:
        """Write ``cfg.json`` + ``sae_weights.safetensors`` in raw activation units.

        Training sees ``s * x`` (``input_scale`` s). Since TopK commutes with a positive
        scale, z_raw = z / s with W_enc and W_dec unchanged, b_enc / s and b_dec / s.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        s = float(input_scale)
        tensors = {
            "W_enc": self.W_enc.detach().float().cpu().contiguous(),
            "W_dec": self.W_dec.detach().float().cpu().contiguous(),
            "b_enc": (self.b_enc.detach().float().cpu() / s).contiguous(),
            "b_dec": (self.b_dec.detach().float().cpu() / s).contiguous(),
        }
        atomic_save_safetensors(path / WEIGHTS_FILE, tensors)
        atomic_write_json(path / CFG_FILE, self.folder_cfg(s), indent=2)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> TopKSAE:
        """Read an SAE folder (ours, or one written by hand with just the four tensors + cfg keys)."""
        path = Path(path)
        cfg_path, w_path = path / CFG_FILE, path / WEIGHTS_FILE
        for p in (cfg_path, w_path):
            if not p.is_file():
                raise UserError(f"{path} is not an SAE folder: {p.name} is missing")
        try:
            cfg = json.loads(cfg_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
            raise UserError(f"cannot read SAE folder {path}: {cfg_path} is not valid JSON ({e})") from e
        if not isinstance(cfg, dict):
            raise UserError(f"cannot read SAE folder {path}: {cfg_path} holds no JSON object")
        try:
            tensors = load_file(str(w_path))
        except (SafetensorError, OSError) as e:
            raise UserError(
                f"cannot read SAE folder {path}: {w_path.name} is unreadable ({e}); retrain it (or rerun `run`)"
            ) from e
        d_in, d_sae = _check_tensors(tensors, path)
        for key, want in (("d_in", d_in), ("d_sae", d_sae)):
            if key in cfg and int(cfg[key]) != want:
                raise UserError(f"{cfg_path}: {key}={cfg[key]} but {WEIGHTS_FILE} has {want}")
        meta = {k_: v for k_, v in cfg.items() if k_ not in ("d_in", "d_sae", "k", "tie", "seed")}
        meta["input_scale"] = 1.0  # already folded into the weights on save
        tie = cfg.get("tie", "init") if cfg.get("tie") in TIES else "init"
        return cls.from_tensors(tensors, int(cfg.get("k", 32)), tie=tie, seed=int(cfg.get("seed", 0)), meta=meta,
                                device=device)  # fmt: skip

    @classmethod
    def from_tensors(
        cls,
        tensors: dict[str, Tensor],
        k: int,
        *,
        tie: str = "init",
        seed: int = 0,
        meta: dict | None = None,
        device: str | torch.device = "cpu",
    ) -> TopKSAE:
        """An SAE from the four tensors (raw units; docs/formats.md, "SAE folder"), e.g. own weights to :meth:`save`."""
        d_in, d_sae = tensors["W_enc"].shape
        if tie == "full" and not torch.equal(tensors["W_enc"].t(), tensors["W_dec"]):
            tie = "init"  # weights edited by hand: keep both matrices
        sae = cls(SAEConfig(int(d_in), int(d_sae), k, tie, seed), device="meta", meta=meta)
        sae.enc = nn.Parameter(tensors["W_enc"].float().t().contiguous().to(device))
        sae.dec = None if tie == "full" else nn.Parameter(tensors["W_dec"].float().contiguous().to(device))
        sae.b_enc = nn.Parameter(tensors["b_enc"].float().to(device))
        sae.b_dec = nn.Parameter(tensors["b_dec"].float().to(device))
        return sae

    def frozen(self, source: str | Path | None = None) -> SAETensors:
        """Detached float32 copies of the four tensors (on the SAE's device), with k, layer and cfg.json."""
        t = {n: getattr(self, n).detach().float().contiguous() for n in TENSORS}
        source = str(source) if source is not None else "tensors"
        return SAETensors(**t, k=self.k, layer=self.layer, cfg=self.folder_cfg(), source=source)

    @property
    def layer(self) -> str | None:
        """Layer the SAE was trained on (from cfg.json), if known."""
        return self.meta.get("layer")


def load_layer_sae(path: str | Path, device: str | torch.device = "cpu", *, needed_by: str = "this command") -> TopKSAE:
    """:meth:`TopKSAE.load` of a folder whose cfg.json names a layer with as many channels as the SAE's d_in.

    One-line errors for a folder that names no layer, an unknown layer, or a layer of
    another width, so a mismatched SAE and layer never reach the model.
    """
    from ..models.layers import layer_info

    sae = TopKSAE.load(path, device=device)
    if not sae.layer:
        raise UserError(f"{Path(path) / CFG_FILE} has no 'layer'; {needed_by} needs to know which layer the SAE reads")
    try:
        channels = layer_info(sae.layer).channels
    except KeyError as e:
        raise UserError(f"{Path(path) / CFG_FILE}: {e.args[0]}") from None
    if channels != sae.d_in:
        raise UserError(f"{path}: the SAE's d_in is {sae.d_in} but {sae.layer} has {channels} channels")
    return sae


def _check_tensors(t: dict[str, Tensor], path: Path) -> tuple[int, int]:
    """Validate the four tensors' presence, dtype and mutual shapes; return (d_in, d_sae)."""
    missing = [n for n in ("W_enc", "W_dec", "b_enc", "b_dec") if n not in t]
    if missing:
        raise UserError(f"{path / WEIGHTS_FILE} lacks {', '.join(missing)}")
    if t["W_enc"].ndim != 2:
        raise UserError(f"{path}: W_enc must be 2-D (d_in, d_sae), got {tuple(t['W_enc'].shape)}")
    d_in, d_sae = t["W_enc"].shape
    want = {"W_dec": (d_sae, d_in), "b_enc": (d_sae,), "b_dec": (d_in,)}
    for name, shape in want.items():
        if tuple(t[name].shape) != shape:
            raise UserError(f"{path}: {name} has shape {tuple(t[name].shape)}, expected {shape} from W_enc")
    for name, x in t.items():
        if not x.is_floating_point() or not bool(torch.isfinite(x).all()):
            raise UserError(f"{path}: {name} is not a finite floating-point tensor")
        t[name] = x.float()
    return int(d_in), int(d_sae)


#: The run length the literature's SAE learning rates were tuned at (Gao et al.; sparsify): about 1e9 vectors.
LR_TUNED_SAMPLES = 1e9
#: The short-run factor on that LR, and the run length up to which it holds (measured best or near-best
#: at 0.4-1.6M samples on every data family: docs/training.md).
LR_SHORT_RUN_MAX = 8.0
LR_SHORT_RUN_SAMPLES = 2e6


def lr_short_run_factor(samples: float) -> float:
    """The factor on the literature's LR for a run of ``samples`` vectors: x8 up to 2M, falling log-linearly in
    the run length to x1 at 1e9 (x1 beyond)."""
    n = min(max(samples, LR_SHORT_RUN_SAMPLES), LR_TUNED_SAMPLES)
    slope = math.log(LR_SHORT_RUN_MAX) / math.log(LR_TUNED_SAMPLES / LR_SHORT_RUN_SAMPLES)
    return (LR_TUNED_SAMPLES / n) ** slope


def default_lr(d_sae: int, samples: float = LR_TUNED_SAMPLES) -> float:
    """Adam LR for an SAE of ``d_sae`` latents trained on ``samples`` vectors.

    The literature's 2e-4 / sqrt(m / 2**14) (sparsify, dictionary_learning), tuned on runs of about
    1e9 vectors, times a short-run factor: x8 up to 2M samples, falling log-linearly in the run length
    to x1 at 1e9 (x1 beyond). A short run ends before its decoder rows have turned to their directions
    at the literature's LR; larger steps, annealed by the final decay, gave a lower held-out FVU at
    0.4-1.6M samples on every data family measured (docs/training.md). This is the LR a run ends at;
    with ``TrainConfig.anytime`` (the default) a longer run starts higher (``TrainConfig.length_at``).
    """
    return 2e-4 / math.sqrt(d_sae / 2**14) * lr_short_run_factor(samples)


def config_dict(cfg: SAEConfig) -> dict[str, Any]:
    """JSON-able config."""
    return asdict(cfg)
