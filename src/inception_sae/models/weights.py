"""Find, download, verify and load the public ``inception5h.pth`` weights.

Resolution order for ``load_model(weights=None)``: the file in the user cache
(``$INCEPTION_SAE_CACHE`` or the platform cache dir), else a download from the
canonical URL with a progress bar, written atomically and checked (it must load
as a state_dict with all 116 keys and shapes). Its size and sha256 are recorded
next to it on first success and checked on every later load.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

from ..download import fetch, verify_recorded
from ..errors import UserError
from .inception_v1 import InceptionV1
from .layers import BLOCK_SPECS

WEIGHTS_FILENAME = "inception5h.pth"
WEIGHTS_URL = "https://github.com/ProGamerGov/pytorch-old-tensorflow-models/raw/master/inception5h.pth"
CACHE_ENV = "INCEPTION_SAE_CACHE"
URL_ENV = "INCEPTION_SAE_WEIGHTS_URL"
NUM_KEYS, NUM_PARAMS = 116, 7_066_380
_BLOCK_CONVS = ("1x1", "3x3_bottleneck", "3x3", "5x5_bottleneck", "5x5", "pool_reduce")


class WeightsError(UserError):
    """The weights could not be found, downloaded or matched to the model."""


def cache_dir() -> Path:
    """Where weights and labels are cached: ``$INCEPTION_SAE_CACHE`` or the platform cache."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("inception-sae"))


# -- key mapping between the public file and the module tree -------------------
def _key_pairs() -> list[tuple[str, str]]:
    """(public module name, internal module path) for all 58 weighted modules."""
    pairs = [(f"conv2d{i}_pre_relu_conv", f"conv2d{i}.conv") for i in range(3)]
    for block in BLOCK_SPECS:
        pairs += [(f"{block}_{c}_pre_relu_conv", f"{block}.conv_{c}.conv") for c in _BLOCK_CONVS]
    pairs.append(("softmax2_pre_activation_matmul", "fc"))
    return pairs


PUBLIC_TO_INTERNAL = {f"{p}.{t}": f"{i}.{t}" for p, i in _key_pairs() for t in ("weight", "bias")}
INTERNAL_TO_PUBLIC = {v: k for k, v in PUBLIC_TO_INTERNAL.items()}


