"""Compare two SAEs (same layer or two layers): decoder cosine and activation correlation matches."""

from .match import CorrelationAccumulator, best_matches, decoder_cosine, one_to_one
from .report import CompareResult
from .run import CompareConfig

__all__ = [
    "CompareConfig",
    "CompareResult",
    "CorrelationAccumulator",
    "best_matches",
    "decoder_cosine",
    "one_to_one",
]
