"""Numba building blocks for the CPU kernels: LLVM intrinsics and small helpers.

* :func:`prefetch` / :func:`prefetch_row`: cache-line prefetch hints (``llvm.prefetch``).
* :func:`at`: an element of a float32 row, or of a row of bfloat16 bit patterns (uint16),
  as float32; :func:`f32_to_bf16_bits` rounds the other way.
* :func:`sum_parts`: combine per-thread partial sums.
* :func:`set_threads`: Numba's thread count, matched to torch's.
"""

from __future__ import annotations

import numba
import torch
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

LINE = 16  #: float32 values per 64-byte cache line


@intrinsic
def prefetch(typingctx, arr, i):
    """Ask the CPU to start loading the cache line of ``arr[i]`` (1-D array): no effect on results.

    Decoding gathers k decoder rows per sample from an array that lives in L3; fetching the
    next rows while the current one is being summed hides the latency, as FBGEMM's
    embedding-bag kernels do (~1 ms of ~5 at B=4096, k=32). The backward's batch-row reads
    gained nothing from it (measured, 1-4 entries ahead, 4-33 lines each).
    """

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        i8p = builder.bitcast(ptr, ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        builder.call(fn, [i8p, i32(0), i32(3), i32(1)])  # read, keep in all cache levels, data
        return context.get_dummy_value()

    return types.void(arr, i), codegen


@njit
def prefetch_row(flat, start, d):  # pragma: no cover - compiled
    """Prefetch ``flat[start : start + d]``, one request per cache line."""
    for t in range(0, d, LINE):
        prefetch(flat, start + t)


@intrinsic
def bf16_bits_to_f32(typingctx, bits):
    """The float32 whose top half is the bfloat16 bit pattern ``bits`` (uint16): exact widening."""

    def codegen(context, builder, signature, args):
        wide = builder.shl(builder.zext(args[0], ir.IntType(32)), ir.Constant(ir.IntType(32), 16))
        return builder.bitcast(wide, ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def f32_to_bf16_bits(typingctx, v):
    """float32 -> bfloat16 bit pattern (uint16), rounding to nearest even (as ``Tensor.bfloat16()``)."""

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        bits = builder.bitcast(args[0], i32)
        odd = builder.and_(builder.lshr(bits, i32(16)), i32(1))
        rounded = builder.add(bits, builder.add(i32(0x7FFF), odd))
        return builder.trunc(builder.lshr(rounded, i32(16)), ir.IntType(16))

    return types.uint16(v), codegen


def at(row, j):  # pragma: no cover - replaced by the overload below
    """row[j] as float32, for a float32 row or a row of bfloat16 bit patterns (uint16)."""


@overload(at, inline="always")
def _at_impl(row, j):  # pragma: no cover - compiled
    if row.dtype == types.float32:
        return lambda row, j: row[j]
    if row.dtype == types.uint16:
        return lambda row, j: bf16_bits_to_f32(row[j])
    return None


@njit
def sum_parts(part, out):  # pragma: no cover - compiled
    """out[:] = the column sums of part[:, :-1] (one row per thread); returns the sum of part[:, -1]."""
    nth, w = part.shape
    last = 0.0
    for t in range(w - 1):
        s = 0.0
        for th in range(nth):
            s += part[th, t]
        out[t] = s
    for th in range(nth):
        last += part[th, w - 1]
    return last


def set_threads(n: int) -> int:
    """Use ``n`` Numba threads (clamped to what Numba started with); returns the count used.

    Starting Numba's OpenMP threading layer (the first call) resets the process's OpenMP thread count,
    which torch reads as its own: a ``torch.set_num_threads(1)`` made before would silently become every
    core. Torch's count is put back.
    """
    # numba.config sets its options from the environment at import; mypy does not see them
    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    torch_threads = torch.get_num_threads()
    numba.set_num_threads(n)
    if torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)
    return n