def public_state_dict(model: InceptionV1) -> dict[str, Tensor]:
    """The model's state_dict under the public ``inception5h.pth`` key names."""
    return {INTERNAL_TO_PUBLIC[k]: v for k, v in model.state_dict().items()}


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Public key -> shape, as in the published file (116 entries)."""
    return dict(_expected_shapes())


@lru_cache(maxsize=1)
def _expected_shapes() -> tuple[tuple[str, tuple[int, ...]], ...]:
    with torch.device("meta"):
        model = InceptionV1()
    return tuple((k, tuple(v.shape)) for k, v in public_state_dict(model).items())


def check_state_dict(sd: Mapping[str, Tensor]) -> None:
    """Raise :class:`WeightsError` listing missing, unexpected and mis-shaped keys."""
    want = expected_shapes()
    missing = sorted(set(want) - set(sd))
    unexpected = sorted(set(sd) - set(want))
    misshaped = [f"{k} {tuple(sd[k].shape)} != {want[k]}" for k in want if k in sd and tuple(sd[k].shape) != want[k]]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if items:
            shown = ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise WeightsError("weights do not match inception5h: " + "; ".join(problems))


def state_dict_digest(sd: Mapping[str, Tensor]) -> str:
    """sha256 over the tensors' names and bytes, for in-memory state_dicts."""
    h = hashlib.sha256()
    for k in sorted(sd):
        h.update(k.encode())
        h.update(sd[k].detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()


# -- random weights -----------------------------------------------------------
def random_state_dict(seed: int = 0) -> dict[str, Tensor]:
    """Seeded random weights with the public keys and shapes.

    He-normal conv weights and small biases keep activations in a realistic
    range through all 57 layers, so captures and SAEs have something to learn.
    """
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in expected_shapes().items():
        if key.endswith(".weight"):
            fan_in = int(torch.tensor(shape[1:]).prod())
            sd[key] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
        else:
            sd[key] = torch.randn(shape, generator=gen) * 0.01
    # The input range is [-117, 138]: scale the first conv so conv2d0 stays O(1).
    sd["conv2d0_pre_relu_conv.weight"] /= 128.0
    return sd


# -- download ---------------------------------------------------------------------
def download(url: str, dest: Path, *, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically; it must be the inception5h state_dict; record sha256.

    An interrupted transfer (fewer bytes than Content-Length) or a file that
    is not the inception5h state_dict leaves nothing at ``dest``.
    """

    def check(tmp: Path) -> None:
        try:
            sd = torch.load(tmp, map_location="cpu", weights_only=True)
        except Exception as e:  # any unreadable payload is the same error
            raise WeightsError(f"downloaded file from {url} is not a PyTorch state_dict ({type(e).__name__})") from e
        check_state_dict(sd)

    remedy = f"Offline? Download it elsewhere and pass --weights PATH, or put it at {dest}."
    return fetch(url, dest, check=check, remedy=remedy, error=WeightsError, progress=progress, timeout=timeout)


def verify_cached(path: Path) -> str:
    """Check a cached file against the size/sha256 recorded at download; return sha256."""
    return verify_recorded(path, WeightsError)


def resolve_weights(*, download_missing: bool = True, progress: bool = True) -> Path:
    """The cached weights file, downloading it if needed (or a one-line error)."""
    path = cache_dir() / WEIGHTS_FILENAME
    if path.exists():
        return path
    if not download_missing:
        raise WeightsError(f"no weights at {path}; pass --weights PATH or --weights random")
    return download(os.environ.get(URL_ENV, WEIGHTS_URL), path, progress=progress)


def load_state_dict_file(path: str | Path) -> tuple[dict[str, Tensor], str]:
    """Load a weights file; return the state_dict and its identity string."""
    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsError(f"weights file {path} does not exist")
    if not path.is_file():
        raise WeightsError(f"--weights {path} is a folder; give the inception5h.pth file inside it")
    digest = verify_cached(path)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch's own text is several lines of advice that does not apply here
        raise WeightsError(
            f"{path} is not a readable PyTorch state_dict ({type(e).__name__}: corrupt, truncated or another format); "
            "download inception5h.pth again or pass --weights random"
        ) from e
    if not isinstance(sd, Mapping):
        raise WeightsError(f"{path} holds a {type(sd).__name__}, not a state_dict")
    return dict(sd), f"{path.name}:sha256:{digest}"


def load_model(
    weights: str | Path | Mapping[str, Tensor] | None = None,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> InceptionV1:
    """An :class:`InceptionV1` in eval mode with the requested weights.

    ``weights``: a path to ``inception5h.pth``; a state_dict (public keys);
    ``"random"`` (seeded with ``seed``; identity ``random:<seed>``); or ``None``
    for the cached file, downloaded on first use.
    """
    if isinstance(weights, Mapping):
        sd, identity = dict(weights), f"state_dict:sha256:{state_dict_digest(weights)}"
    elif isinstance(weights, str) and (weights == "random" or weights.startswith("random:")):
        seed = int(weights.split(":", 1)[1]) if ":" in weights else seed
        sd, identity = random_state_dict(seed), f"random:{seed}"
    else:
        path = Path(weights) if weights is not None else resolve_weights(progress=progress)
        sd, identity = load_state_dict_file(path)
    check_state_dict(sd)
    model = InceptionV1()
    model.load_state_dict({PUBLIC_TO_INTERNAL[k]: v for k, v in sd.items()})
    model.identity = identity
    return model.to(device).eval().requires_grad_(False)


def parse_identity_seed(identity: str) -> int | None:
    """The seed of a ``random:<seed>`` identity, else None."""
    m = re.fullmatch(r"random:(\d+)", identity)
    return int(m.group(1)) if m else None
