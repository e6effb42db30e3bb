"""BatchTopK and Matryoshka SAEs: selection rules against dense references, training on planted data, the folder
round trip and checkpoint resume."""

from __future__ import annotations

import json

import pytest
import torch
from factories import one_line_error, run_cli
from factories.cli import process_env
from factories.sae import planted, planted_varied

from inception_sae.data.source import ArraySource
from inception_sae.errors import UserError
from inception_sae.sae import kernels
from inception_sae.sae.architecture import SAESettings
from inception_sae.sae.metrics import fvu
from inception_sae.sae.model import SAEConfig, TopKSAE
from inception_sae.sae.selection import Rule, select
from inception_sae.sae.train import TrainConfig, Trainer, train


@pytest.fixture(params=["auto", "torch"])
def backend(request):
    kernels.set_backend(request.param)
    yield request.param
    kernels.set_backend("auto")


def _dense(vals: torch.Tensor, idx: torch.Tensor, m: int) -> torch.Tensor:
    return torch.zeros(vals.shape[0], m).scatter_(1, idx, vals)


@pytest.mark.parametrize("cpu", [True, False])
def test_batch_rule_keeps_the_k_times_b_largest_of_the_whole_batch(cpu):
    """Against the dense definition (SAELens: flatten, top k·B, ReLU), on rows whose scales differ by 100x, so some
    rows need far more than the 4k candidates the kernel starts from, and others none."""
    g = torch.Generator().manual_seed(0)
    B, m, k = 64, 512, 4
    pre = torch.randn(B, m, generator=g) * torch.logspace(-1, 1, B)[:, None]
    bias = 0.1 * torch.randn(m, generator=g)
    vals, idx = select(pre, bias if cpu else None, Rule("batch", k), False, cpu) if cpu else \
        select(pre + bias, None, Rule("batch", k), False, cpu)  # fmt: skip
    got = _dense(vals, idx, m)
    full = (pre + bias).relu().flatten()
    ref = torch.zeros_like(full).scatter_(0, full.topk(k * B).indices, full.topk(k * B).values).view(B, m)
    torch.testing.assert_close(got, ref)
    per_row = (got > 0).sum(1)
    assert per_row.max() > 4 * k and per_row.min() == 0  # the widening and the empty rows were exercised
    assert all(len(set(r.tolist())) == idx.shape[1] for r in idx)  # padding at distinct latents: scatter-safe


@pytest.mark.parametrize("cpu", [True, False])
def test_threshold_rule_keeps_every_preactivation_above_its_latents_threshold(cpu):
    g = torch.Generator().manual_seed(1)
    B, m = 32, 256
    pre, bias = torch.randn(B, m, generator=g), 0.2 * torch.randn(m, generator=g)
    thr = torch.rand(m, generator=g) * 2
    pre16 = pre.bfloat16()
    for p in (pre, pre16) if cpu else (pre,):
        vals, idx = select(p, bias, Rule("threshold", 4, threshold=thr), False, cpu)
        z = p.float() + bias
        torch.testing.assert_close(_dense(vals, idx, m), torch.where(z > thr, z.relu(), torch.zeros_like(z)))


@pytest.mark.parametrize("arch", ["batchtopk", "matryoshka"])
@pytest.mark.parametrize("tie", ["init", "full"])
def test_fused_cpu_path_equals_the_plain_sparse_autograd_path(arch, tie):
    """The Numba training path (decode_nested, grouped backward_rows) against embedding_bag autograd."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(96, 16, generator=g) * torch.rand(96, 1, generator=g) * 3
    grads, outs = {}, {}
    for be in ("auto", "torch"):
        kernels.set_backend(be)
        try:
            sae = TopKSAE(SAEConfig(16, 256, 4, tie, seed=3, architecture=arch))
            out = sae(x)
            sq = out.sq_err if out.sq_err is not None else (out.x_hat - x).pow(2).sum()
            sq.backward()
        finally:
            kernels.set_backend("auto")
        outs[be] = out._replace(sq_err=sq)
        grads[be] = [p.grad.clone() for p in sae.parameters()]
    a, b = outs["auto"], outs["torch"]
    torch.testing.assert_close(_dense(*a.codes, 256), _dense(*b.codes, 256))  # the CPU rule keeps column order
    torch.testing.assert_close(a.sq_err, b.sq_err, rtol=1e-5, atol=1e-3)
    if arch == "matryoshka":
        torch.testing.assert_close(a.prefix_sq, b.prefix_sq, rtol=1e-5, atol=1e-2)
        assert a.prefix_sq.shape == (3,)
    for ga, gb in zip(grads["auto"], grads["torch"], strict=True):
        torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-3)


def test_bf16_training_step_runs_for_matryoshka():
    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(4))
    sae = TopKSAE(SAEConfig(16, 128, 4, architecture="matryoshka"))
    ref = sae(x).sq_err
    out = sae(x, compute_dtype=torch.bfloat16)
    out.sq_err.backward()
    assert torch.isfinite(sae.enc.grad).all() and abs(float(out.sq_err) / float(ref) - 1) < 0.05


def _train(X: torch.Tensor, arch: str, k: int, m: int, samples: int, out, **kw):
    cfg = TrainConfig(samples=samples, batch_size=256, warmup_steps=20, progress=False, checkpoint_every=0,
                      checkpoint_every_s=0, **kw)  # fmt: skip
    d = X.shape[1]
    res = train(ArraySource(X.numpy(), 256, seed=0), [SAEConfig(d, m, k, architecture=arch)], cfg, out)
    return TopKSAE.load(res.paths[0]), res


def _eval(sae: TopKSAE, X: torch.Tensor) -> tuple[float, float]:
    """(mean L0, FVU) of ``sae``'s inference codes on ``X``."""
    with torch.no_grad():
        vals, idx = sae.encode(X)
        return float((vals > 0).sum(1).float().mean()), fvu(sae.decode(vals, idx), X)


