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
    net, clf = Restorer3D(W), Classifier3D(W, hidden=(8, 4))
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
