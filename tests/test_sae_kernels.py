"""The Numba CPU kernels against stock PyTorch and the dense reference (same values, same gradients)."""

import os
import platform
import sys

import pytest
import torch

from inception_sae import TopKSAE
from inception_sae.sae import kernels
from inception_sae.sae.cpu_memory import keep_freed_memory
from inception_sae.sae.metrics import squared_error, total_variance
from inception_sae.sae.model import SAEConfig


@pytest.fixture
def torch_backend():
    """Run a block of code on the stock-PyTorch path, restoring the backend afterwards."""
    before = kernels.get_backend()
    kernels.set_backend("torch")
    yield
    kernels.set_backend(before)


@pytest.mark.parametrize(("m", "k"), [(512, 8), (8448 // 8, 32), (100, 16), (37, 5)])
@pytest.mark.parametrize("sort", [False, True])
def test_topk_kernel_equals_torch_topk(m, k, sort):
    """Block-maximum path (m >= 32 k), the plain fallback (small m) and a ragged tail block."""
    g = torch.Generator().manual_seed(m + k)
    pre = torch.randn(64, m, generator=g) * torch.rand(1, m, generator=g)  # columns of different scales
    bias = torch.randn(m, generator=g) * 0.5
    vals, idx = kernels._topk_biased(pre, bias, k, sort)
    ref, _ = (pre + bias).topk(k, dim=1, sorted=True)
    assert idx.dtype == torch.int64 and ((idx >= 0) & (idx < m)).all()
    torch.testing.assert_close(torch.gather(pre + bias, 1, idx), vals, rtol=0, atol=1e-6)
    torch.testing.assert_close(vals.sort(1, descending=True).values, ref, rtol=0, atol=1e-6)
    if sort:
        assert (vals[:, :-1] >= vals[:, 1:]).all()
    assert (idx.sort(1).values.diff(dim=1) > 0).all(), "an index was selected twice"


@pytest.mark.parametrize("case", ["one_block", "ties", "constant"])
def test_topk_kernel_hard_rows(case):
    """Top values crowded into one block (they are no block's maximum but one), heavy ties,
    and constant rows: the kernel's values must still be torch.topk's, with distinct indices."""
    B, m, k = 16, 2048, 32
    S = m // kernels._cpu.BLOCK
    g = torch.Generator().manual_seed(1)
    pre = torch.randn(B, m, generator=g)
    if case == "one_block":  # all of one strided block (columns c, c+S, ...) beats the rest of the row
        for b in range(B):
            pre[b, b % S :: S] += 10 + torch.arange(m // S) * 0.01
    elif case == "ties":
        pre = (pre * 2).round()  # ~10 distinct values per row
    else:
        pre = torch.full((B, m), 0.5)
    vals, idx = kernels._topk_biased(pre, torch.zeros(m), k, False)
    torch.testing.assert_close(vals.sort(1).values, pre.topk(k, 1).values.sort(1).values, rtol=0, atol=0)
    torch.testing.assert_close(torch.gather(pre, 1, idx), vals, rtol=0, atol=0)
    assert (idx.sort(1).values.diff(dim=1) > 0).all(), "an index was selected twice"


@pytest.mark.parametrize("sort", [False, True])
def test_topk_kernel_reads_bfloat16_rows(sort):
    """bf16 pre-activations (the bf16 GEMM's output) plus a float32 bias: same as widening first."""
    g = torch.Generator().manual_seed(5)
    pre = torch.randn(64, 2048 + 7, generator=g).bfloat16()  # ragged tail too
    bias = torch.randn(pre.shape[1], generator=g) * 0.3
    vals, idx = kernels._topk_biased(pre, bias, 16, sort)
    ref = (pre.float() + bias).topk(16, dim=1, sorted=True).values
    assert vals.dtype == torch.float32
    torch.testing.assert_close(torch.gather(pre.float() + bias, 1, idx), vals, rtol=0, atol=0)
    torch.testing.assert_close(vals.sort(1, descending=True).values, ref, rtol=0, atol=0)


def test_topk_kernel_rows_with_nan_and_inf_fall_back_to_torch():
    pre = torch.randn(6, 1024)
    pre[1, 7] = float("nan")
    pre[3] = float("inf")
    pre[4, :] = float("nan")
    vals, idx = kernels._topk_biased(pre, torch.zeros(1024), 16, False)
    for r in range(6):
        v, i = pre[r].topk(16)
        assert set(idx[r].tolist()) == set(i.tolist()) or r == 3  # all-inf row: any 16 of them
        torch.testing.assert_close(vals[r].sort().values, v.sort().values, equal_nan=True)


def _sae(tie, d=24, m=640, k=8, seed=0):
    torch.manual_seed(seed)
    sae = TopKSAE(SAEConfig(d, m, k, tie, seed=seed))
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.b_enc.normal_(0, 0.3)
        if sae.dec is not None:
            sae.dec.add_(0.1 * torch.randn_like(sae.dec))
    return sae


def _grads(sae, x, mode):
    sae.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    out = sae.forward_dense(x) if mode == "dense" else sae(x)
    # an extra term on the kept values checks the values' own gradient path
    loss = (out.x_hat - x.detach()).pow(2).sum() + 0.1 * out.codes.values.pow(2).sum()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in sae.named_parameters()}
    grads["x"] = x.grad.clone()
    return loss.detach(), grads, out.codes


@pytest.mark.parametrize("tie", ["init", "full"])
def test_fused_cpu_path_matches_torch_path_and_dense_reference(tie, torch_backend):
    sae = _sae(tie)
    x = torch.randn(200, 24) * 2
    ld, gd, _ = _grads(sae, x, "dense")
    lt, gt, ct = _grads(sae, x, "sparse")  # torch backend (fixture)
    kernels.set_backend("auto")
    lf, gf, cf = _grads(sae, x, "sparse")
    assert set(cf.indices.sort(1).values.flatten().tolist()) == set(ct.indices.sort(1).values.flatten().tolist())
    for ref in (ld, lt):
        torch.testing.assert_close(lf, ref, rtol=1e-5, atol=1e-4)
    for name in gd:
        torch.testing.assert_close(gf[name], gd[name], rtol=1e-4, atol=1e-4, msg=f"{name} vs dense")
        torch.testing.assert_close(gf[name], gt[name], rtol=1e-4, atol=1e-4, msg=f"{name} vs torch ops")


@pytest.mark.parametrize("tie", ["init", "full"])
@pytest.mark.parametrize("extra_xhat_term", [False, True])
def test_fused_squared_error_matches_dense_reference(tie, extra_xhat_term):
    """The loss on the fused path's own sq_err (the trainer's case), alone and together with
    another term on x_hat (both backward branches), against plain autograd on the dense path."""
    sae = _sae(tie)
    x = torch.randn(200, 24) * 2
    w = torch.randn(24)
    results = []
    for mode in ("dense", "fused"):
        sae.zero_grad(set_to_none=True)
        xg = x.clone().requires_grad_()
        out = sae.forward_dense(xg) if mode == "dense" else sae(xg)
        sq = (out.x_hat - xg).pow(2).sum() if mode == "dense" else out.sq_err
        if mode == "fused":
            torch.testing.assert_close(sq, (out.x_hat - x).pow(2).sum(), rtol=1e-5, atol=1e-4)
        loss = sq + 0.1 * out.codes.values.pow(2).sum()
        if extra_xhat_term:
            loss = loss + (out.x_hat * w).sum().pow(2) * 1e-3
        loss.backward()
        results.append({**{n: p.grad.clone() for n, p in sae.named_parameters()}, "x": xg.grad.clone()})
    for name, ref in results[0].items():
        torch.testing.assert_close(results[1][name], ref, rtol=1e-4, atol=1e-4, msg=name)


def test_fused_path_bf16_gemm_stays_close_to_fp32():
    sae = _sae("init")
    x = torch.randn(128, 24)
    out32, out16 = sae(x), sae(x, compute_dtype=torch.bfloat16)
    assert out16.x_hat.dtype == torch.float32
    agree = (out16.codes.indices.sort(1).values == out32.codes.indices.sort(1).values).float().mean()
    assert agree > 0.8  # bf16 pre-activations may swap near-ties at the k-th place
    assert (out16.x_hat - out32.x_hat).pow(2).mean() < 0.05 * out32.x_hat.var()


@pytest.mark.parametrize("tie", ["init", "full"])
def test_fused_path_bf16_gradients_stay_close_to_fp32(tie):
    """bf16 mode runs the weight-gradient products on bf16 batch rows (autocast's rule), accumulating
    in float32: on rows whose codes agree with fp32's, every gradient is within bf16 rounding of fp32's."""
    sae = _sae(tie, d=64, m=1024, k=8)
    x = torch.randn(256, 64) * 2
    with torch.no_grad():
        i32, i16 = (sae(x, compute_dtype=dt).codes.indices.sort(1).values for dt in (None, torch.bfloat16))
    same = (i32 == i16).all(1)
    assert same.float().mean() > 0.5
    x = x[same]  # rows are independent: on these, only the rounding differs
    grads = []
    for dtype in (None, torch.bfloat16):
        sae.zero_grad(set_to_none=True)
        sae(x, compute_dtype=dtype).sq_err.backward()
        grads.append({n: p.grad.clone() for n, p in sae.named_parameters()})
    for name, ref in grads[0].items():
        err = float((grads[1][name] - ref).norm() / ref.norm())
        assert 0 < err < 0.02, f"{name}: relative error {err:.4f}"


def test_decode_residual_rounds_bf16_like_torch():
    g = torch.Generator().manual_seed(2)
    B, d, m, k = 50, 40, 300, 6
    W, x, b_dec = torch.randn(m, d, generator=g), torch.randn(B, d, generator=g), torch.randn(d, generator=g)
    idx = torch.randint(0, m, (B, k), generator=g)
    vals = torch.rand(B, k, generator=g)
    x_hat, r, rsum = torch.empty(B, d), torch.empty(B, d), torch.empty(d, dtype=torch.float64)
    r16 = torch.empty(B, d, dtype=torch.bfloat16)
    sq = kernels._cpu.decode_residual(
        idx.numpy(), vals.numpy(), W.numpy(), b_dec.numpy(), x.numpy(), x_hat.numpy(), r.numpy(), kernels._bits(r16),
        rsum.numpy(), 2,
    )  # fmt: skip
    ref = torch.nn.functional.embedding_bag(idx, W, per_sample_weights=vals, mode="sum") + b_dec
    torch.testing.assert_close(x_hat, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(r, ref - x, rtol=1e-5, atol=1e-5)
    assert torch.equal(r16, r.bfloat16())
    torch.testing.assert_close(rsum, r.double().sum(0), rtol=1e-5, atol=1e-4)
    assert sq == pytest.approx(float(r.double().pow(2).sum()), rel=1e-5)


def test_recycled_gradient_buffers_are_reused_and_overwritten():
    sae = _sae("init")
    x = torch.randn(64, 24)
    _, first, _ = _grads(sae, x, "sparse")
    sae(x).x_hat.pow(2).sum().backward()  # different loss: buffers now hold other numbers
    ptr = sae.enc.grad.data_ptr()
    sae.release_grads()
    assert sae.enc.grad is None
    sae.zero_grad(set_to_none=True)
    x2 = x.clone().requires_grad_()
    out = sae(x2)
    ((out.x_hat - x).pow(2).sum() + 0.1 * out.codes.values.pow(2).sum()).backward()
    assert sae.enc.grad.data_ptr() == ptr or sae.dec.grad.data_ptr() == ptr, "a recycled buffer was not reused"
    for name, p in sae.named_parameters():  # written afresh, nothing left over from the previous backward
        torch.testing.assert_close(p.grad, first[name], rtol=1e-5, atol=1e-5, msg=name)


def test_remove_parallel_rows_kernel_equals_formula(torch_backend):
    w = torch.nn.functional.normalize(torch.randn(300, 40), dim=1)
    g = torch.randn(300, 40)
    ref = g.clone()
    kernels.remove_parallel_rows(ref, w)  # torch backend
    kernels.set_backend("auto")
    out = g.clone()
    kernels.remove_parallel_rows(out, w)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    assert (out * w).sum(1).abs().max() < 1e-5


def test_backend_switch_rejects_unknown_names():
    with pytest.raises(ValueError, match="backend"):
        kernels.set_backend("cuda-magic")


def test_encoding_from_several_threads_gives_each_its_own_answer():
    """The reused (B, m) workspace is per thread (the site's live server encodes concurrently)."""
    from concurrent.futures import ThreadPoolExecutor

    sae = _sae("init")
    xs = [torch.randn(50, 24, generator=torch.Generator().manual_seed(s)) for s in range(8)]
    with torch.no_grad():
        want = [sae.encode(x) for x in xs]
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda x: sae.encode(x), xs * 4))
    for i, (v, ix) in enumerate(got):
        assert torch.equal(ix.sort(1).values, want[i % 8].indices.sort(1).values)
        torch.testing.assert_close(v.sort(1).values, want[i % 8].values.sort(1).values)


def test_batch_moments_kernel_equals_float64_reference():
    """The FVU denominator's sums: one float32 pass with float64 accumulators, as exact as a float64 copy."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1000, 37, generator=g) * 0.01 + 300.0  # large mean: the variance is a small difference
    same, s, sq = kernels.batch_moments(x)
    assert same.data_ptr() == x.data_ptr()  # scale 1: the batch itself, no copy
    x64 = x.double()
    torch.testing.assert_close(s, x64.sum(0), rtol=1e-12, atol=0)
    torch.testing.assert_close(sq, (x64 * x64).sum(), rtol=1e-12, atol=0)
    ref = ((x64 - x64.mean(0)) ** 2).sum().float()
    torch.testing.assert_close(total_variance(x), ref, rtol=1e-3, atol=0)


def test_batch_moments_scales_in_the_same_pass_and_flags_nonfinite():
    x = torch.randn(300, 20) + 3
    xs, s, sq = kernels.batch_moments(x, 0.5)
    torch.testing.assert_close(xs, x * 0.5, rtol=0, atol=0)
    torch.testing.assert_close(s, (x * 0.5).double().sum(0), rtol=1e-12, atol=0)
    torch.testing.assert_close(sq, (x * 0.5).double().pow(2).sum(), rtol=1e-12, atol=0)
    x[7, 3] = float("nan")
    assert not torch.isfinite(kernels.batch_moments(x, 0.5)[2])
    x[7, 3] = float("inf")
    assert not torch.isfinite(kernels.batch_moments(x)[2])


def test_normalize_rows_kernel_equals_formula(torch_backend):
    w = torch.randn(300, 40) * torch.rand(300, 1) * 5
    w[4] = 0  # a zero row stays zero (norm clamped), as in torch's formula
    ref = w.clone()
    kernels.normalize_rows_(ref)  # torch backend (fixture)
    kernels.set_backend("auto")
    kernels.normalize_rows_(w)
    torch.testing.assert_close(w, ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(w.norm(dim=1)[torch.arange(300) != 4], torch.ones(299), rtol=1e-6, atol=1e-6)
    assert (w[4] == 0).all()


def test_squared_error_function_gradients():
    a = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(squared_error, (a, b))
    torch.testing.assert_close(squared_error(a, b), (a - b).pow(2).sum())


def test_keep_freed_memory_is_idempotent():
    first = keep_freed_memory()
    assert keep_freed_memory() == first
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    if glibc and "INCEPTION_SAE_MALLOC" not in os.environ:
        assert first, "mallopt should apply under glibc"


def test_numba_kernels_keep_torchs_thread_count():
    """Numba's threading layer starts on the first kernel and resets OpenMP's thread count, which torch reads:
    a fresh process that asked torch for one thread keeps one thread after a kernel ran."""
    import subprocess

    code = (
        "import torch; torch.set_num_threads(1)\n"
        "from inception_sae.sae.kernels import batch_moments\n"
        "batch_moments(torch.randn(64, 8))\n"
        "print(torch.get_num_threads())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.split()[-1] == "1", out.stdout + out.stderr