@pytest.mark.slow
@pytest.mark.parametrize("data", ["planted", "varied"])
def test_batchtopk_inference_threshold_gives_k_latents_per_row_on_held_out_rows(data, tmp_path):
    """The threshold learnt in training keeps k latents per row on average on rows it never saw, on the planted
    dictionary and on rows whose number of atoms and scale vary widely (there rows keep 1 to many latents)."""
    X = planted(40_000, d=32, features=256, active=4)[0] if data == "planted" else planted_varied(40_000)
    k = 6
    sae, _ = _train(X[:32_000], "batchtopk", k, 256, 96_000, tmp_path)
    l0, f = _eval(sae, X[32_000:])
    print(f"{data}: held-out L0 {l0:.3f} (k={k}), FVU {f:.3f}, threshold {float(sae.threshold[0]):.4f}")
    assert abs(l0 / k - 1) < 0.05 and f < 0.3
    per_row = (sae.encode(X[32_000:]).values > 0).sum(1)
    if data == "varied":
        assert per_row.max() >= 2 * k and per_row.min() <= k // 2  # the budget follows the rows


@pytest.mark.slow
def test_batchtopk_reconstructs_better_than_topk_at_equal_l0_when_rows_need_different_budgets(tmp_path):
    """Rows of 1 to 24 atoms (mean 12.5) at log-normal scales, k = 8: TopK must drop atoms of the busy rows and
    spends latents on noise in the quiet ones; BatchTopK moves the budget (held-out L0 still ~k), FVU ~35% lower.
    (On the constant-count planted data, 4 atoms per row at k = 4, TopK is the better one at this length: ~0.17 vs
    ~0.32, and a plain dense reference training loop gives the same gap: benchmarks/README.md.)"""
    X = planted_varied(38_000, most=24)
    l0, f = {}, {}
    for arch in ("topk", "batchtopk"):
        sae, _ = _train(X[:30_000], arch, 8, 256, 90_000, tmp_path / arch)
        l0[arch], f[arch] = _eval(sae, X[30_000:])
    print(f"held-out L0 {l0}, FVU {f}")
    assert abs(l0["batchtopk"] / l0["topk"] - 1) < 0.05
    assert f["batchtopk"] < 0.8 * f["topk"]


@pytest.mark.slow
def test_matryoshka_prefixes_each_reconstruct(tmp_path):
    """Each nested prefix alone reconstructs: the first (1/16 of the latents) far below FVU 1, and more latents
    reconstruct better; the full dictionary is about as good as a plain BatchTopK one at the same k. The atoms'
    frequencies fall as 1/rank, the hierarchy of common and rare features that Matryoshka orders."""
    X = planted_varied(40_000, zipf=True)
    sae, res = _train(X[:32_000], "matryoshka", 6, 256, 96_000, tmp_path / "m")
    assert sae.cfg.prefixes == (16, 64, 256)
    held = X[32_000:]
    with torch.no_grad():
        vals, idx = sae.encode(held)
        prefix = [fvu(sae.decode(vals * (idx < size), idx), held) for size in sae.cfg.prefixes]
    summary = next(iter(res.summaries.values()))
    print(f"matryoshka prefix FVU held out {prefix}, training {summary['final_prefix_fvu']}")
    assert prefix[0] < 0.25 and prefix[0] > prefix[1] > prefix[2]
    assert len(summary["final_prefix_fvu"]) == 3
    plain, _ = _train(X[:32_000], "batchtopk", 6, 256, 96_000, tmp_path / "b")
    assert prefix[2] < 1.5 * _eval(plain, held)[1]


