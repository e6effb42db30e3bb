"""TopKSAE: sparse path == dense reference, save/load round trips, clear errors."""

import json

import pytest
import torch
from safetensors.torch import save_file

from inception_sae import TopKSAE
from inception_sae.errors import UserError
from inception_sae.sae.kernels import geometric_median
from inception_sae.sae.model import SAEConfig

SAELENS_KEYS = {
    "d_in",
    "d_sae",
    "k",
    "architecture",
    "dtype",
    "device",
    "apply_b_dec_to_input",
    "normalize_activations",
}


def _sae(tie="init", d=16, m=64, k=4):
    torch.manual_seed(1)
    sae = TopKSAE(SAEConfig(d, m, k, tie, seed=3))
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.b_enc.normal_(0, 0.3)
        if sae.dec is not None:
            sae.dec.add_(0.1 * torch.randn_like(sae.dec))  # untie so encoder/decoder grads differ
    return sae


def _loss_and_grads(sae, x, dense):
    sae.zero_grad(set_to_none=True)
    out = sae.forward_dense(x) if dense else sae(x)
    loss = (out.x_hat - x).pow(2).sum()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in sae.named_parameters()}


@pytest.mark.parametrize("tie", ["init", "full"])
def test_sparse_path_matches_dense_reference(tie):
    sae = _sae(tie)
    x = torch.randn(48, 16) * 2
    ls, gs = _loss_and_grads(sae, x, dense=False)
    ld, gd = _loss_and_grads(sae, x, dense=True)
    torch.testing.assert_close(ls, ld, rtol=1e-5, atol=1e-5)
    assert gs.keys() == gd.keys()
    for name in gs:
        torch.testing.assert_close(gs[name], gd[name], rtol=1e-4, atol=1e-5, msg=name)


def test_sparse_input_gradient_matches_dense():
    sae = _sae()
    x1 = torch.randn(8, 16, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    sae(x1).x_hat.pow(2).sum().backward()
    sae.forward_dense(x2).x_hat.pow(2).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-5)


def test_multi_topk_and_bf16_run():
    sae = _sae()
    x = torch.randn(8, 16)
    out = sae(x, multi_topk=True)
    assert out.multi_x_hat.shape == x.shape and out.codes.values.shape == (8, 4)
    out16 = sae(x, compute_dtype=torch.bfloat16)
    assert out16.x_hat.dtype == torch.float32


def test_encode_decode_api_and_parallel_grad():
    sae = _sae()
    sae.normalize_decoder()
    values, indices = sae.encode(torch.randn(5, 16))
    assert values.shape == indices.shape == (5, 4) and (values >= 0).all()
    assert sae.decode(values, indices).shape == (5, 16)
    sae(torch.randn(5, 16)).x_hat.sum().backward()
    sae.remove_parallel_grad()
    assert (sae.W_dec.grad * sae.W_dec).sum(1).abs().max() < 1e-5


def test_save_load_round_trip_with_input_scale(tmp_path):
    sae = _sae()
    sae.meta = {"layer": "mixed4d", "model": "random:0"}
    s = 0.25
    x = torch.randn(10, 16) * 4
    want = sae(x * s).x_hat / s  # the SAE as trained on s * x, in raw units
    sae.save(tmp_path / "sae", input_scale=s)
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert cfg.keys() >= SAELENS_KEYS and cfg["architecture"] == "topk" and cfg["normalize_activations"] == "none"
    assert cfg["layer"] == "mixed4d" and cfg["model"] == "random:0" and cfg["input_scale"] == s
    loaded = TopKSAE.load(tmp_path / "sae")
    torch.testing.assert_close(loaded.decode(*loaded.encode(x)), want, rtol=1e-5, atol=1e-5)
    assert loaded.W_enc.shape == (16, 64) and loaded.layer == "mixed4d"


def test_full_tie_round_trip(tmp_path):
    sae = _sae("full")
    sae.save(tmp_path / "s")
    loaded = TopKSAE.load(tmp_path / "s")
    assert loaded.cfg.tie == "full" and loaded.dec is None


def test_hand_made_folder_loads(tmp_path):
    d, m = 8, 32
    W_dec = torch.randn(m, d)
    save_file(
        {"W_enc": W_dec.t().contiguous(), "W_dec": W_dec, "b_enc": torch.zeros(m), "b_dec": torch.ones(d)},
        str(tmp_path / "sae_weights.safetensors"),
    )
    (tmp_path / "cfg.json").write_text(json.dumps({"d_in": d, "d_sae": m, "k": 3, "architecture": "topk"}))
    sae = TopKSAE.load(tmp_path)
    v, _ = sae.encode(torch.randn(4, d))
    assert v.shape == (4, 3)
    torch.testing.assert_close(sae.W_dec, W_dec)


def test_bad_folders_give_user_errors(tmp_path):
    with pytest.raises(UserError, match="missing"):
        TopKSAE.load(tmp_path)
    (tmp_path / "cfg.json").write_text("{}")
    (tmp_path / "sae_weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(UserError, match="cannot read"):
        TopKSAE.load(tmp_path)
    save_file(
        {"W_enc": torch.zeros(8, 32), "W_dec": torch.zeros(32, 9), "b_enc": torch.zeros(32), "b_dec": torch.zeros(8)},
        str(tmp_path / "sae_weights.safetensors"),
    )
    with pytest.raises(UserError, match="W_dec has shape"):
        TopKSAE.load(tmp_path)
    with pytest.raises(UserError, match="expects"):
        _sae().encode(torch.randn(3, 5))


def test_geometric_median_is_robust():
    x = torch.cat([torch.zeros(90, 3), 1000 * torch.ones(10, 3)])
    assert geometric_median(x).abs().max() < 1.0 < x.mean(0).abs().max()


def test_recent_means_keep_a_window_and_survive_a_checkpoint():
    from inception_sae.sae.metrics import RecentMeans

    r = RecentMeans(window=3)
    for v in (1.0, 2.0, 3.0, 4.0):
        r.add({"fvu": v, "dense_fraction": v / 10, "l0": v})
    assert r.mean("fvu") == 3.0 and r.summary()["summary_window_steps"] == 3
    again = RecentMeans(window=3)
    again.load_state_dict(r.state_dict())
    assert again.summary() == r.summary() and RecentMeans().mean("fvu") is None
