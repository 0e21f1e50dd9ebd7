"""Image trunks with a timm-style ``forward_features``: images (B, 1, S, S) -> feature map (B, C, h, w).

The ResNet-50 and MobileNetV3-small trunks are ours (:mod:`model.networks.backbones`, written after
torchvision's source so that run time never imports torchvision) with torchvision's module names
(``conv1``, ``layer4``, ``features.12``...), so its state-dict keys match; nothing downloads.
Grayscale input is repeated to three channels and normalised with the ImageNet statistics, so a local
torchvision state dict can be loaded with :func:`init_weights` (``--init-weights PATH``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from model.networks.backbones import ResNet50, mobilenet_v3_small_features
from model.networks.config import ModelConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ResNet50Trunk(ResNet50):
    """ResNet-50 (torchvision's, without its pooling and classifier): stride 32, 2048 channels."""

    in_channels = 3
    out_channels = 2048

    def __init__(self, cfg: ModelConfig):
        super().__init__()

    @property
    def cam_layer(self) -> nn.Module:
        return self.layer4[-1]  # last bottleneck block: the usual Grad-CAM layer for ResNets


class MobileNetV3SmallTrunk(nn.Module):
    """MobileNetV3-small ``features`` (torchvision's): stride 32, 576 channels."""

    in_channels = 3
    out_channels = 576

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.features = mobilenet_v3_small_features()

    @property
    def cam_layer(self) -> nn.Module:
        return self.features[-1]  # the final 1x1 conv block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, 576, S/32, S/32)


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
    )


class TinyCNNTrunk(nn.Module):
    """Four stride-2 conv blocks on one channel (tests and demo weights): stride 16, 4*width channels."""

    in_channels = 1

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w = cfg.tiny_width
        self.out_channels = 4 * w
        self.blocks = nn.Sequential(
            _conv_block(1, w), _conv_block(w, 2 * w), _conv_block(2 * w, 4 * w), _conv_block(4 * w, 4 * w)
        )

    @property
    def cam_layer(self) -> nn.Module:
        return self.blocks[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)  # (B, 4w, S/16, S/16)


#: encoder name -> trunk class (a dict of choices, not an if-chain)
TRUNKS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "resnet50": ResNet50Trunk,
    "mobilenet_v3_small": MobileNetV3SmallTrunk,
    "tiny_cnn": TinyCNNTrunk,
}


class ImageEncoder(nn.Module):
    """Normalise grayscale images and run the trunk; ``forward_features`` is the one entry point."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.trunk = TRUNKS[cfg.encoder](cfg)
        c = self.trunk.in_channels
        mean = IMAGENET_MEAN if c == 3 else (0.5,)
        std = IMAGENET_STD if c == 3 else (0.25,)
        # not persistent: constants, not weights (keeps the state dict = torchvision's + ours)
        self.register_buffer("mean", torch.tensor(mean).view(1, c, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, c, 1, 1), persistent=False)

    @property
    def out_channels(self) -> int:
        return self.trunk.out_channels

    @property
    def cam_layer(self) -> nn.Module:
        return self.trunk.cam_layer

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1 or 3, S, S) in [0, 1] -> (B, C, h, w)."""
        c = self.trunk.in_channels
        if images.shape[1] != c:
            images = images.mean(1, keepdim=True).expand(-1, c, -1, -1)  # grayscale -> c channels
        return self.trunk((images - self.mean) / self.std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_features(images)


def init_weights(model: nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Load a local torchvision state dict (``.safetensors``, or ``.pth`` read with ``weights_only``)
    into the model's image trunk. Classifier keys (``fc.*``, ``classifier.*``) are ignored.

    Returns ``{"missing": [...], "unexpected": [...]}`` so the caller can log what matched.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never full unpickling
    state = {k: v for k, v in state.items() if not k.startswith(("fc.", "classifier."))}
    trunk = model.encoder.trunk if hasattr(model, "encoder") else model
    result = trunk.load_state_dict(state, strict=False)
    if not any(k in state for k in trunk.state_dict()):
        raise ValueError(f"{path}: no key matches the {type(trunk).__name__} trunk; wrong architecture?")
    return {"missing": list(result.missing_keys), "unexpected": list(result.unexpected_keys)}