@pytest.mark.parametrize("arch", ["batchtopk", "matryoshka"])
def test_folder_round_trip_gives_the_inference_codes_of_training(arch, tmp_path):
    """Saved in raw units (input scale folded into b_enc, b_dec and the threshold) and loaded back: the same codes
    as the trained SAE on the scaled input, through TopKSAE.encode and the frozen view; SAELens's keys."""
    X = planted_varied(6000, d=16, features=64)
    cfg = TrainConfig(samples=6000, batch_size=256, warmup_steps=5, progress=False, init_samples=1024)
    t = Trainer(ArraySource(X.numpy(), 256, seed=0), [SAEConfig(16, 64, 3, architecture=arch)], cfg, tmp_path)
    t.initialise()
    while t.step < t.total_steps:
        t.step_all()
    trained = t.runs[0].sae
    assert float(trained.threshold.min()) > 0 and t.scale != 1.0
    (path,) = t.save_saes()
    loaded = TopKSAE.load(path)
    cfg_json = json.loads((path / "cfg.json").read_text())
    assert cfg_json["architecture"] == "jumprelu" and cfg_json["trained_architecture"] == arch
    assert loaded.architecture == arch and loaded.cfg.prefixes == trained.cfg.prefixes
    with torch.no_grad():
        want = trained.encode(X * t.scale)
        got = loaded.encode(X)
        view = loaded.frozen(path).encode(X)
    torch.testing.assert_close(_dense(*got, 64), _dense(want.values / t.scale, want.indices, 64), rtol=1e-4,
                               atol=1e-5)  # fmt: skip
    torch.testing.assert_close(_dense(*view, 64), _dense(*got, 64), rtol=1e-4, atol=1e-5)
    TopKSAE.load(path).save(tmp_path / "again")
    again = TopKSAE.load(tmp_path / "again").encode(X)
    assert torch.equal(again.values, got.values) and torch.equal(again.indices, got.indices)


def test_a_saelens_jumprelu_folder_reads_as_threshold_inference(tmp_path):
    """A folder with SAELens's jumprelu keys only (no trained_architecture): per-latent thresholds apply."""
    g = torch.Generator().manual_seed(5)
    t = {"W_enc": torch.randn(8, 32, generator=g), "W_dec": torch.randn(32, 8, generator=g),
         "b_enc": torch.zeros(32), "b_dec": torch.zeros(8), "threshold": torch.rand(32, generator=g)}  # fmt: skip
    from safetensors.torch import save_file

    tmp_path.mkdir(exist_ok=True)
    save_file(t, str(tmp_path / "sae_weights.safetensors"))
    (tmp_path / "cfg.json").write_text(json.dumps({"architecture": "jumprelu", "d_in": 8, "d_sae": 32}))
    sae = TopKSAE.load(tmp_path)
    x = torch.randn(10, 8, generator=g)
    pre = x @ t["W_enc"]
    with torch.no_grad():
        got = _dense(*sae.encode(x), 32)
    torch.testing.assert_close(got, torch.where(pre > t["threshold"], pre.relu(), torch.zeros_like(pre)))


@pytest.mark.parametrize("arch", ["batchtopk", "matryoshka"])
def test_interrupted_run_resumes_bitwise(arch, tmp_path, monkeypatch):
    """A run stopped mid-way (as by SIGINT) and resumed from its checkpoint ends bitwise equal to an uninterrupted
    one, threshold included."""
    X = planted_varied(8000, d=16, features=64)
    saes = [SAEConfig(16, 64, 3, architecture=arch)]
    cfg = TrainConfig(samples=256 * 20, batch_size=256, warmup_steps=5, progress=False, checkpoint_every=0,
                      init_samples=1024, dead_window=512, resample_every=4, resample_from=0.0)  # fmt: skip
    train(ArraySource(X.numpy(), 256, seed=0), saes, cfg, tmp_path / "ref")
    real = Trainer.step_all

    def stop_at_7(self):
        real(self)
        if self.step == 7:
            self.stop_signal = 2

    monkeypatch.setattr(Trainer, "step_all", stop_at_7)
    assert train(ArraySource(X.numpy(), 256, seed=0), saes, cfg, tmp_path / "cut").interrupted
    monkeypatch.setattr(Trainer, "step_all", real)
    train(ArraySource(X.numpy(), 256, seed=0), saes, cfg, tmp_path / "cut")
    from safetensors.torch import load_file

    ref = load_file(str(tmp_path / "ref" / "sae_weights.safetensors"))
    cut = load_file(str(tmp_path / "cut" / "sae_weights.safetensors"))
    assert ref.keys() == cut.keys() and "threshold" in ref
    for name in ref:
        assert torch.equal(ref[name], cut[name]), name


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: SAESettings(architecture="matryoshka", prefixes=(0.5, 0.25)), "must be increasing fractions"),
        (lambda: SAESettings(prefixes=(0.25, 2.0)), "in (0, 1]"),
        (lambda: SAEConfig(8, 64, 2, architecture="matryoshka", prefixes=(16, 8)), "must increase within 1..64"),
        (lambda: SAEConfig(8, 64, 2, architecture="matryoshka", prefixes=(16, 128)), "must increase within 1..64"),
        (lambda: SAEConfig(8, 64, 2, architecture="jumprelu"), "architecture must be one of"),
        (lambda: SAESettings(architecture="batch"), "architecture must be one of"),  # type: ignore[arg-type]
    ],
)
def test_bad_architecture_settings_are_one_line_user_errors(make, needle):
    with pytest.raises(UserError) as e:
        make()
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_matryoshka_prefixes_from_fractions_and_the_full_dictionary_appended():
    c = SAEConfig.from_expansion(32, 16, None, prefixes=(1 / 16, 0.25), k=4, architecture="matryoshka")
    assert c.prefixes == (32, 128, 512)
    assert SAEConfig(8, 64, 2, architecture="batchtopk", prefixes=(4,)).prefixes == ()


