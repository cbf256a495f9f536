"""SSLHF's 3D networks: the paper's layer counts, shapes, and the classifier starting from the restorer's encoder."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from cmrlib.models.sslhf import Classifier3D, Encoder3D, Restorer3D

W = (2, 4, 4, 8, 8)


def test_restorer_has_the_papers_layers_and_keeps_the_shape():
    net = Restorer3D(W)
    convs = lambda m: [x for x in m.modules() if type(x) is nn.Conv3d]
    assert len(convs(net.encoder)) == 10 and sum(isinstance(x, nn.MaxPool3d) for x in net.encoder.modules()) == 1
    decoder = [x for name, x in net.named_modules() if type(x) is nn.Conv3d and not name.startswith("encoder")]
    assert len(decoder) == 10 and sum(isinstance(x, nn.ConvTranspose3d) for x in net.modules()) == 4
    x = torch.rand(2, 1, 16, 32, 32)
    assert net(x).shape == x.shape
    feats = net.encoder(x)
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 2]  # four pools


@pytest.mark.parametrize("skips", [4, 0])
def test_a_restorer_without_skips_restores_only_through_the_deepest_level(skips):
    """Silencing the deepest level leaves a U-Net restoring from its skips; with none kept, nothing is restored."""
    torch.manual_seed(0)
    net = Restorer3D((2, 2, 4, 4, 4), skips).eval()
    net.encoder.levels[4].register_forward_hook(lambda m, i, out: torch.zeros_like(out))
    a, b = torch.randn(2, 1, 1, 16, 16, 16)
    with torch.no_grad():
        same = torch.allclose(net(a), net(b))
    assert same == (skips == 0) and sum(net.joined) == skips


def test_a_restorer_refuses_a_skip_count_it_does_not_have():
    with pytest.raises(ValueError, match="0 to 4"):
        Restorer3D(skips=5)


def test_classifier_reuses_the_restorer_encoder_and_gives_one_logit_per_patch():
    torch.manual_seed(0)
    restorer, clf = Restorer3D(W), Classifier3D(W, hidden=(8, 4))
    x = torch.rand(3, 1, 16, 32, 32)
    assert clf(x).shape == (3,)
    clf.load_restorer(restorer)
    assert all(torch.equal(a, b) for a, b in zip(clf.encoder.state_dict().values(),
                                                  restorer.encoder.state_dict().values()))


def test_patch_sizes_the_pools_cannot_halve_are_refused():
    with pytest.raises(ValueError, match="divisible by 16"):
        Encoder3D(W)(torch.rand(1, 1, 10, 32, 32))
    with pytest.raises(ValueError, match="five levels"):
        Encoder3D((2, 4))


def test_the_papers_40_frames_are_padded_through_and_cropped_back():
    net, clf = Restorer3D(W), Classifier3D(W, hidden=(8, 4)).eval()  # a batch of one: the head's BatchNorm in eval
    x = torch.rand(1, 1, 40, 24, 24)
    assert net(x).shape == x.shape and clf(x).shape == (1,)


def test_the_monai_baselines_give_one_logit_per_patch():
    from cmrlib.models.sslhf import densenet121_3d, resnet50_3d
    x = torch.rand(2, 1, 32, 32, 32)
    r50 = resnet50_3d(widen=0.125, groups=4)
    d121 = densenet121_3d(init_features=8, growth_rate=4, groups=4)
    assert r50(x).shape == (2,) and d121(x).shape == (2,)
    assert any(isinstance(m, nn.GroupNorm) for m in r50.modules()) and not any(
        isinstance(m, nn.BatchNorm3d) for m in d121.modules())
    blocks = [m for m in r50.modules() if type(m).__name__ == "ResNetBottleneck"]
    assert len(blocks) == 3 + 4 + 6 + 3


def test_every_first_layer_unit_of_the_head_is_alive_on_proxy_initialised_features():
    """From a trained restoration proxy the pooled features are non-negative and large; fed unscaled to a
    Kaiming-initialised layer with zero bias, most units were off for every patch from the start (a dead head that
    never learned). Standardised first, every unit is on for some patches of a batch."""
    import numpy as np

    from cmrlib.methods import sslhf

    g = np.random.default_rng(0)
    x = g.normal(0, 1, (24, 16, 16, 16)).astype(np.float32)
    cfg = sslhf.learner.SSLHFConfig(widths=(4, 8, 8, 16, 32), hidden=(32, 16), proxy_steps=20, proxy_bs=4)
    proxy, _ = sslhf.learner.pretrain(x[:16], x[16:], cfg, ("shuffle", "patch"))
    clf = sslhf.learner.network("SSLHF", cfg, {"SSLHF": proxy}).train()
    with torch.no_grad():
        pooled = torch.amax(clf.encoder(torch.as_tensor(x[:, None]))[-1], dim=(2, 3, 4))
        first = clf.head[2](clf.head[1](clf.head[0](pooled)))  # BatchNorm, Linear, ReLU
    assert pooled.min() >= 0 and isinstance(clf.head[0], nn.BatchNorm1d)
    assert (first > 0).any(dim=0).all(), f"{int((~(first > 0).any(dim=0)).sum())} of {first.shape[1]} units dead"
