"""The TopK sparse autoencoder (Gao et al. 2024; Bozoukov 2025 eqs. 1-2) and its on-disk folder.

``z = ReLU(TopK(W_enc (x - b_dec) + b_enc))``, ``x_hat = W_dec z + b_dec``. The same weights also
train as BatchTopK (Bussmann et al. 2024: the batch's k·B largest pre-activations, and at inference
a threshold kept as an average of the smallest kept value) and Matryoshka BatchTopK (Bussmann et al.
2025: BatchTopK codes, the loss averaged over nested prefixes of the latents): ``SAEConfig.architecture``.
Internally the encoder is stored one row per latent, ``enc`` (m, d), which
makes the sparse backward a row gather; the public ``W_enc`` view and the
saved file use the SAELens layout (d_in, d_sae).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple, get_args

import torch
from torch import Tensor, nn

from ..errors import UserError
from ..fsio import atomic_save_safetensors, atomic_write_json
from .architecture import Architecture, SAESettings, Tie
from .folder_io import CFG_FILE, OWN_KEYS, WEIGHTS_FILE, folder_architecture, read_folder
from .kernels import (
    Codes,
    _cpu_kernels_apply,
    dense_decode,
    dense_encode,
    normalize_rows_,
    recycle_grads,
    remove_parallel_rows,
    sparse_decode,
    sparse_encode,
    sparse_forward,
)
from .lr import LR_SHORT_RUN_MAX, LR_SHORT_RUN_SAMPLES, LR_TUNED_SAMPLES, default_lr, lr_short_run_factor  # noqa: F401 (re-exported)
from .selection import Rule, pooled_cut
from .view import TENSORS, SAETensors

TIES: tuple[str, ...] = get_args(Tie)
ARCHITECTURES: tuple[str, ...] = get_args(Architecture)


@dataclass(frozen=True)
class SAEConfig:
    """Shape and tying of one SAE."""

    d_in: int  #: input dimension (layer channels)
    d_sae: int  #: number of latents m
    k: int = 32  #: active latents per input
    tie: str = "init"  #: "init": encoder starts as decoder^T then trains freely (Gao); "full": decoder == encoder^T
    seed: int = 0  #: initialisation seed
    architecture: str = "topk"  #: "topk", "batchtopk" or "matryoshka" (docs/training.md, "Architectures")
    #: Matryoshka: the nested prefix sizes in latents, increasing, the last = d_sae (appended when missing);
    #: () = (d_sae/16, d_sae/4, d_sae). Empty for the other architectures.
    prefixes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.d_in < 1 or self.d_sae < 1:
            raise UserError(f"d_in and d_sae must be positive, got {self.d_in}, {self.d_sae}")
        if not 1 <= self.k <= self.d_sae:
            raise UserError(f"k must be in 1..{self.d_sae} (the latent count), got {self.k}")
        if self.tie not in TIES:
            raise UserError(f"tie must be one of {TIES}, got {self.tie!r}")
        if self.architecture not in ARCHITECTURES:
            raise UserError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}")
        object.__setattr__(self, "prefixes", self._prefixes())

    def _prefixes(self) -> tuple[int, ...]:
        m = self.d_sae
        if self.architecture != "matryoshka":
            return ()
        sizes = [int(p) for p in self.prefixes] or [max(1, m // 16), max(1, m // 4), m]
        if sizes[-1] != m:
            sizes.append(m)
        if any(not 1 <= p <= m for p in sizes) or any(a >= b for a, b in itertools.pairwise(sizes)):
            raise UserError(f"matryoshka prefixes must increase within 1..{m} (the latent count), got {sizes}")
        return tuple(dict.fromkeys(sizes))

    @property
    def uses_threshold(self) -> bool:
        """BatchTopK and Matryoshka: batch selection in training, a threshold at inference."""
        return self.architecture != "topk"

    @classmethod
    def from_expansion(cls, d_in: int, expansion: float = 16, latents: int | None = None, **kw: Any) -> SAEConfig:
        """Latent count from an explicit ``latents`` or ``expansion * d_in``; ``prefixes`` here are fractions of it
        (``SAESettings.prefixes``), turned into counts for Matryoshka and dropped for the other architectures."""
        m = int(latents) if latents else round(expansion * d_in)
        fractions = tuple(kw.pop("prefixes", ()) or ())
        if kw.get("architecture") == "matryoshka" and fractions:
            kw["prefixes"] = tuple(max(1, round(f * m)) for f in fractions)
        return cls(d_in=d_in, d_sae=m, **kw)

    @classmethod
    def from_spec(cls, spec: SAESettings, d_in: int) -> SAEConfig:
        """The SAE of ``spec`` for a layer of width ``d_in``: every field but ``expansion``/``latents`` passes through
        by name."""
        shape = {f.name: getattr(spec, f.name) for f in fields(spec) if f.name not in ("expansion", "latents")}
        return cls.from_expansion(d_in, spec.expansion, spec.latents, **shape)


class ForwardOutput(NamedTuple):
    """What one training forward pass returns."""

    x_hat: Tensor  #: (B, d) reconstruction
    codes: Codes  #: (B, k) values and indices
    multi_x_hat: Tensor | None  #: (B, d) reconstruction from 4k latents (MultiTopK), else None
    sq_err: Tensor | None = None  #: sum((x_hat - v)^2), differentiable, when the fused CPU path formed it
    #: Matryoshka: (G,) detached squared errors of each nested prefix's own reconstruction (sq_err is their mean)
    prefix_sq: Tensor | None = None
    #: BatchTopK/Matryoshka: the batch selection's report for the threshold update (``selection.Rule.report``)
    selection: dict | None = None


class TopKSAE(nn.Module):
    """TopK SAE. ``encode(v) -> (values, indices)``, ``decode(values, indices) -> v_hat``."""

    threshold: Tensor | None  #: (d_sae,) BatchTopK/Matryoshka inference thresholds (a buffer); None for TopK

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
        # BatchTopK/Matryoshka inference threshold per latent (SAELens's JumpReLU ``threshold``); < 0: not yet set
        thr = torch.full((cfg.d_sae,), -1.0, device=device) if cfg.uses_threshold else None
        self.register_buffer("threshold", thr)

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

    @property
    def architecture(self) -> str:
        return self.cfg.architecture

    # ----- compute
    def rule(self, training: bool = False, distributed: bool = False) -> int | Rule:
        """The selection: k (TopK); for BatchTopK/Matryoshka the batch's top k·B in training (or while the
        threshold is unset), else every pre-activation above the threshold."""
        if not self.cfg.uses_threshold:
            return self.k
        assert self.threshold is not None
        if training or bool(self.threshold.min() < 0):
            return Rule("batch", self.k, distributed=distributed, track=float(self.threshold.max()))
        return Rule("threshold", self.k, threshold=self.threshold.detach())

    def encode(self, v: Tensor, k: int | None = None, compute_dtype=None) -> Codes:
        """(B, d) -> Codes((B, w) values, (B, w) indices); sparse backward. TopK: w = k (or the given ``k``);
        BatchTopK/Matryoshka: the inference threshold (w = the most any row keeps; rows that keep fewer
        are padded with zero values)."""
        self._check_input(v)
        return sparse_encode(v, self.enc, self.b_enc, self.b_dec, k or self.rule(), compute_dtype)

    def decode(self, values: Tensor, indices: Tensor) -> Tensor:
        """(B, k) values and indices -> (B, d) reconstruction."""
        return sparse_decode(values, indices, self.W_dec) + self.b_dec

    def forward(
        self, v: Tensor, multi_topk: bool = False, compute_dtype=None, distributed: bool = False
    ) -> ForwardOutput:
        """Training forward pass on the sparse path. MultiTopK (Gao; TopK only) also decodes the top 4k.
        BatchTopK/Matryoshka select over the batch (every rank's rows when ``distributed``)."""
        self._check_input(v)
        if not multi_topk:
            rule, pre = self.rule(training=True, distributed=distributed), self.cfg.prefixes or None
            x_hat, codes, sq_err, parts = sparse_forward(
                v, self.enc, self.dec, self.b_enc, self.b_dec, rule, compute_dtype, pre
            )
            return ForwardOutput(x_hat, codes, None, sq_err, parts, rule.report if isinstance(rule, Rule) else None)
        if self.cfg.uses_threshold:
            raise UserError("multi_topk is a TopK loss; it does not apply to BatchTopK or Matryoshka")
        k4 = min(4 * self.k, self.d_sae)
        wide = sparse_encode(v, self.enc, self.b_enc, self.b_dec, k4, compute_dtype, sort=True)
        codes = Codes(wide.values[:, : self.k], wide.indices[:, : self.k])
        return ForwardOutput(self.decode(*codes), codes, self.decode(*wide))

    @torch.no_grad()
    def update_threshold(self, report: dict | None, rate: float) -> None:
        """Move the running threshold so that as many of a batch's values exceed it as the batch selection keeps.

        A stochastic quantile estimate: threshold x (1 + rate (above / kept - 1)), where ``above`` counts the
        batch's values over the threshold; the first batch's cut starts it. It is logged, checkpointed and hints
        :meth:`calibrate_threshold`, which sets the saved value at the end of training: a running estimate
        carries the noise of single batches and the drift of training (held-out L0 3-5% under k at batch 256 for
        this one and for the moving average of each batch's smallest kept value that SAELens and
        dictionary_learning keep; about 1% after calibration, measured).
        """
        if self.threshold is None or not report:
            return
        if bool(self.threshold.min() < 0):
            self.threshold.fill_(report["cut"])
            return
        ratio = report["above"] / max(report["kept"], 1.0)
        self.threshold.mul_(min(2.0, max(0.5, 1 + rate * (ratio - 1))))

    @torch.no_grad()
    def calibrate_threshold(self, x: Tensor) -> None:
        """Set the inference threshold to the value that k of the pre-activations of each row of ``x`` exceed on
        average (the pooled quantile of a large sample of the training data, at the end of training)."""
        if self.threshold is None:
            return
        cpu = _cpu_kernels_apply(x, self.enc, self.b_enc)
        hint = float(self.threshold.max())
        self.threshold.fill_(
            pooled_cut(x, self.enc.detach(), self.b_enc.detach(), self.b_dec.detach(), self.k, hint, cpu)
        )

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
            # SAELens's key: BatchTopK and Matryoshka are its JumpReLU at inference (a ``threshold`` tensor)
            "architecture": "jumprelu" if self.cfg.uses_threshold else "topk",
            "trained_architecture": self.architecture,
            "dtype": "float32",
            "device": "cpu",
            "apply_b_dec_to_input": True,
            "normalize_activations": "none",
            "tie": self.cfg.tie,
            "seed": self.cfg.seed,
            "input_scale": float(input_scale),
            "input_scale_folded": True,
            **self._threshold_cfg(input_scale),
            **{k: v for k, v in self.meta.items() if k not in (*OWN_KEYS, "input_scale")},
        }

    def _threshold_cfg(self, input_scale: float) -> dict[str, Any]:
        if self.threshold is None:
            return {}
        thr = self.threshold.detach().float().cpu() / float(input_scale)
        out: dict[str, Any] = {"threshold": float(thr.mean()) if bool((thr >= 0).all()) else None}
        if self.architecture == "matryoshka":
            out["matryoshka_prefixes"] = list(self.cfg.prefixes)
        return out

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
        if self.threshold is not None:  # pre-activations scale with the input, as b_enc does
            thr = self.threshold.detach().float().cpu()
            tensors["threshold"] = torch.where(thr >= 0, thr / s, thr).contiguous()
        atomic_save_safetensors(path / WEIGHTS_FILE, tensors)
        atomic_write_json(path / CFG_FILE, self.folder_cfg(s), indent=2)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> TopKSAE:
        """Read an SAE folder (ours, or one written by hand with just the four tensors + cfg keys)."""
        path = Path(path)
        cfg, tensors = read_folder(path)
        meta = {k_: v for k_, v in cfg.items() if k_ not in OWN_KEYS}
        meta["input_scale"] = 1.0  # already folded into the weights on save
        tie = cfg.get("tie", "init") if cfg.get("tie") in TIES else "init"
        arch = folder_architecture(cfg, "threshold" in tensors, path, ARCHITECTURES)
        prefixes = tuple(int(p) for p in cfg.get("matryoshka_prefixes") or ()) if arch == "matryoshka" else ()
        return cls.from_tensors(tensors, int(cfg.get("k", 32)), tie=tie, seed=int(cfg.get("seed", 0)), meta=meta,
                                device=device, architecture=arch, prefixes=prefixes)  # fmt: skip

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
        architecture: str = "topk",
        prefixes: tuple[int, ...] = (),
    ) -> TopKSAE:
        """An SAE from the four tensors (raw units; docs/formats.md, "SAE folder"), e.g. own weights to :meth:`save`;
        BatchTopK/Matryoshka also read ``threshold`` (d_sae,)."""
        d_in, d_sae = tensors["W_enc"].shape
        if tie == "full" and not torch.equal(tensors["W_enc"].t(), tensors["W_dec"]):
            tie = "init"  # weights edited by hand: keep both matrices
        cfg = SAEConfig(int(d_in), int(d_sae), k, tie, seed, architecture, prefixes)
        sae = cls(cfg, device="meta", meta=meta)
        if sae.threshold is not None:
            thr = tensors.get("threshold")
            sae.threshold = torch.full((cfg.d_sae,), -1.0) if thr is None else thr.float().reshape(-1).clone()
            sae.threshold = sae.threshold.to(device)
        sae.enc = nn.Parameter(tensors["W_enc"].float().t().contiguous().to(device))
        sae.dec = None if tie == "full" else nn.Parameter(tensors["W_dec"].float().contiguous().to(device))
        sae.b_enc = nn.Parameter(tensors["b_enc"].float().to(device))
        sae.b_dec = nn.Parameter(tensors["b_dec"].float().to(device))
        return sae

    def frozen(self, source: str | Path | None = None) -> SAETensors:
        """Detached float32 copies of the four tensors (on the SAE's device), with k, layer and cfg.json."""
        t = {n: getattr(self, n).detach().float().contiguous() for n in TENSORS}
        source = str(source) if source is not None else "tensors"
        thr = None
        if self.threshold is not None and bool((self.threshold >= 0).all()):
            thr = self.threshold.detach().float().contiguous()
        return SAETensors(**t, k=self.k, layer=self.layer, cfg=self.folder_cfg(), source=source, threshold=thr)

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


def config_dict(cfg: SAEConfig) -> dict[str, Any]:
    """JSON-able config."""
    return asdict(cfg)
