"""Trainer behaviour on synthetic data with known answers: planted dictionary recovery, AuxK revival."""

import copy
import itertools
import json

import pytest
import torch
from factories.sae import planted, recovery

from inception_sae.data.source import ArraySource
from inception_sae.sae.kernels import sparse_decode, sparse_encode
from inception_sae.sae.metrics import normalized_mse, total_variance
from inception_sae.sae.model import SAEConfig, TopKSAE
from inception_sae.sae.train import TrainConfig, Trainer, train


@pytest.mark.slow
def test_recovers_planted_dictionary(tmp_path):
    """d=64, 512 unit directions, 4 active (Exp(1) coefficients), noise 0.01: >= 90% found at cos >= 0.9."""
    X, D = planted(60_000)
    cfg = TrainConfig(samples=60_000, batch_size=256, lr=2e-3, warmup_steps=20, progress=False)
    res = train(ArraySource(X.numpy(), 256, seed=0), [SAEConfig(64, 768, 4, "init")], cfg, tmp_path)
    sae = TopKSAE.load(tmp_path)
    share, mean_cos = recovery(D, sae.W_dec)
    print(f"planted recovery {share:.3f}, mean max cosine {mean_cos:.3f}, summary {res.summaries}")
    assert share >= 0.9 and mean_cos > 0.9
    assert (tmp_path / "train_log.jsonl").stat().st_size > 0


def _revival_run(aux_coef: float, **kw) -> int:
    """Half the latents start orthogonal to the data (so they can never fire on their own); how many revive?"""
    X, _ = planted(20_000, d=16, features=128)
    X = torch.cat([X, 0.01 * torch.randn(20_000, 16, generator=torch.Generator().manual_seed(1))], 1)
    cfg = TrainConfig(samples=30_000, batch_size=256, lr=2e-3, warmup_steps=10, progress=False, aux_coef=aux_coef,
                      dead_window=1024, **kw)  # fmt: skip
    t = Trainer(ArraySource(X.numpy(), 256, seed=0), [SAEConfig(32, 128, 4, "full")], cfg, "unused")
    t.initialise()
    sae = t.runs[0].sae
    with torch.no_grad():
        sae.enc[:64, :16] = 0  # tie="full": this is the decoder too
        sae.normalize_decoder()
    while t.step < t.total_steps:
        t.step_all()
    return int((t.runs[0].since_fired[:64] < cfg.window).sum())


@pytest.mark.slow
def test_auxk_revives_dead_latents():
    without, with_aux = _revival_run(0.0, resample_every=0), _revival_run(1 / 32, resample_every=0)
    print(f"latents revived out of 64: without AuxK {without}, with AuxK {with_aux}")
    assert with_aux >= without + 8


@pytest.mark.slow
def test_resampling_revives_what_auxk_alone_does_not():
    aux_only = _revival_run(1 / 32, resample_every=0)
    resampled = _revival_run(1 / 32, resample_every=8, resample_from=0.2, resample_until=0.8)
    print(f"latents revived out of 64: AuxK alone {aux_only}, with resampling {resampled}")
    assert resampled >= max(aux_only + 8, 60)


