"""A small ray-casting renderer of what the UMI gripper's GoPro sees.

The camera rides on the gripper (UMI is hand-held: the GoPro sits above the fingers and looks
along the approach axis), so the table, the cup and the target spot move through the image while
the two fingers stay at the bottom, opening and closing with the gripper width. The lens is an
equidistant fisheye (r = f * theta, ~150 degrees across, a black ring outside the image circle),
like the GoPro Max Lens Mod UMI uses. Frames for the replay buffer are the centre square of the
same camera at 224 x 224 with the gripper's mount masked black, as UMI's pipeline crops and masks.

Everything is numpy on a pixel grid: one ray per pixel, analytic hits on the table plane and on a
capped cylinder, Lambert shading, a little seeded sensor noise. Pure functions of their inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from robolake.umi.episode import Episode, FloatArray, matrix_from_quat

ImageArray = npt.NDArray[np.uint8]
Float32Array = npt.NDArray[np.float32]

HFOV_HALF_RAD = math.radians(75.0)  # half the horizontal field of the 4:3 fisheye frame
IMAGE_CIRCLE_RAD = math.radians(84.0)  # rays further off-axis fall outside the lens circle
# Camera in the tool frame: image-down = tool x, image-right = -tool y, optical axis = tool z;
# 6 cm "above" (image-up) and 16 cm behind the fingertips.
_R_TOOL_CAM = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
_CAM_IN_TOOL = np.array([-0.06, 0.0, -0.16])
_LIGHT = np.array([0.35, -0.25, 1.0]) / np.linalg.norm([0.35, -0.25, 1.0])
_TABLE_X = (0.12, 0.95)
_TABLE_Y = (-0.50, 0.50)


@dataclass(frozen=True)
class FisheyeIntrinsics:
    """Equidistant fisheye: pixel radius = focal_px * angle off the optical axis."""

    width: int
    height: int
    focal_px: float
    cx: float
    cy: float

    @classmethod
    def for_video(cls, width: int, height: int) -> FisheyeIntrinsics:
        return cls(width, height, (width / 2) / HFOV_HALF_RAD, (width - 1) / 2, (height - 1) / 2)

    def center_square(self, size: int) -> FisheyeIntrinsics:
        """The centre ``height x height`` crop resized to ``size`` (UMI's 224 x 224 observation)."""
        scale = size / self.height
        return FisheyeIntrinsics(size, size, self.focal_px * scale, (size - 1) / 2, (size - 1) / 2)

    def as_dict(self) -> dict[str, object]:
        return {
            "model": "equidistant_fisheye",
            "width": self.width,
            "height": self.height,
            "fx": round(self.focal_px, 4),
            "fy": round(self.focal_px, 4),
            "cx": self.cx,
            "cy": self.cy,
            "distortion_k1_k4": [0.0, 0.0, 0.0, 0.0],
        }


_NOISE_PAD = 61
# A smooth random texture (values 0..1) for wood grain, indexed by quantised table coordinates.
_GRAIN_RAW = np.random.default_rng(20240101).random(1024 + 24)
_GRAIN_LUT = np.convolve(_GRAIN_RAW, np.ones(25) / 25, mode="valid").astype(np.float32)
_GRAIN_LUT = (_GRAIN_LUT - _GRAIN_LUT.min()) / (_GRAIN_LUT.max() - _GRAIN_LUT.min())


@lru_cache(maxsize=4)
def _noise_bank(height: int, width: int) -> Float32Array:
    """Sensor noise (sigma 2 levels) larger than a frame; each frame takes a seeded window of it."""
    rng = np.random.default_rng(np.random.SeedSequence(entropy=0x5EED, spawn_key=(height, width)))
    return rng.normal(0.0, 2.0, (height + _NOISE_PAD, width + _NOISE_PAD, 3)).astype(np.float32)


@lru_cache(maxsize=8)
def _camera_rays(intr: FisheyeIntrinsics) -> tuple[Float32Array, npt.NDArray[np.bool_]]:
    """Unit ray directions (H*W, 3) in the camera frame and the inside-lens-circle mask."""
    v, u = np.mgrid[0 : intr.height, 0 : intr.width].astype(np.float64)
    x, y = (u - intr.cx) / intr.focal_px, (v - intr.cy) / intr.focal_px
    theta = np.hypot(x, y)
    phi = np.arctan2(y, x)
    rays = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], axis=-1)
    return rays.reshape(-1, 3).astype(np.float32), (theta <= IMAGE_CIRCLE_RAD).reshape(-1)


