"""Our ResNet-50 / MobileNetV3-small trunks against torchvision's (issue 13: no torchvision at run time)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.networks.backbones import ResNet50, make_divisible, mobilenet_v3_small_features

ROOT = Path(__file__).resolve().parents[1]


def _torchvision_trunk(name: str) -> torch.nn.Module:
    tv = pytest.importorskip("torchvision")
    if name == "resnet50":
        r = tv.models.resnet50(weights=None)
        del r.avgpool, r.fc  # the trunk: what ResNet50Trunk keeps (fc drawn its init before the del)
        return r
    return tv.models.mobilenet_v3_small(weights=None).features


def _forward(name: str, m: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    if name == "resnet50" and not isinstance(m, ResNet50):  # torchvision's forward ends in avgpool + fc
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        return m.layer4(m.layer3(m.layer2(m.layer1(x))))
    return m(x)


BUILDERS = {"resnet50": ResNet50, "mobilenet_v3_small": mobilenet_v3_small_features}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_state_dict_and_module_tree_match_torchvision(name):
    ours, theirs = BUILDERS[name](), _torchvision_trunk(name)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [
        (k, v.shape) for k, v in theirs.state_dict().items()
    ]
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    for (n, a), (_, b) in zip(ours.named_modules(), theirs.named_modules(), strict=True):
        if isinstance(a, (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.ReLU, torch.nn.Hardswish)):
            assert repr(a) == repr(b), n  # strides, padding, groups, eps, momentum, inplace


@pytest.mark.parametrize("name", list(BUILDERS))
def test_seeded_init_is_torchvisions(name):
    """Same init scheme, same random draws: a seeded build (and whatever is built after it) is unchanged."""
    _torchvision_trunk(name)  # skips without torchvision
    torch.manual_seed(7)
    ours = BUILDERS[name]()
    after_ours = torch.rand(3)
    torch.manual_seed(7)
    theirs = _torchvision_trunk(name)
    after_theirs = torch.rand(3)
    for (k, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert torch.equal(after_ours, after_theirs)


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("train", [False, True])
def test_outputs_match_torchvision_with_its_weights(name, train):
    theirs = _torchvision_trunk(name)
    ours = BUILDERS[name]()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode tests them too
        for m in theirs.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    ours.load_state_dict(theirs.state_dict())
    ours.train(train)
    theirs.train(train)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    y_ours, y_theirs = _forward(name, ours, x.clone()), _forward(name, theirs, x.clone())
    assert y_ours.shape == y_theirs.shape
    torch.testing.assert_close(y_ours, y_theirs, rtol=1e-5, atol=1e-5)
    if train:  # the running statistics moved the same way
        for (k, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)


def test_make_divisible_as_torchvision():
    # values from torchvision's _make_divisible: never more than 10% down
    assert [make_divisible(v) for v in (16 // 4, 72 // 4, 96 // 4, 240 // 4, 576 // 4, 10)] == [
        8, 24, 24, 64, 144, 16
    ]  # fmt: skip
    tv_utils = pytest.importorskip("torchvision.models._utils")
    assert all(make_divisible(v / 4) == tv_utils._make_divisible(v / 4, 8) for v in range(1, 4000))


def test_trunks_need_no_torchvision():
    """Nothing of ours imports torchvision: with it made unimportable (as in a base install, ``pip install .``),
    model.networks imports and both trunks build and run. (Where torchvision is installed, transformers'
    ``modeling_utils`` imports it by itself, via ``image_utils``: a test extra, grad-cam, depends on it.)"""
    code = (
        "import sys\n"
        "sys.modules['torchvision'] = None  # import torchvision -> ModuleNotFoundError; find_spec -> None\n"
        "import torch, model.networks\n"
        "from model.networks.config import TEACHER_PRESETS, STUDENT_PRESETS\n"
        "from model.networks.encoders import MobileNetV3SmallTrunk, ResNet50Trunk\n"
        "for t in (ResNet50Trunk(TEACHER_PRESETS['resnet50-4l']), MobileNetV3SmallTrunk(STUDENT_PRESETS['mobilenet-1l'])):\n"
        "    assert t.eval()(torch.rand(1, 3, 64, 64)).shape[1] == t.out_channels\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torchvision'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "['torchvision']", out.stdout  # only the blocker itself