def test_train_and_eval_commands_with_each_architecture(tmp_path):
    """`train --architecture` writes the folder SAELens reads as JumpReLU; `eval` measures it with the threshold,
    held-out L0 near k; `run`'s sae section takes the same settings."""
    from inception_sae import ActivationStore
    from inception_sae.pipeline.config import build

    v = planted_varied(4096, d=16, features=64).numpy()
    store = ActivationStore.write(tmp_path / "store", v, "mixed3a", meta={"model": "random:0"})
    base = ["train", "--store", str(store.path), "--k", "4", "--latents", "64", "--batch-size", "256", "--no-progress",
            "--samples", "8192", "--held-out", "1024"]  # fmt: skip
    out = tmp_path / "m"
    assert run_cli(*base, "--out", str(out), "--architecture", "matryoshka", "--prefixes", "0.25",
                   "--prefixes", "1").returncode == 0  # fmt: skip
    cfg = json.loads((out / "cfg.json").read_text())
    assert cfg["trained_architecture"] == "matryoshka" and cfg["matryoshka_prefixes"] == [16, 64]
    assert cfg["architecture"] == "jumprelu" and cfg["threshold"] > 0
    rep = tmp_path / "eval.json"
    assert run_cli("eval", "--sae", str(out), "--store", str(store.path), "--report", str(rep)).returncode == 0
    res = json.loads(rep.read_text())["store"]
    assert res["held_out"] and abs(res["l0"] / 4 - 1) < 0.15 and res["fvu"] < 0.5
    bad = [*base, "--out", str(tmp_path / "b"), "--architecture", "matryoshka", "--prefixes", "0.5",
           "--prefixes", "0.25"]  # fmt: skip
    r = run_cli(*bad)
    assert r.returncode == 2
    one_line_error(r, "must be increasing fractions")
    assert build({"sae": {"architecture": "batchtopk"}}, {"layers": ["mixed4a"]}).sae.architecture == "batchtopk"
    with pytest.raises(UserError, match=r"sae\.architecture must be one of"):
        build({"sae": {"architecture": "jumprelu"}}, {"layers": ["mixed4a"]})


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["batchtopk", "matryoshka"])
def test_two_process_ddp_selects_over_the_global_batch(arch, tmp_path):
    """Under torchrun each rank holds half the batch; the batch selection and the threshold span both halves, so
    two processes end where one process does (as for TopK in test_sae_resume)."""
    import subprocess
    import sys

    from safetensors.torch import load_file

    env = process_env(OMP_NUM_THREADS="1", SAE_WORKER_ARCHITECTURE=arch)
    worker, samples = ["-m", "factories.sae_worker"], str(64 * 12)
    subprocess.run([sys.executable, *worker, str(tmp_path / "one"), samples, "0"], env=env, check=True, timeout=300)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "--module",
           "factories.sae_worker", str(tmp_path / "two"), samples, "0"]  # fmt: skip
    r = subprocess.run(cmd, env=env, timeout=300, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    for sub in sorted(p for p in (tmp_path / "one").iterdir() if (p / "sae_weights.safetensors").is_file()):
        one = load_file(str(sub / "sae_weights.safetensors"))
        two = load_file(str(tmp_path / "two" / sub.name / "sae_weights.safetensors"))
        assert "threshold" in one
        for name in one:
            torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-4, msg=f"{sub.name}/{name}")