def test_sweep_shares_one_pass_and_logs(tmp_path):
    X = torch.randn(2048, 8).relu()
    cfg = TrainConfig(samples=1024, batch_size=128, progress=False, log_every=2, multi_topk=True)
    saes = [SAEConfig(8, 32, 2, "init"), SAEConfig(8, 32, 4, "init"), SAEConfig(8, 32, 4, "full", seed=1)]
    res = train(ArraySource(X.numpy(), 128, seed=0), saes, cfg, tmp_path)
    assert len(res.paths) == 3 and res.steps == 8 and not res.interrupted
    for p in res.paths:
        sae = TopKSAE.load(p)
        assert sae.meta["training"]["samples_seen"] == 1024
    steps = [r for r in map(json.loads, (tmp_path / "train_log.jsonl").read_text().splitlines()) if "step" in r]
    names = {p.name for p in res.paths}
    assert [r["step"] for r in steps] == [2, 4, 6, 8] and all(set(r["saes"]) == names for r in steps)  # one pass
    assert (tmp_path / "checkpoint" / "state.json").is_file()
    # a re-run on a finished folder resumes at the end and only rewrites the SAEs: no step, the same weights
    checkpoint = {p.name: p.read_bytes() for p in (tmp_path / "checkpoint").iterdir()}
    log = (tmp_path / "train_log.jsonl").read_bytes()
    weights = {p: (p / "sae_weights.safetensors").read_bytes() for p in res.paths}
    inodes = {p: (p / "sae_weights.safetensors").stat().st_ino for p in res.paths}
    again = train(ArraySource(X.numpy(), 128, seed=0), saes, cfg, tmp_path)
    assert again.steps == 8 and not again.interrupted
    assert (tmp_path / "train_log.jsonl").read_bytes() == log  # no step ran (each would log)
    assert {p.name: p.read_bytes() for p in (tmp_path / "checkpoint").iterdir()} == checkpoint
    for p in res.paths:
        assert (p / "sae_weights.safetensors").read_bytes() == weights[p]
        assert (p / "sae_weights.safetensors").stat().st_ino != inodes[p]  # written again (atomically: a new file)


def test_bf16_training_learns_as_float32_does(tmp_path):
    """On a planted dictionary (16 dims, 32 directions, 2 active) bf16 training reaches float32's FVU."""
    X, _ = planted(4096, d=16, features=32, active=2)
    fvu = {}
    for dtype in ("float32", "bfloat16"):
        cfg = TrainConfig(samples=4096, batch_size=128, progress=False, dtype=dtype)
        res = train(ArraySource(X.numpy(), 128, seed=0), [SAEConfig(16, 64, 2)], cfg, tmp_path / dtype)
        assert res.summaries["k2_m64_init_s0"]["dtype"] == dtype
        fvu[dtype] = res.summaries["k2_m64_init_s0"]["final_fvu"]
    assert fvu["float32"] < 0.35, fvu  # it learned: training that cannot use the data stays near FVU 1
    assert abs(fvu["bfloat16"] - fvu["float32"]) < 0.05, fvu


@pytest.mark.parametrize("tie", ["init", "full"])
def test_auxk_dead_row_gradients_equal_autograd_through_the_full_weights(tie):
    """AuxK runs on copies of the dead rows and adds their gradients afterwards: the same gradients
    as the plain formulation, (loss + aux_coef * aux).backward() through the whole weight matrices."""
    torch.manual_seed(0)
    X = torch.randn(512, 12).relu()
    cfg = TrainConfig(samples=512, batch_size=128, progress=False, dead_window=128, aux_coef=0.5, k_aux=6)
    t = Trainer(ArraySource(X.numpy(), 128, seed=0), [SAEConfig(12, 64, 3, tie)], cfg, "unused")
    t.initialise()
    run, sae = t.runs[0], t.runs[0].sae
    run.since_fired[::5] = 10**6  # 13 dead latents, more than k_aux
    x = torch.from_numpy(X[:128].numpy()) * t.scale
    out = sae(x)
    aux, aux_grads = t._auxk(run, x, out.x_hat)
    assert aux_grads is not None and float(aux) > 0
    loss = out.sq_err if out.sq_err is not None else (out.x_hat - x).pow(2).sum()
    loss.backward()
    t._add_auxk_grads(aux_grads)
    got = {n: p.grad.clone() for n, p in sae.named_parameters()}

    sae.zero_grad(set_to_none=True)  # reference: the aux loss through the full weights
    dead = (run.since_fired >= cfg.window).nonzero().squeeze(1)
    out = sae(x)
    e = (x - out.x_hat).detach()
    vals, idx = sparse_encode(x, sae.enc[dead], sae.b_enc[dead], sae.b_dec.detach(), 6)
    e_hat = sparse_decode(vals, dead[idx], sae.W_dec)
    alpha = ((e_hat * e).sum() / e_hat.pow(2).sum().clamp_min(1e-12)).clamp(1e-3, 1.0).detach()
    ref_aux = normalized_mse(e_hat * alpha, e, total_variance(e))
    torch.testing.assert_close(aux, ref_aux.detach())
    ((out.x_hat - x).pow(2).sum() + 0.5 * ref_aux).backward()
    for n, p in sae.named_parameters():
        torch.testing.assert_close(got[n], p.grad, rtol=1e-4, atol=1e-5, msg=n)
    assert (got["enc"][dead] != 0).any()


