"""Axial chest CT phantom (one slice at the level of the heart), shown in a lung window.

Built in Hounsfield units (air -1000, lung ~ -850, fat -100, soft tissue ~ 40,
bone 400-1000), blurred by a small point-spread function with correlated noise,
then windowed (centre ~ -600, width ~ 1500) to [0, 1]. Patient coordinates as in
``phantom_shapes``: ``u`` left-right (patient right on the image left), ``v``
anterior (top) to posterior (bottom).

Tumour location: ``side`` picks the lung; ``zone`` places it in the slice from
front to back (upper -> anterior third, middle -> central, lower -> posterior
third, where the lower lobes lie at this level).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from model.data.phantom_shapes import Pose, ellipse_g, noise_field, ridges, segment_g, soft
from model.types import CaseTruth

SIDES = {"right": -1, "left": 1}
ZONE_FRACTION = {"upper": (0.0, 0.36), "middle": (0.32, 0.68), "lower": (0.64, 1.0)}


class _Chest:
    """The analytic anatomy of one slice; ``lung_g`` also answers for arbitrary points."""

    def __init__(self, rng: np.random.Generator):
        self.body = (rng.uniform(0.8, 0.88), rng.uniform(0.55, 0.62))  # semi-axes
        self.fat = rng.uniform(0.03, 0.09)  # subcutaneous fat thickness
        self.cavity = (self.body[0] - self.fat - 0.1, self.body[1] - self.fat - 0.09)
        self.lungs = {
            -1: (-0.33 + rng.normal(0, 0.01), 0.0, 0.29 + rng.normal(0, 0.01), 0.4),
            1: (0.34 + rng.normal(0, 0.01), 0.02, 0.27 + rng.normal(0, 0.01), 0.4),
        }
        self.heart = (0.1 + rng.normal(0, 0.02), -0.13, rng.uniform(0.22, 0.27), rng.uniform(0.17, 0.2), 0.5)
        self.aorta = (0.11, 0.22, 0.055)  # descending aorta, left of the spine
        self.spine = (0.0, 0.36, 0.1)  # vertebral body

    def lung_g(self, u, v, s: int):
        cu, cv, au, av = self.lungs[s]
        g = ellipse_g(u, v, cu, cv, au, av)
        g = np.minimum(g, ellipse_g(u, v, 0.0, 0.0, *self.cavity))
        hu, hv, ha, hb, hang = self.heart
        g = np.minimum(g, -ellipse_g(u, v, hu, hv, ha + 0.03, hb + 0.03, hang))
        g = np.minimum(g, -ellipse_g(u, v, self.aorta[0], self.aorta[1], 0.085, 0.085))
        g = np.minimum(g, -ellipse_g(u, v, self.spine[0], self.spine[1] + 0.02, 0.16, 0.16))
        return np.minimum(g, np.abs(u) - np.float32(0.07))


def _place_tumour(rng, chest: _Chest, s: int, zone: str, reach: float) -> tuple[float, float]:
    """A centre whose disc of radius ``reach`` lies inside the lung, in the zone when possible."""
    cu, cv, au, av = chest.lungs[s]
    ang = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    for z in (zone, "any"):
        lo, hi = ZONE_FRACTION.get(z, (0.0, 1.0))
        uu = rng.uniform(cu - au, cu + au, 128)
        vv = cv - av + 2 * av * rng.uniform(lo, hi, 128)
        ru = uu[:, None] + reach * np.cos(ang)[None, :]
        rv = vv[:, None] + reach * np.sin(ang)[None, :]
        ok = (chest.lung_g(ru, rv, s) > 0).all(axis=1) & (chest.lung_g(uu, vv, s) > 0)
        if ok.any():
            i = int(np.argmax(ok))
            return float(uu[i]), float(vv[i])
    return float(cu), float(cv)  # the widest point; the mask is still clipped to the lung


def render_ct(truth: CaseTruth, rng: np.random.Generator, size: int):
    """-> (image, masks, anatomy, pixel_spacing, geometry) for a CT truth."""
    f32 = np.float32
    pose = Pose(rng.normal(0, 0.03), rng.uniform(0.95, 1.08), (rng.normal(0, 0.02), rng.normal(-0.04, 0.02)))
    mm_per_unit = float(rng.uniform(185, 215))
    u, v = pose.grid(size)
    px = pose.units_per_pixel(size)
    eps = 1.0 * px
    chest = _Chest(rng)

    hu = np.full(u.shape, -1000.0, np.float32)

    def paint(alpha, value, win=None):
        h = hu if win is None else hu[win]
        h += alpha * (np.float32(value) - h)

    def window(cu: float, cv: float, reach: float):
        """Pixel slices around a patient point: draw small parts locally (speed)."""
        r, c = pose.to_pixel(cu, cv, size)
        h = reach / px + 3
        return (
            slice(max(0, int(r - h)), max(0, int(r + h) + 2)),
            slice(max(0, int(c - h)), max(0, int(c + h) + 2)),
        )

    # table under the patient: two thin curved plates
    tv = chest.body[1] + 0.04
    for dv, val in ((0.0, 150.0), (0.07, 0.0)):
        paint(soft(f32(0.012) - np.abs(v - f32(tv + dv) - 0.05 * u**2), eps) * (np.abs(u) < 0.95), val)
    body_g = np.minimum(ellipse_g(u, v, 0.0, 0.0, *chest.body), f32(tv - 0.005) - v)
    paint(soft(body_g, eps), 45.0)  # skin and muscle
    bu, bv = chest.body
    paint(
        soft(ellipse_g(u, v, 0.0, 0.0, bu - 0.012, bv - 0.012) - 0.0, eps) * soft(body_g, eps), -105.0
    )  # fat
    paint(soft(ellipse_g(u, v, 0.0, 0.0, bu - chest.fat, bv - chest.fat), eps), 50.0)  # chest wall muscle
    for s in (-1, 1):  # a fat plane between pectoral and chest wall, and the scapulae posteriorly
        paint(0.6 * soft(0.006 - np.abs(ellipse_g(u, v, s * 0.35, -0.35, 0.32, 0.12)), eps), -90.0)
        paint(soft(segment_g(u, v, (s * 0.42, 0.42), (s * 0.66, 0.22), 0.014), eps), 650.0)
    cav = soft(ellipse_g(u, v, 0.0, 0.0, *chest.cavity), eps)
    paint(cav, 35.0)  # mediastinum and pleura before the lungs go in

    # ribs: oval bone sections around the cavity, with a bright cortex
    ca, cb = chest.cavity
    for i, t in enumerate(np.linspace(0.15, np.pi - 0.15, 6)):
        for s in (-1, 1):
            ru, rv = s * (ca + 0.045) * np.cos(t - 0.1), -(cb + 0.04) * np.sin(t - 0.1) * (1 if i < 4 else -1)
            w = window(ru, rv, 0.06)
            rg = ellipse_g(
                u[w], v[w], ru, rv, 0.05, 0.018, np.arctan2(-cb * np.cos(t - 0.1), -s * ca * np.sin(t - 0.1))
            )
            paint(soft(rg, eps), 900.0, w)
            paint(soft(rg - 0.006, eps), 250.0, w)

    # lungs with a dependent density gradient, vessels and a few bronchi
    lung_g = {s: chest.lung_g(u, v, s) for s in (-1, 1)}
    lungs = soft(lung_g[-1], eps) + soft(lung_g[1], eps)
    lung_hu = -860.0 + 90.0 * np.clip((v + 0.4) / 0.8, 0, 1) + 12.0 * noise_field(rng, size, 40)
    paint(lungs, lung_hu)
    hila = [(-0.16, 0.02), (0.2, 0.0)]
    d_hil = np.minimum(np.hypot(u - f32(-0.16), v - f32(0.02)), np.hypot(u - f32(0.2), v))
    near = np.exp(-d_hil / f32(0.25))
    gate = np.clip(noise_field(rng, size, 10) + 0.3, 0, 1)  # breaks long ridges into branches
    vessels = ridges(noise_field(rng, size, 20), 0.07 + 0.06 * near) * (0.2 + 1.2 * near) * gate
    dots = np.clip(noise_field(rng, size, 64) - 1.8, 0, None) * (0.6 + near)  # vessels seen end-on
    paint(lungs * np.clip(vessels + 2.0 * dots, 0, 1), 30.0)
    for s, (hu_, hv_) in zip((-1, 1), hila, strict=True):  # main bronchi: air rings next to the hila
        w = window(hu_ + s * 0.04, hv_ - 0.05, 0.05)
        ring = ellipse_g(u[w], v[w], hu_ + s * 0.04, hv_ - 0.05, 0.035, 0.03)
        paint(soft(ring + 0.004, eps), 20.0, w)
        paint(soft(ring - 0.002, eps), -980.0, w)

    # mediastinum: heart (with pericardial fat), descending aorta, oesophagus, spine
    hx, hy, ha, hb, hang = chest.heart
    paint(soft(ellipse_g(u, v, hx, hy, ha + 0.015, hb + 0.015, hang), eps), -90.0)
    paint(soft(ellipse_g(u, v, hx, hy, ha, hb, hang), eps), 40.0)
    paint(soft(ellipse_g(u, v, *chest.aorta[:2], chest.aorta[2], chest.aorta[2]), eps), 45.0)
    w = window(0.02, 0.21, 0.04)
    paint(soft(ellipse_g(u[w], v[w], 0.02, 0.21, 0.025, 0.02), eps), -600.0, w)  # air in the oesophagus
    sx, sy, sr = chest.spine
    w = window(sx, sy + 0.1, 0.25)
    uw, vw = u[w], v[w]
    paint(soft(ellipse_g(uw, vw, sx, sy, sr, sr * 0.9), eps), 900.0, w)  # cortex
    paint(soft(ellipse_g(uw, vw, sx, sy, sr - 0.012, sr * 0.9 - 0.012), eps), 280.0, w)  # cancellous bone
    arch = np.minimum(
        ellipse_g(uw, vw, 0.0, sy + 0.15, 0.075, 0.075), -ellipse_g(uw, vw, 0.0, sy + 0.15, 0.05, 0.05)
    )
    paint(soft(np.minimum(arch, vw - f32(sy + 0.1)), eps), 750.0, w)  # lamina
    paint(soft(segment_g(uw, vw, (0.0, sy + 0.22), (0.0, sy + 0.3), 0.018), eps), 750.0, w)  # spinous process
    for s in (-1, 1):
        paint(soft(segment_g(uw, vw, (s * 0.05, sy + 0.1), (s * 0.15, sy + 0.07), 0.02), eps), 700.0, w)

    # -- tumour --------------------------------------------------------------------------------
    masks: dict[str, np.ndarray] = {}
    tumour = next((f for f in truth.findings if f.name == "tumour"), None)
    if tumour is not None and truth.tumour in ("benign", "malignant"):
        s = SIDES.get(tumour.side, -1)
        r = (tumour.size_mm or 15) / 2 / mm_per_unit  # longest radius
        malignant = truth.tumour == "malignant"
        cu, cv = _place_tumour(rng, chest, s, tumour.zone or "middle", r * (1.5 if malignant else 1.15))
        d, ang = np.hypot(u - f32(cu), v - f32(cv)), np.arctan2(v - f32(cv), u - f32(cu))
        if malignant:  # lobulated outline, longest radius r; spicules radiate into the lung
            wob = sum(rng.uniform(0.04, 0.1) * np.cos(k * ang + rng.uniform(0, 6.3)) for k in (2, 3, 5))
            rr = f32(r) * (1 + wob) / (1 + 0.24)
            n_sp = int(rng.integers(8, 15)) if tumour.character == "spiculated" else 4
            spikes = ridges(np.sin(n_sp * ang / 2 + f32(rng.uniform(0, 6.3))), 0.05 + 0.02 * d / f32(r))
            reach = rr * (1 + rng.uniform(0.25, 0.5))
            paint(spikes * soft(reach - d, 2 * eps) * lungs * (d > rr * 0.9), 20.0)
            g = rr - d
            value = 35.0
        else:
            g = f32(r) - d
            value = 650.0 if tumour.character == "calcified" else 25.0
        g = np.minimum(g, lung_g[s] + f32(0.5 * px))
        masks["tumour"] = g > 0
        paint(soft(g, eps), value)

    # -- acquisition: PSF blur with correlated noise, then the lung window -------------------------
    hu += rng.normal(0, rng.uniform(12, 30), hu.shape).astype(np.float32)
    hu = gaussian_filter(hu, sigma=rng.uniform(0.6, 0.9) * size / 256, mode="nearest")
    centre, width = rng.uniform(-630, -570), rng.uniform(1400, 1600)
    img = np.clip((hu - np.float32(centre - width / 2)) / np.float32(width), 0, 1) ** np.float32(1.3)
    img = img.astype(np.float32)

    anatomy = {"lungs": (lung_g[-1] > 0) | (lung_g[1] > 0), "body": body_g > 0}
    spacing = mm_per_unit * px
    geometry = {"rot": float(pose.rot), "scale": float(pose.scale), "mm_per_unit": mm_per_unit,
                "window_centre": float(centre), "window_width": float(width)}  # fmt: skip
    return img, masks, anatomy, (spacing, spacing), geometry
