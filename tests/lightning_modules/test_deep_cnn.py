"""The airbench-class pieces: the whitening stem, frozen-scale batch norm, the optimiser's
groups and schedule, lookahead, and test-time augmentation."""
from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from lightning_modules.classifier import Classifier, warmup_linear
from lightning_modules.config import ModelConfig, OptimConfig
from lightning_modules.deep_cnn import FrozenScaleNorm, Whitening, norm_shifts
from lightning_modules.lookahead import Lookahead
from lightning_modules.nets import build_net
from lightning_modules.tta import tta_logits


def test_whitening_decorrelates_the_patches_it_was_fitted_on():
    torch.manual_seed(0)
    mix = torch.randn(3, 3)  # correlated colour channels
    x = torch.einsum("ij,njhw->nihw", mix, torch.randn(400, 3, 12, 12))
    x = x + 0.5 * torch.roll(x, 1, dims=3)  # and correlated neighbours
    stem = Whitening(3)
    assert not stem.fitted
    stem.fit(x)
    with torch.no_grad():
        out = stem(x)[:, :12]  # the first half; the second is its negation
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12)
    cov = flat.T @ flat / len(flat)
    assert torch.allclose(cov, torch.eye(12), atol=0.05)
    assert stem.fitted and not stem.weight.requires_grad
    assert torch.equal(stem.weight[12:], -stem.weight[:12])


def test_whitening_is_fitted_once_before_training_and_kept_on_resume(tiny_dataset, tmp_path):
    from lightning_modules.datamodule import PreparedData

    dm = PreparedData(tiny_dataset[1], 32, eval_batch_size=64)
    net = build_net(ModelConfig(family="dcnn", widths=[4, 8, 8]), dm.shape, 10)
    module = Classifier(net, 10, OptimConfig(batch_size=32, schedule="none").model_dump())
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False,
                         num_sanity_val_steps=0)
    trainer.fit(module, datamodule=dm)
    fitted = net.whiten.weight.clone()
    assert net.whiten.fitted and fitted.abs().sum() > 0
    ckpt = str(tmp_path / "c.ckpt")
    trainer.save_checkpoint(ckpt)
    net2 = build_net(ModelConfig(family="dcnn", widths=[4, 8, 8]), dm.shape, 10)
    module2 = Classifier(net2, 10, OptimConfig(batch_size=32, schedule="none").model_dump())
    dm2 = PreparedData(tiny_dataset[1], 32, eval_batch_size=64)
    dm2.whitening_sample = lambda n=5000: torch.randn(8, 1, 28, 28)  # refit would change it
    pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
               enable_checkpointing=False, enable_model_summary=False,
               num_sanity_val_steps=0).fit(module2, datamodule=dm2, ckpt_path=ckpt)
    assert torch.equal(net2.whiten.weight, fitted)


def test_batch_norm_scale_is_frozen_and_shifts_get_their_own_rate():
    net = build_net(ModelConfig(family="dcnn", widths=[4, 8, 8]), (3, 16, 16), 10)
    norms = [m for m in net.modules() if isinstance(m, FrozenScaleNorm)]
    assert len(norms) == 6 and not any(m.weight.requires_grad for m in norms)
    module = Classifier(net, 10, OptimConfig(optimizer="sgd", lr=0.5, weight_decay=1e-3,
                                             decoupled_weight_decay=True,
                                             norm_lr_scale=64).model_dump())
    groups = module._param_groups()
    by_lr = {g["lr"]: g for g in groups}
    assert set(by_lr) == {0.5, 32.0}
    assert {id(p) for p in by_lr[32.0]["params"]} == {id(p) for p in norm_shifts(net)}
    # decoupled: lr × coefficient is the configured decay per step in both groups
    assert all(g["lr"] * g["weight_decay"] == pytest.approx(1e-3) for g in groups)
    plain = Classifier(net, 10, OptimConfig(weight_decay=1e-3).model_dump())._param_groups()
    assert len(plain) == 1 and plain[0]["weight_decay"] == 1e-3


def test_warmup_linear_schedule_shape():
    f = warmup_linear(100)
    assert f(0) == pytest.approx(0.2) and f(23) == pytest.approx(1.0)
    assert f(99) == pytest.approx(0.07, abs=0.02) and f(60) < f(30)
    assert all(f(i) >= f(i + 1) for i in range(23, 99))


class _Steps:
    """What Lookahead reads of a trainer."""

    def __init__(self, total: int) -> None:
        self.global_step, self.estimated_stepping_batches = 0, total


def test_lookahead_averages_and_ends_on_the_average():
    module = nn.Linear(2, 1, bias=False)
    la, trainer = Lookahead(), _Steps(10)
    la.on_train_start(trainer, module)
    seen = []
    for step in range(1, 11):
        with torch.no_grad():
            module.weight.add_(1.0)  # an optimiser step
        trainer.global_step = step
        before = module.weight.clone()
        la.on_train_batch_end(trainer, module, None, None, step)
        seen.append((step, before, module.weight.clone()))
    for step, before, after in seen[:-1]:
        if step % 5:
            assert torch.equal(before, after)  # untouched between updates
    assert (seen[4][2] < seen[4][1]).all()  # step 5 pulled back towards the average
    assert torch.equal(module.weight, la.average["weight"])  # the last step ends on it
    restored = Lookahead()
    restored.load_state_dict(la.state_dict())
    assert torch.equal(restored.average["weight"], la.average["weight"])


def test_tta_averages_mirror_and_shifts():
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    x = torch.randn(5, 3, 8, 8)
    out = tta_logits(net, x)
    assert out.shape == (5, 4)
    flat = torch.randn(5, 3, 1, 1).expand(5, 3, 8, 8)  # unchanged by mirror and shifts
    assert torch.allclose(tta_logits(net, flat), net(flat), atol=1e-5)
    assert not torch.allclose(out, net(x), atol=1e-4)
    mirrored = lambda z: 0.5 * (net(z) + net(z.flip(-1)))  # noqa: E731
    pad = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    want = 0.5 * mirrored(x) + 0.25 * mirrored(pad[..., :8, :8]) + 0.25 * mirrored(pad[..., 2:, 2:])
    assert torch.allclose(out, want, atol=1e-5)