def test_warmup_is_a_share_of_short_runs_and_capped_for_long_ones():
    """Default warm-up: 2% of the steps, of at most 2M samples (a long run starts as a 2M-sample run) and at most
    100 steps; without anytime 2% of all the steps, at most 100; an explicit value wins."""
    assert TrainConfig(samples=400 * 4096, batch_size=4096).warmup == 8
    assert TrainConfig(samples=10**9, batch_size=4096).warmup == 10  # 2% of the 489 steps of 2M samples
    assert TrainConfig(samples=10**9, batch_size=256).warmup == 100
    assert TrainConfig(samples=10**9, batch_size=4096, anytime=False).warmup == 100
    assert TrainConfig(samples=4096, batch_size=4096).warmup == 1
    assert TrainConfig(samples=10**9, batch_size=4096, warmup_steps=0).warmup == 0


def test_dead_window_is_a_fortieth_of_the_run_between_four_batches_and_gaos_10m():
    """A latent counts dead (and AuxK trains it) after samples/40 without firing: Gao's 10M at 1e9 and beyond,
    never fewer than 4 batches; an explicit value wins."""
    assert TrainConfig(samples=400 * 4096, batch_size=4096).window == 10 * 4096
    assert TrainConfig(samples=10**9, batch_size=4096).window == 10**7
    assert TrainConfig(samples=10**11, batch_size=4096).window == 10**7
    assert TrainConfig(samples=40 * 4096, batch_size=4096).window == 4 * 4096
    assert TrainConfig(samples=10**9, batch_size=4096, dead_window=123).window == 123
    # anytime: a long run's window follows the samples seen (at least 2M), up to its own
    long = TrainConfig(samples=10**9, batch_size=4096)
    assert long.window_at(0) == 50_000 and long.window_at(10**8) == 2_500_000 and long.window_at(10**9) == 10**7
    assert TrainConfig(samples=10**9, batch_size=4096, anytime=False).window_at(0) == 10**7
    short = TrainConfig(samples=400 * 4096, batch_size=4096)
    assert short.window_at(0) == short.window_at(short.samples) == 10 * 4096


def test_default_lr_is_the_literature_value_at_scale_and_larger_for_short_runs():
    """2e-4/sqrt(m/2^14) at the papers' ~1e9 samples (and beyond); x8 up to 2M samples, log-linear between;
    the trainer takes it from its own run length, and an explicit lr wins."""
    from inception_sae.sae.model import default_lr

    lit = 2e-4 / (8448 / 2**14) ** 0.5
    assert default_lr(8448, 1e9) == pytest.approx(lit) and default_lr(8448, 1e11) == pytest.approx(lit)
    for short in (10, 5e5, 1.6384e6, 2e6):
        assert default_lr(8448, short) == pytest.approx(lit * 8)
    # log-linear: the geometric middle of 2e6 and 1e9 gets the geometric middle of x8 and x1
    assert default_lr(8448, (2e6 * 1e9) ** 0.5) == pytest.approx(lit * 8**0.5)
    lengths = [1e5, 1e6, 4e6, 1.6e7, 1e8, 1e9]
    assert all(default_lr(64, a) >= default_lr(64, b) for a, b in itertools.pairwise(lengths))
    X = torch.randn(4096, 16, generator=torch.Generator().manual_seed(0))
    for samples, lr in ((4096, None), (10**9, None), (4096, 1e-3)):
        cfg = TrainConfig(samples=samples, batch_size=256, lr=lr, progress=False)
        t = Trainer(ArraySource(X.numpy(), 256, seed=0), [SAEConfig(16, 64, 4)], cfg, "unused")
        assert t.runs[0].lr == pytest.approx(lr or default_lr(64, samples))
        assert t.runs[0].opt.param_groups[0]["lr"] == pytest.approx(t.runs[0].lr)