def _project(intr: FisheyeIntrinsics, p_cam: FloatArray) -> tuple[float, float]:
    theta = math.atan2(math.hypot(p_cam[0], p_cam[1]), p_cam[2])
    phi = math.atan2(p_cam[1], p_cam[0])
    r = intr.focal_px * theta
    return intr.cx + r * math.cos(phi), intr.cy + r * math.sin(phi)


def _fill_polygon(img: Float32Array, poly: list[tuple[float, float]], rgb: tuple[float, float, float]) -> None:
    """Fill a convex polygon (pixel coordinates, either winding) on an (H, W, 3) image."""
    h, w = img.shape[:2]
    xs, ys = [p[0] for p in poly], [p[1] for p in poly]
    x0, x1 = max(0, int(min(xs))), min(w, math.ceil(max(xs)) + 1)
    y0, y1 = max(0, int(min(ys))), min(h, math.ceil(max(ys)) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    v, u = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    sides = []
    for (ax, ay), (bx, by) in zip(poly, poly[1:] + poly[:1], strict=True):
        sides.append((bx - ax) * (v - ay) - (by - ay) * (u - ax))
    stacked = np.stack(sides)
    inside = np.all(stacked >= 0, axis=0) | np.all(stacked <= 0, axis=0)
    img[y0:y1, x0:x1][inside] = rgb


def camera_pose(eef_pos: FloatArray, eef_quat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """World position (3,) and rotation (3, 3) of the gripper camera for one tool pose."""
    r_tool = matrix_from_quat(eef_quat)
    return eef_pos + r_tool @ _CAM_IN_TOOL, r_tool @ _R_TOOL_CAM


def render_frame(
    episode: Episode,
    frame: int,
    intr: FisheyeIntrinsics,
    *,
    noise_seed: int,
    mask_gripper: bool = False,
) -> ImageArray:
    """Render frame ``frame`` of ``episode`` as an (H, W, 3) uint8 RGB image."""
    scene = episode.scene
    origin, r_cam = camera_pose(episode.eef_pos_m[frame], episode.eef_quat_xyzw[frame])
    rays_cam, in_lens = _camera_rays(intr)
    d = rays_cam @ r_cam.T.astype(np.float32)
    n = d.shape[0]

    # Background: a wall whose brightness falls off with height, seen where rays miss the table.
    color = np.empty((n, 3), dtype=np.float32)
    color[:] = (0.62, 0.66, 0.70)
    color *= (0.85 + 0.15 * d[:, 2:3]).astype(np.float32)
    depth = np.full(n, np.inf, dtype=np.float32)

    # Table plane z = 0, textured only where a ray meets it.
    hit = np.flatnonzero(d[:, 2] < -1e-4)
    dh = d[hit]
    t_plane = np.float32(-origin[2]) / dh[:, 2]
    keep = t_plane < 8.0
    hit, dh, t_plane = hit[keep], dh[keep], t_plane[keep]
    hx = np.float32(origin[0]) + t_plane * dh[:, 0]
    hy = np.float32(origin[1]) + t_plane * dh[:, 1]
    on_table = (hx > _TABLE_X[0]) & (hx < _TABLE_X[1]) & (hy > _TABLE_Y[0]) & (hy < _TABLE_Y[1])
    grain = _GRAIN_LUT[(hx * 160.0 + 40.0 * _GRAIN_LUT[(hy * 90.0).astype(np.int32) & 1023]).astype(np.int32) & 1023]
    checker = (((hx * 4.0 + 64.0).astype(np.int32) + (hy * 4.0 + 64.0).astype(np.int32)) & 1).astype(np.float32)
    shade = np.where(on_table, 0.94 + 0.06 * grain, 0.32 + 0.08 * checker)
    palette = (
        np.array([(1.0, 1.0, 1.0), scene.table_rgb], dtype=np.float32) / np.array([1.0, 255.0], np.float32)[:, None]
    )
    plane_rgb = palette[on_table.view(np.uint8)] * shade[:, None]
    tx, ty = scene.target_xy_m
    target_r = np.hypot(hx - tx, hy - ty)
    plate = on_table & (target_r < 0.065)
    plane_rgb[plate] = np.where((target_r[plate] > 0.055)[:, None], (0.25, 0.25, 0.28), (0.88, 0.88, 0.86))
    obj = episode.object_pos_m[frame]
    lift = max(0.0, 1.0 - obj[2] * 5.0)
    if lift > 0:  # a soft shadow under the cup, fading as it is lifted
        shadow_r = np.hypot(hx - (obj[0] + 0.015), hy - (obj[1] - 0.01)) - scene.object_radius_m
        plane_rgb *= (1.0 - 0.35 * lift * np.clip(1.0 - shadow_r / 0.03, 0.0, 1.0))[:, None]
    color[hit] = plane_rgb
    depth[hit] = t_plane

    _draw_cup(color, depth, origin, d, obj, episode)

    img = color.reshape(intr.height, intr.width, 3) * np.float32(255.0)
    _draw_fingers(img, intr, float(episode.gripper_width_m[frame]), mask_gripper)
    rng = np.random.default_rng(np.random.SeedSequence(entropy=noise_seed, spawn_key=(episode.index, frame)))
    noise = _noise_bank(intr.height, intr.width)
    dy, dx = (int(v) for v in rng.integers(0, _NOISE_PAD, 2))
    img += noise[dy : dy + intr.height, dx : dx + intr.width]
    img[~in_lens.reshape(intr.height, intr.width)] = 0.0
    out: ImageArray = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return out


def _draw_cup(
    color: Float32Array, depth: Float32Array, origin: FloatArray, d: Float32Array, obj: FloatArray, episode: Episode
) -> None:
    scene = episode.scene
    r, h = scene.object_radius_m, scene.object_height_m
    # Only rays inside the cone around the cup's bounding sphere can hit it.
    centre = obj + np.array([0.0, 0.0, h / 2]) - origin
    dist = float(np.linalg.norm(centre))
    bound = math.hypot(r, h / 2) * 1.05
    if dist <= bound:
        idx = np.arange(d.shape[0])
    else:
        idx = np.flatnonzero(d @ (centre / dist).astype(np.float32) > math.cos(math.asin(bound / dist)))
    if idx.size == 0:
        return
    dv = d[idx]
    ox, oy = np.float32(origin[0] - obj[0]), np.float32(origin[1] - obj[1])
    a = dv[:, 0] ** 2 + dv[:, 1] ** 2
    b = 2.0 * (dv[:, 0] * ox + dv[:, 1] * oy)
    disc = b * b - 4 * a * (ox * ox + oy * oy - r * r)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = np.where(disc > 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.inf)
        z_side = np.float32(origin[2]) + t_side * dv[:, 2]
        side = (t_side > 0) & (z_side >= obj[2]) & (z_side <= obj[2] + h) & (t_side < depth[idx])
        t_top = np.where(np.abs(dv[:, 2]) > 1e-9, np.float32(obj[2] + h - origin[2]) / dv[:, 2], np.inf)
    top_r = np.hypot(ox + t_top * dv[:, 0], oy + t_top * dv[:, 1])
    top = (t_top > 0) & (top_r <= r) & (t_top < depth[idx]) & ~(side & (t_side < t_top))
    base = np.array(scene.object_rgb, dtype=np.float32) / 255.0
    if side.any():
        nx = (ox + t_side[side] * dv[side, 0]) / r
        ny = (oy + t_side[side] * dv[side, 1]) / r
        lambert = np.clip(nx * _LIGHT[0] + ny * _LIGHT[1], 0.0, 1.0)
        color[idx[side]] = base[None, :] * (0.45 + 0.55 * lambert)[:, None]
        depth[idx[side]] = t_side[side]
    if top.any():
        rim = top_r[top] > 0.85 * r  # the cup is open: a lit rim around a dark inside
        color[idx[top]] = np.where(rim[:, None], base * 1.1, base * 0.35)
        depth[idx[top]] = t_top[top]


def _draw_fingers(img: Float32Array, intr: FisheyeIntrinsics, width_m: float, mask_gripper: bool) -> None:
    """Two soft fingers from the bottom edge to their tips; their tips project the real width."""
    h = intr.height
    for sign in (-1.0, 1.0):
        tip_cam = np.array([sign * width_m / 2, -_CAM_IN_TOOL[0], -_CAM_IN_TOOL[2]])
        tu, tv = _project(intr, tip_cam)
        root_u = intr.cx + sign * (0.30 * intr.width + 0.5 * (tu - intr.cx))
        pad = 0.035 * intr.width
        poly = [(tu - pad, tv), (tu + pad, tv), (root_u + 2.2 * pad, h + 1.0), (root_u - 2.2 * pad, h + 1.0)]
        _fill_polygon(img, poly, (46.0, 46.0, 51.0))
        _fill_polygon(
            img,
            [(tu - pad, tv), (tu + pad, tv), (tu + pad, tv + 0.6 * pad), (tu - pad, tv + 0.6 * pad)],
            (217.0, 115.0, 38.0),
        )
    if mask_gripper:
        # UMI masks the gripper mount (not the fingers) black before training.
        w = intr.width
        _fill_polygon(
            img, [(0.36 * w, h + 1.0), (0.40 * w, 0.86 * h), (0.60 * w, 0.86 * h), (0.64 * w, h + 1.0)], (0.0, 0.0, 0.0)
        )
