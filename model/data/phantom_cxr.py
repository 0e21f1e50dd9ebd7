"""Frontal (PA) chest X-ray phantom: anatomy, findings and their masks in one geometry.

The picture is a projection: an attenuation map ``A`` (soft tissue ~1, aerated
lung much less, bone more) is summed from anatomy and findings, then exposed as
``1 - exp(-k A)`` so that bone and soft tissue are bright and air is dark, like a
radiograph. Each finding adds to ``A`` through a soft indicator of the same
inside field whose ``> 0`` set is its ground-truth mask.

Patient coordinates (see ``phantom_shapes``): ``u`` left-right, ``v`` top-bottom;
``x = s * u`` is the lateral distance for side ``s`` (-1 = patient right = image
left, +1 = patient left). One patient unit is ``mm_per_unit`` millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from model.data.phantom_shapes import Pose, ellipse_g, noise_field, ridges, segment_g, soft
from model.types import CaseTruth, Finding

SIDES = {"right": -1, "left": 1}  # radiological convention: patient right on the image left
ZONES_H = {"apical": (0.05, 0.2), "upper": (0.1, 0.36), "middle": (0.36, 0.6), "lower": (0.6, 0.86)}


@dataclass(frozen=True)
class Hemithorax:
    """One pleural cavity: an ellipse cut by the diaphragm dome and the midline."""

    s: int  # -1 patient right (image left), +1 patient left
    xc: float  # ellipse centre (lateral distance)
    vc: float
    ax: float  # semi-axes
    ay: float
    dome_v: float  # top of the dome
    dome_x: float  # lateral distance of the dome top
    dome_c: float  # dome curvature, chosen so the dome meets the wall at the costophrenic angle
    cp: tuple[float, float]  # costophrenic angle (u, v): the lowest point of the cavity

    @property
    def lateral(self) -> float:
        return self.xc + self.ax

    @property
    def apex_v(self) -> float:
        return self.vc - self.ay

    def dome(self, x):
        k = np.where(x > self.dome_x, 1.0, 0.3).astype(np.float32)  # flatter towards the heart
        return np.float32(self.dome_v) + np.float32(self.dome_c) * k * (x - np.float32(self.dome_x)) ** 2

    def g(self, u, v):
        """Inside field of the cavity."""
        x = u * np.float32(self.s)
        g = ellipse_g(x, v, self.xc, self.vc, self.ax, self.ay)
        return np.minimum(np.minimum(g, self.dome(x) - v), x - np.float32(0.04))

    def zone_v(self, zone: str) -> tuple[float, float]:
        lo, hi = ZONES_H.get(zone, (0.15, 0.85))
        span = self.cp[1] - self.apex_v
        return self.apex_v + lo * span, self.apex_v + hi * span


def _hemithorax(s: int, rng: np.random.Generator, lift: float) -> Hemithorax:
    xc, ax = 0.36 + rng.normal(0, 0.012), 0.36 + rng.normal(0, 0.01)
    vc, ay = -0.1 + rng.normal(0, 0.015), 0.62 + rng.normal(0, 0.015)
    dome_v = (0.22 if s < 0 else 0.28) + rng.normal(0, 0.015) - lift
    dome_x = 0.22
    k = 0.78  # the dome meets the lateral wall this far down the ellipse
    cp_x, cp_v = xc + ax * np.sqrt(1 - k * k), vc + k * ay - lift
    if cp_v < dome_v + 0.05:
        cp_v = dome_v + 0.05
    dome_c = (cp_v - dome_v) / (cp_x - dome_x) ** 2
    return Hemithorax(s, xc, vc, ax, ay, dome_v, dome_x, dome_c, (s * cp_x, cp_v))


@dataclass(frozen=True)
class Heart:
    """Rotated ellipse whose horizontal extent is exactly ``ratio`` x thoracic width."""

    cu: float
    cv: float
    a: float
    b: float
    angle: float

    def g(self, u, v):
        return ellipse_g(u, v, self.cu, self.cv, self.a, self.b, self.angle)


def _heart(ratio: float, thorax_width: float, dome_v: float, rng: np.random.Generator) -> Heart:
    width = ratio * thorax_width
    right = width * rng.uniform(0.28, 0.36)  # part right of the midline (image left)
    angle, q = rng.uniform(0.35, 0.6), rng.uniform(0.72, 0.8)
    e = width / 2  # half extent along u of the rotated ellipse: sqrt(a^2 cos^2 + b^2 sin^2)
    a = e / np.sqrt(np.cos(angle) ** 2 + (q * np.sin(angle)) ** 2)
    b = q * a
    ev = np.sqrt((a * np.sin(angle)) ** 2 + (b * np.cos(angle)) ** 2)
    return Heart(-right + e, dome_v + 0.05 - ev, a, b, angle)


def _mediastinum_g(u, v, heart: Heart):
    upper = np.float32(0.095) - np.abs(u - np.float32(0.005))
    upper = np.minimum(upper, np.float32(heart.cv) - v)
    knob = ellipse_g(u, v, 0.1, -0.36, 0.06, 0.05)  # aortic knob
    return np.maximum(upper, knob)


def _place(rng, inside, side: int, th: Hemithorax, zone: str, radius: float) -> tuple[float, float]:
    """A centre in the zone whose disc of ``radius`` lies in the lung (``inside(u, v) > 0``)."""
    lo, hi = th.zone_v(zone)
    ang = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    for shrink, (vlo, vhi) in ((1.1, (lo, hi)), (1.1, th.zone_v("any")), (0.5, th.zone_v("any"))):
        x = rng.uniform(0.1, th.lateral, 96)
        vv = rng.uniform(vlo, vhi, 96)
        cu = side * x
        ru = cu[:, None] + shrink * radius * np.cos(ang)[None, :]
        rv = vv[:, None] + shrink * radius * np.sin(ang)[None, :]
        ok = (inside(ru, rv) > 0).all(axis=1) & (inside(cu, vv) > 0)
        if ok.any():
            i = int(np.argmax(ok))
            return float(cu[i]), float(vv[i])
    return float(side * th.xc), float((lo + hi) / 2)


def render_cxr(truth: CaseTruth, rng: np.random.Generator, size: int):
    """-> (image, masks, anatomy, pixel_spacing, geometry) for a chest X-ray truth."""
    f32 = np.float32
    findings: dict[str, Finding] = {f.name: f for f in truth.findings}
    pose = Pose(rng.normal(0, 0.035), rng.uniform(0.93, 1.05), (rng.normal(0, 0.02), rng.normal(0.02, 0.02)))
    mm_per_unit = float(rng.uniform(190, 215)) * (0.95 if truth.context.sex == "F" else 1.0)
    u, v = pose.grid(size)
    px = pose.units_per_pixel(size)  # patient units per pixel
    eps = 1.2 * px

    # -- anatomy -----------------------------------------------------------------------------
    atel = findings.get("atelectasis")
    lift = {s: 0.0 for s in (-1, 1)}
    if atel is not None and atel.character == "segmental":
        lift[SIDES[atel.side]] = 0.035  # volume loss raises the hemidiaphragm
    th = {s: _hemithorax(s, rng, lift[s]) for s in (-1, 1)}
    thorax_width = th[-1].lateral + th[1].lateral
    cm = findings.get("cardiomegaly")
    ratio = cm.ratio if cm is not None and cm.ratio else float(rng.uniform(0.39, 0.47))
    heart = _heart(ratio, thorax_width, th[1].dome_v, rng)

    cav_g = {s: th[s].g(u, v) for s in (-1, 1)}
    cav = {s: soft(cav_g[s], eps) for s in (-1, 1)}
    heart_g = heart.g(u, v)
    heart_s = soft(heart_g, eps)

    med_g = _mediastinum_g(u, v, heart)
    med_s = soft(med_g, eps * 2)
    lung_grid = {s: np.minimum(np.minimum(cav_g[s], -heart_g), -med_g) for s in (-1, 1)}

    def lung_inside(uu, vv, s):  # aerated lung field of one side (no findings), any array shape
        if uu is u:
            return lung_grid[s]
        g = np.minimum(th[s].g(uu, vv), -heart.g(uu, vv))
        return np.minimum(g, -_mediastinum_g(uu, vv, heart))

    # body: neck, shoulders, chest wall; projected thickness falls off towards the edge
    bw = f32(0.22) + f32(0.74) / (1 + np.exp(-(v + f32(0.86)) / f32(0.03)))
    bw = bw + f32(0.12) * np.exp(-(((v + f32(0.72)) / f32(0.1)) ** 2))  # shoulders
    body = np.sqrt(np.clip(1 - (u / bw) ** 2, 0, 1)) ** f32(0.5)
    A = body * f32(1.0)
    for s in (-1, 1):
        A += 0.35 * soft(ellipse_g(u, v, s * 0.93, -0.74, 0.11, 0.12), eps)  # humeral heads
        if truth.context.sex == "F":
            A += 0.16 * soft(ellipse_g(u, v, s * 0.45, 0.32, 0.32, 0.2), 0.06)  # breast shadows
    # aerated lung takes most of the attenuation away; mediastinum and heart lie in front of it
    deep = np.clip(np.maximum(cav_g[-1], cav_g[1]) * f32(1 / 0.08), 0, 1)  # lungs darken away from walls
    air = (cav[-1] + cav[1]) * (0.7 + 0.3 * deep) * (1 - 0.92 * med_s) * (1 - 0.93 * heart_s)
    # lung markings: vessels branching from the hila, fading to the periphery
    hila = [(-0.15, -0.1), (0.16, -0.15)]
    d_hil = np.minimum(
        np.hypot(u - f32(hila[0][0]), v - f32(hila[0][1])), np.hypot(u - f32(hila[1][0]), v - f32(hila[1][1]))
    )
    near = np.exp(-d_hil / f32(0.3))
    vessels = ridges(noise_field(rng, size, 12), 0.12) * (0.35 + 1.3 * near) + 0.6 * ridges(
        noise_field(rng, size, 28), 0.1
    ) * (0.2 + near)
    hilar = sum(soft(ellipse_g(u, v, hu, hv, 0.07, 0.09), 0.06) for hu, hv in hila)
    vessel_w = np.ones_like(u)

    masks: dict[str, np.ndarray] = {}
    if cm is not None:
        masks["cardiomegaly"] = heart_g > 0  # the enlarged cardiac silhouette
    extra = np.zeros_like(u)  # finding densities

    # -- findings ------------------------------------------------------------------------------
    if "pneumothorax" in findings:
        f = findings["pneumothorax"]
        s, t = SIDES.get(f.side, -1), th[SIDES.get(f.side, -1)]
        pu, pv = s * 0.24, t.cp[1] - 0.02  # the lung collapses towards its base and hilum
        depth = (f.size_mm or 20) / mm_per_unit
        shrink = max(0.45, 1 - depth / np.hypot(t.xc - 0.24, t.apex_v - pv))
        col_g = t.g(pu + (u - pu) / shrink, pv + (v - pv) / shrink) * f32(shrink)
        ptx_g = np.minimum(cav_g[s], -col_g)
        masks["pneumothorax"] = ptx_g > 0
        ptx = soft(ptx_g, eps)
        vessel_w *= 1 - ptx
        air += 0.3 * ptx
        extra += 0.22 * np.exp(-((col_g / f32(1.5 * px)) ** 2)) * cav[s] * (v < pv)  # visceral pleural line

    if "pleural_effusion" in findings:
        f = findings["pleural_effusion"]
        sides = (-1, 1) if f.side == "bilateral" else (SIDES.get(f.side, -1),)
        depth = (f.size_mm or 30) / mm_per_unit
        mask = np.zeros(u.shape, bool)
        for s in sides:
            t = th[s]
            x = u * s
            lat = np.clip((x - 0.1) / (t.lateral - 0.1), 0, 1)
            meniscus = t.cp[1] - depth * (0.35 + 0.65 * lat**2)  # fluid climbs the lateral wall
            eff_g = np.minimum(cav_g[s], v - meniscus)
            mask |= eff_g > 0
            fill = np.clip((v - meniscus) / f32(0.06) + 0.3, 0, 1) * cav[s]
            air *= 1 - 0.92 * fill
            vessel_w *= 1 - fill
        masks["pleural_effusion"] = mask

    if "nodule" in findings:
        f = findings["nodule"]
        s = SIDES.get(f.side, -1)
        r = (f.size_mm or 12) / 2 / mm_per_unit
        cu, cv = _place(rng, lambda a, b: lung_inside(a, b, s), s, th[s], f.zone or "middle", r)
        d, ang = np.hypot(u - f32(cu), v - f32(cv)), np.arctan2(v - f32(cv), u - f32(cu))
        if f.character == "spiculated":
            rr = r * (
                0.86 + 0.08 * np.cos(5 * ang + rng.uniform(0, 6)) + 0.06 * np.cos(3 * ang + rng.uniform(0, 6))
            )
            spikes = ridges(np.sin(rng.integers(7, 12) * ang + rng.uniform(0, 6)), 0.12)
            extra += 0.3 * spikes * soft(r * 1.6 - d, eps) * (d > rr)
            g = rr - d
        else:
            g = f32(r) - d
        masks["nodule"] = g > 0
        dens = 0.35 + 0.35 * min(1.0, r / 0.08) + (0.5 if f.character == "calcified" else 0.0)
        extra += dens * soft(g, eps) * (1.0 - 0.3 * (d / f32(r)) ** 2 if f.character != "calcified" else 1.0)

    if "consolidation" in findings:
        f = findings["consolidation"]
        s = SIDES.get(f.side, -1)
        t = th[s]
        lo, hi = t.zone_v(f.zone or "lower")
        ext = (f.size_mm or 60) / mm_per_unit
        cu, cv = s * (t.xc + rng.uniform(-0.05, 0.08)), (lo + hi) / 2
        blob = ellipse_g(u, v, cu, cv, ext * 0.6, ext * 0.45, rng.uniform(-0.4, 0.4)) / f32(0.5 * ext * 0.45)
        patchy = 0.45 * noise_field(rng, size, 22) + 0.3 * noise_field(rng, size, 44)
        g = np.minimum(blob + patchy - 0.1, lung_inside(u, v, s) / f32(px))
        masks["consolidation"] = g > 0
        dens = {"mild": 0.3, "moderate": 0.42, "severe": 0.55}[f.severity or "moderate"]
        c = soft(g, 0.6) * (0.75 + 0.25 * np.clip(blob, 0, 1))
        bronchograms = ridges(noise_field(rng, size, 16), 0.08) * (blob > 0.4)
        extra += dens * c * (1 - 0.35 * bronchograms)

    if "edema" in findings:
        f = findings["edema"]
        lung_all = np.maximum(lung_inside(u, v, -1), lung_inside(u, v, 1))
        bat = sum(
            np.exp(-(((u - f32(hu)) / f32(0.28)) ** 2) - ((v - f32(hv)) / f32(0.36)) ** 2) for hu, hv in hila
        )
        bat = bat * (0.85 + 0.3 * noise_field(rng, size, 10))
        mask = (bat > 0.45) & (lung_all > 0)
        haze = np.clip((bat - 0.25) / 0.4, 0, 1) * soft(lung_all, eps)
        sev = {"mild": 0.25, "moderate": 0.38, "severe": 0.52}[f.severity or "moderate"]
        extra += sev * haze
        if f.severity in ("moderate", "severe"):  # Kerley B lines: short horizontal septal lines at the bases
            for s in (-1, 1):
                t = th[s]
                band = (u * s > t.lateral - 0.1) & (v > t.zone_v("lower")[0]) & (lung_inside(u, v, s) > 0)
                lines = ridges(np.sin(v * f32(2 * np.pi / 0.03)), 0.35) * band
                extra += 0.12 * lines
                mask |= band
        masks["edema"] = mask

    if "atelectasis" in findings:
        f = findings["atelectasis"]
        s = SIDES.get(f.side, -1)
        t = th[s]
        lo, hi = t.zone_v(f.zone or "lower")
        inside = lung_inside(u, v, s)
        if f.character == "segmental":
            cu, cv = s * (t.xc + 0.05), hi - 0.06
            g = np.minimum(ellipse_g(u, v, cu, cv, 0.2, 0.07, s * 0.25), inside)
            dens = {"mild": 0.42, "moderate": 0.5, "severe": 0.6}[f.severity or "moderate"]
        else:  # plate-like: a thin band, roughly horizontal
            cu, cv = _place(rng, lambda a, b: lung_inside(a, b, s), s, t, f.zone or "lower", 0.1)
            half, tilt = rng.uniform(0.1, 0.16), rng.normal(0, 0.15)
            p0 = (cu - half * np.cos(tilt), cv - half * np.sin(tilt))
            p1 = (cu + half * np.cos(tilt), cv + half * np.sin(tilt))
            width = (
                rng.uniform(0.012, 0.02)
                * {"mild": 1.0, "moderate": 1.25, "severe": 1.5}[f.severity or "mild"]
            )
            g = np.minimum(segment_g(u, v, p0, p1, width), inside)
            dens = 0.45
        masks["atelectasis"] = g > 0
        extra += dens * soft(g, eps)

    # -- bones (in front of everything) ----------------------------------------------------------
    ax_ = np.abs(u)
    ribs = np.zeros_like(u)
    in_chest = (ax_ > 0.05) & (ax_ < np.maximum(th[-1].lateral, th[1].lateral) + 0.08)
    # posterior ribs: rise a little from the spine, then arc down laterally; brighter cortex at the edges
    t_post = (v + 0.12 * ax_ - 0.55 * ax_**2 + f32(0.84)) / f32(0.112)
    k = np.floor(t_post)
    fr = (t_post - k) / f32(0.34)
    post = (fr < 1) & (k >= 0) & (k <= 9) & in_chest
    ribs += np.where(post, 0.07 + 0.1 * (2 * fr - 1) ** 8, 0)
    t_ant = (v + 0.5 * (0.8 - ax_) + f32(0.62)) / f32(0.14)  # anterior ribs: faint, running down medially
    fa = t_ant - np.floor(t_ant)
    ribs += np.where((fa < 0.28) & (ax_ > 0.3) & in_chest & (t_ant > 0) & (t_ant < 6), 0.045, 0)
    spine = soft(f32(0.055) - ax_, eps) * (0.2 + 0.06 * np.cos(v * f32(2 * np.pi / 0.095)))
    clav = np.zeros_like(u)
    for s in (-1, 1):
        for p0, p1 in (((0.06, -0.71), (0.3, -0.75)), ((0.3, -0.75), (0.56, -0.84))):
            cg = segment_g(u, v, (s * p0[0], p0[1]), (s * p1[0], p1[1]), 0.027)
            clav = np.maximum(clav, soft(cg, eps))
    trachea = soft(f32(0.028) - np.abs(u), eps) * (v < -0.3)
    bubble = soft(ellipse_g(u, v, 0.3, th[1].dome_v + 0.1, 0.09, 0.05), eps) * (v > th[1].dome(u) + 0.02)

    A += (
        -0.78 * air + 0.16 * vessels * vessel_w * air + 0.2 * hilar * (cav[-1] + cav[1])
        + ribs * body + 0.3 * clav + spine - 0.25 * trachea - 0.3 * bubble + extra
    )  # fmt: skip

    # -- acquisition -----------------------------------------------------------------------------
    k_exp = f32(rng.uniform(1.1, 1.6))
    img = (1 - np.exp(-k_exp * np.clip(A, 0, None))) / (1 - np.exp(-k_exp * f32(1.7)))
    img = np.clip(img, 0, 1) ** f32(rng.uniform(0.85, 1.25))
    img = img * f32(rng.uniform(0.88, 1.0)) + f32(rng.uniform(0.0, 0.05))
    img *= 1 + f32(rng.normal(0, 0.03)) * u  # exposure gradient (heel effect)
    img = img + rng.normal(0, rng.uniform(0.006, 0.02), img.shape).astype(np.float32)
    img = gaussian_filter(img, sigma=rng.uniform(0.5, 1.0) * size / 256, mode="nearest")
    img = np.clip(img, 0, 1).astype(np.float32)

    anatomy = {
        "heart": heart_g > 0,
        "thorax": (cav_g[-1] > 0) | (cav_g[1] > 0),
        "lungs": (lung_grid[-1] > 0) | (lung_grid[1] > 0),
    }
    spacing = mm_per_unit * px
    geometry = {
        "rot": float(pose.rot),
        "scale": float(pose.scale),
        "ctr": float(ratio),
        "mm_per_unit": mm_per_unit,
    }
    for s, name in ((-1, "right"), (1, "left")):
        r, c = pose.to_pixel(*th[s].cp, size)
        geometry[f"cp_{name}_row"], geometry[f"cp_{name}_col"] = float(r), float(c)
    return img, masks, anatomy, (spacing, spacing), geometry