def _lrs_taken(cfg: TrainConfig) -> list[float]:
    """The LR Adam took at each step of a whole (tiny) run."""
    X = torch.randn(cfg.batch_size, 8, generator=torch.Generator().manual_seed(0))
    t = Trainer(ArraySource(X.numpy(), cfg.batch_size, seed=0), [SAEConfig(8, 32, 2)], cfg, "unused")
    t.initialise()
    opt, taken = t.runs[0].opt, []
    step = opt.step
    opt.step = lambda: (taken.append(opt.param_groups[0]["lr"]), step())[1]
    while t.step < t.total_steps:
        t.step_all()
    return taken


def test_default_lr_falls_with_the_samples_seen_so_a_long_run_starts_like_a_short_one():
    """Every step of a run with the default LR takes the default LR of a run as long as what it has seen (x8 up to
    2M samples, then falling), so a prefix of a long run trains like a short run; it ends at its own length's LR
    and the last 10% decay from there. anytime=False or an explicit lr: one LR until the decay."""
    from inception_sae.sae.model import default_lr

    batch, steps = 2**16, 64  # 4.2M samples in 64 steps of a tiny SAE
    base = dict(samples=steps * batch, batch_size=batch, warmup_steps=0, progress=False)
    taken = _lrs_taken(TrainConfig(**base))
    flat = int(steps * 0.9)  # steps before the final decay
    want = [default_lr(32, (s + 1) * batch) for s in range(flat)]
    assert taken[:flat] == pytest.approx(want)
    assert taken[0] == pytest.approx(default_lr(32, 2e6)) and taken[flat - 1] > default_lr(32, steps * batch)
    assert taken[flat - 1] == pytest.approx(default_lr(32, flat * batch))
    assert all(a >= b for a, b in itertools.pairwise(taken)) and taken[-1] < taken[flat] / 5
    # runs up to 2M samples: unchanged (one LR, x8)
    short = _lrs_taken(TrainConfig(**{**base, "samples": 8 * batch}))
    assert short[:7] == pytest.approx([default_lr(32, 2e6)] * 7)
    for pinned in ({"anytime": False}, {"lr": 1e-3}):
        taken = _lrs_taken(TrainConfig(**base, **pinned))
        assert taken[:flat] == pytest.approx([pinned.get("lr") or default_lr(32, steps * batch)] * flat)


@pytest.mark.parametrize("tie", ["init", "full"])
def test_encoder_starts_at_its_init_scale_with_unit_decoder_rows(tie):
    """Untied: encoder rows = enc_init_scale x the unit decoder rows; fully tied: the shared rows stay unit."""
    X = torch.randn(2048, 16, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(samples=2048, batch_size=256, init_samples=512, enc_init_scale=0.5, progress=False)
    t = Trainer(ArraySource(X.numpy(), 256, seed=0), [SAEConfig(16, 64, 4, tie)], cfg, "unused")
    t.initialise()
    sae = t.runs[0].sae
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(64))
    expected = 0.5 if tie == "init" else 1.0
    torch.testing.assert_close(sae.enc.norm(dim=1), torch.full((64,), expected))
    if tie == "init":
        torch.testing.assert_close(sae.enc, 0.5 * sae.W_dec)


