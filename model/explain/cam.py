"""Class activation maps from one layer's activations and gradients (our own, no pytorch-grad-cam).

Each method is one small pure function ``(activations (B, C, h, w), gradients (B, C, h, w)) -> raw map
(B, h, w)``, looked up in ``CAM_FUNCTIONS``; ``class_activation_map`` then does what pytorch-grad-cam's
``BaseCAM`` does after it: ReLU, min-max normalise, bilinear resize to the input size, normalise again.

* Grad-CAM (Selvaraju et al. 2017): ``relu(sum_c mean_ij(dY/dA_c) * A_c)``
* HiResCAM (Draelos & Carin 2020): ``relu(sum_c dY/dA_c * A_c)`` (element-wise, faithful to the score)
* Grad-CAM++ (Chattopadhay et al. 2018, eq. 19): channel weights ``sum_ij relu(g) * a_ij`` with
  ``a_ij = g^2 / (2 g^2 + sum_ij(A) g^3)``
* LayerCAM (Jiang et al. 2021): ``relu(sum_c relu(dY/dA_c) * A_c)``
* EigenCAM (Muhammad & Yeasin 2020): the centred activations projected on their first principal
  component (no gradients)

Why not the library: importing pytorch-grad-cam pulls scikit-learn, scipy, OpenCV, matplotlib and ttach
(2.4 CPU-s on the first Grad-CAM of a server, more than the maps themselves), and its ``BaseCAM`` calls
``.backward()``, which writes ``.grad`` on every parameter of the shared model. Here the gradient is taken
with ``torch.autograd.grad`` with respect to the tapped activations only: no parameter gradient is
computed or stored. The maps equal grad-cam 1.5.7's within 1e-5 (tests/test_cam.py, a tiny model, every
method); grad-cam stays a test dependency for that comparison.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

EPS = 1e-7  # pytorch-grad-cam's min-max normalisation epsilon (a flat map stays far below 1)
PLUS_PLUS_EPS = 1e-6  # Grad-CAM++'s denominator epsilon (pytorch-grad-cam's value)


def gradcam(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM: channels weighted by their spatially averaged gradient."""
    weights = grads.mean(dim=(2, 3))  # (B, C)
    return (weights[:, :, None, None] * activations).sum(1)  # (B, h, w)


def hirescam(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """HiResCAM: gradient times activation, element-wise, summed over channels."""
    return (grads * activations).sum(1)  # (B, h, w)


def gradcam_plus_plus(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ (eq. 19 of the paper, with pytorch-grad-cam's epsilon and zero-gradient rule)."""
    g2 = grads**2
    g3 = g2 * grads
    sum_a = activations.sum(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
    aij = g2 / (2 * g2 + sum_a * g3 + PLUS_PLUS_EPS)
    aij = torch.where(grads != 0, aij, torch.zeros_like(aij))
    weights = (grads.clamp(min=0) * aij).sum(dim=(2, 3))  # (B, C)
    return (weights[:, :, None, None] * activations).sum(1)  # (B, h, w)


def layercam(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """LayerCAM: positive gradients times activations, summed over channels."""
    return (grads.clamp(min=0) * activations).sum(1)  # (B, h, w)


def eigencam(activations: torch.Tensor, grads: torch.Tensor | None = None) -> torch.Tensor:
    """EigenCAM: projection of the centred (h*w, C) activations on their first right singular vector.

    numpy's SVD on the same float32 matrix as pytorch-grad-cam: the sign of a singular vector is
    arbitrary, and only the same LAPACK call on the same numbers gives the library's sign.
    """
    a = activations.detach().cpu().numpy().copy()  # (B, C, h, w)
    a[np.isnan(a)] = 0
    maps = []
    for act in a:
        x = act.reshape(act.shape[0], -1).T  # (h*w, C)
        x = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(x, full_matrices=True)
        maps.append((x @ vt[0, :]).reshape(act.shape[1:]))  # (h, w)
    return torch.from_numpy(np.float32(maps))


#: method name -> raw map function (activations, gradients) -> (B, h, w)
CAM_FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "gradcam": gradcam,
    "gradcam++": gradcam_plus_plus,
    "hirescam": hirescam,
    "layercam": layercam,
    "eigencam": eigencam,
}
USES_GRADIENTS: dict[str, bool] = {m: m != "eigencam" for m in CAM_FUNCTIONS}


def normalise(maps: torch.Tensor) -> torch.Tensor:
    """Per map: subtract the minimum, divide by ``EPS + max`` (pytorch-grad-cam's ``scale_cam_image``)."""
    flat = maps.flatten(1)
    lo = flat.min(1).values[:, None, None]
    shifted = maps - lo
    return shifted / (EPS + shifted.flatten(1).max(1).values[:, None, None])


def class_activation_map(
    method: str, activations: torch.Tensor, grads: torch.Tensor | None, size: tuple[int, int]
) -> np.ndarray:
    """(B, H, W) float32 maps in [0, 1] at ``size`` (the model input's H, W).

    Same steps as pytorch-grad-cam for one target layer: ReLU of the raw map, normalise, bilinear resize
    (half-pixel centres, as OpenCV's ``INTER_LINEAR``), ReLU, normalise again.
    """
    if method not in CAM_FUNCTIONS:
        raise ValueError(f"Unknown CAM method {method!r}; choose one of {sorted(CAM_FUNCTIONS)}")
    with torch.no_grad():
        a = activations.detach().float()
        g = None if grads is None else grads.detach().float()
        raw = CAM_FUNCTIONS[method](a, g).float().clamp(min=0)  # (B, h, w)
        maps = normalise(raw)
        if tuple(maps.shape[-2:]) != tuple(size):
            maps = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        return normalise(maps.clamp(min=0)).cpu().numpy().astype(np.float32)


def activations_and_gradients(
    model: torch.nn.Module,
    tap: torch.nn.Module,
    images: torch.Tensor,
    target: Callable[[torch.Tensor], torch.Tensor],
    need_gradients: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Run ``model(images)``; return (the output of ``tap``, d(target score)/d(that output) or None,
    the model's output).

    The hook sits on ``tap`` for the forward pass only and is removed before returning. The gradient is
    taken with ``torch.autograd.grad`` w.r.t. the tapped tensor alone: parameters get no ``.grad``.
    """
    captured: list[torch.Tensor] = []
    handle = tap.register_forward_hook(lambda _m, _inp, out: captured.append(out))
    try:
        output = model(images)
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError("The CAM layer was not reached by the forward pass")
    activations = captured[-1]
    grads = None
    if need_gradients:
        score = target(output).sum()  # one score per sample, summed: the samples do not interact
        (grads,) = torch.autograd.grad(score, activations, allow_unused=True)
        if grads is None:  # the score does not depend on the layer at all: a flat map
            grads = torch.zeros_like(activations)
    return activations, grads, output