@pytest.mark.parametrize("tie", ["init", "full"])
def test_resampling_restarts_dead_latents_on_the_badly_reconstructed_rows(tie):
    """Known truth: every row is reconstructed exactly but two, whose residuals are +-3 v and 2 w. Each dead
    latent restarts on one of those directions (drawn ~ squared residual), its encoder at the median live norm
    (tie init), its b_enc such that it beats the rows' k-th activation on exactly its share of the batch
    (B k / m = 6 rows), first Adam moment 0 and second the live rows' mean; live latents are untouched."""
    from inception_sae.sae.resample import resample_dead

    torch.manual_seed(0)
    d, m = 12, 64
    sae = TopKSAE(SAEConfig(d, m, 3, tie))
    opt = torch.optim.Adam(sae.parameters(), lr=1e-3)
    x = torch.randn(128, d)
    sae(x).x_hat.pow(2).sum().backward()  # one step, so that Adam has moments to restart
    opt.step()
    with torch.no_grad():
        sae.b_enc.add_(0.1)
    v, w = torch.zeros(d), torch.zeros(d)
    v[0], w[1] = 1.0, 1.0
    x_hat = x.clone()
    x_hat[5] -= 3 * v
    x_hat[9] -= 2 * w
    dead = torch.tensor([3, 17, 40, 41, 63])
    live = torch.ones(m, dtype=torch.bool)
    live[dead] = False
    before = {n: p.detach().clone() for n, p in sae.named_parameters()}
    moments = {id(p): {k: s.clone() for k, s in opt.state[p].items()} for p in sae.parameters()}
    live_norm = float(sae.enc.detach()[live].norm(dim=1).median())
    twin = copy.deepcopy(sae)

    kth = torch.rand(128, generator=torch.Generator().manual_seed(3))
    assert resample_dead(sae, opt, dead, x, x_hat, kth, x, step=7) == 5
    dirs = sae.W_dec[dead].detach()
    cos = torch.stack([dirs @ v, dirs @ w]).abs().max(0).values
    torch.testing.assert_close(cos, torch.ones(5))
    picked_v = int((dirs @ v).abs().gt(0.99).sum())
    assert picked_v in (2, 3)  # without replacement: both rows, in the drawn order, then again in that order
    if tie == "init":
        torch.testing.assert_close(sae.enc[dead].norm(dim=1), torch.full((5,), live_norm))
        torch.testing.assert_close(sae.enc[dead] / sae.enc[dead].norm(dim=1, keepdim=True), dirs)
    pre = (x - sae.b_dec) @ sae.enc[dead].t() + sae.b_enc[dead]
    assert ((pre - kth[:, None]) > -1e-5).sum(0).tolist() == [6] * 5
    for n, p in sae.named_parameters():
        rows = live if p.shape[0] == m else torch.ones(p.shape[0], dtype=torch.bool)
        assert torch.equal(p.detach()[rows], before[n][rows]), n
        if p.shape[0] == m:
            st, old = opt.state[p], moments[id(p)]
            assert (st["exp_avg"][dead] == 0).all() and torch.equal(st["exp_avg"][live], old["exp_avg"][live])
            torch.testing.assert_close(st["exp_avg_sq"][dead], old["exp_avg_sq"][live].mean(0).expand_as(p[dead]))
    # the draw is a function of the seed, the step and the rows' content, not of their order: a resumed or a
    # data-parallel run (its gathered rows in another order) repeats it
    perm = torch.randperm(128)
    resample_dead(twin, torch.optim.Adam(twin.parameters()), dead, x[perm], x_hat[perm], kth[perm], x[perm], 7)
    assert torch.equal(twin.W_dec[dead], sae.W_dec[dead])
    torch.testing.assert_close(twin.b_enc[dead], sae.b_enc[dead])
