"""One synthetic UMI demonstration: a pick-and-place made of minimum-jerk segments.

An episode is a pure function of ``(seed, index, n_frames)``. Positions are in metres in a
table frame (z up, the robot base at the origin, the table top at z = 0); orientations are the
tool frame (z = approach direction, x = finger opening direction) as xyzw quaternions and as
rotation vectors. Each phase moves between two waypoints with the minimum-jerk profile
``s(u) = 10u^3 - 15u^4 + 6u^5`` (Flash & Hogan 1985), so velocity and acceleration are zero at
every waypoint and jerk stays bounded. The tool points 25-35 degrees off vertical, as a person
holds the UMI gripper: the rotation angle then stays well below pi and rotation vectors never
flip sign mid-episode. Joint angles are those of a UR5e solving damped-least-squares IK for the
same tool pose, warm-started frame to frame, so the joint path is as smooth as the tool path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

FPS = 60000.0 / 1001.0  # GoPro "59.94" rate used by UMI
GRIPPER_MAX_WIDTH_M = 0.085
GRIPPER_OPEN_WIDTH_M = 0.080
GRIP_STIFFNESS_N_PER_M = 9000.0  # soft TPU fingers: ~2 mm squeeze -> ~18 N
TCP_OFFSET_M = 0.20  # flange to fingertip centre along the tool z axis
PHASES = ("approach", "descend", "grasp", "lift", "transport", "place", "release", "retreat")
_PHASE_WEIGHTS = (0.20, 0.12, 0.10, 0.12, 0.18, 0.10, 0.07, 0.11)

# UR5e Denavit-Hartenberg parameters (Universal Robots' published table), metres / radians.
UR5E_JOINT_NAMES = ("shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2", "wrist_3")
_DH_D = (0.1625, 0.0, 0.0, 0.1333, 0.0997, 0.0996)
_DH_A = (0.0, -0.425, -0.3922, 0.0, 0.0, 0.0)
_DH_ALPHA = (math.pi / 2, 0.0, 0.0, math.pi / 2, -math.pi / 2, 0.0)
# An elbow-up, wrist-down solution for the reference pose below; every episode's first IK solve
# walks to its start pose from here in small steps, so the same arm configuration is always kept.
_Q_REFERENCE = np.array([2.751, -1.866, 2.277, -2.472, -1.379, 1.228])
_REFERENCE_POS = np.array([0.50, 0.0, 0.20])
_REFERENCE_YAW_TILT = (0.0, math.radians(30.0))


@dataclass(frozen=True)
class Phase:
    """A named span of frames ``[start_frame, end_frame)``."""

    name: str
    start_frame: int
    end_frame: int


@dataclass(frozen=True)
class Scene:
    """What stands on the table: one cylinder (a cup) and the spot where it goes."""

    object_xy_m: tuple[float, float]
    object_radius_m: float
    object_height_m: float
    object_rgb: tuple[int, int, int]
    target_xy_m: tuple[float, float]
    table_rgb: tuple[int, int, int]


@dataclass(frozen=True, eq=False)
class Episode:
    """The sampled signals of one demonstration; every array has ``n_frames`` rows."""

    index: int
    timestamps_s: FloatArray  # (T,)
    eef_pos_m: FloatArray  # (T, 3)
    eef_quat_xyzw: FloatArray  # (T, 4)
    eef_rotvec: FloatArray  # (T, 3)
    joint_positions_rad: FloatArray  # (T, 6)
    gripper_width_m: FloatArray  # (T,)
    grip_force_n: FloatArray  # (T,)
    object_pos_m: FloatArray  # (T, 3) bottom centre of the cup
    phases: tuple[Phase, ...]
    scene: Scene

    @property
    def n_frames(self) -> int:
        return int(self.timestamps_s.shape[0])

    @property
    def duration_s(self) -> float:
        return self.n_frames / FPS

    @property
    def demo_start_pose(self) -> FloatArray:
        """Tool pose at the first frame as (x, y, z, rx, ry, rz), as UMI stores it."""
        return np.concatenate([self.eef_pos_m[0], self.eef_rotvec[0]])

    @property
    def demo_end_pose(self) -> FloatArray:
        return np.concatenate([self.eef_pos_m[-1], self.eef_rotvec[-1]])


# ---------------------------------------------------------------- rotations (xyzw quaternions)


def rot_z(angle: float) -> FloatArray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_y(angle: float) -> FloatArray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def quat_from_matrix(m: FloatArray) -> FloatArray:
    """Shepperd's method: stable for every rotation, returns w >= 0."""
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    else:
        i = int(np.argmax([m[0, 0], m[1, 1], m[2, 2]]))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
        q[i] = 0.25 * s
        q[j] = (m[j, i] + m[i, j]) / s
        q[k] = (m[k, i] + m[i, k]) / s
    out = np.array(q)
    return -out if out[3] < 0 else out


def matrix_from_quat(q: FloatArray) -> FloatArray:
    """Rotation matrices of xyzw quaternions; works on (4,) and (N, 4)."""
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    m = np.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - z * w),
            2 * (x * z + y * w),
            2 * (x * y + z * w),
            1 - 2 * (x * x + z * z),
            2 * (y * z - x * w),
            2 * (x * z - y * w),
            2 * (y * z + x * w),
            1 - 2 * (x * x + y * y),
        ],
        axis=-1,
    )
    return m.reshape((*q.shape[:-1], 3, 3))


def rotvec_from_quat(q: FloatArray) -> FloatArray:
    """Rotation vectors (angle <= pi) of xyzw quaternions; works on (4,) and (N, 4)."""
    q = np.where(q[..., 3:4] < 0, -q, q)
    vec_norm = np.linalg.norm(q[..., :3], axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(vec_norm, q[..., 3:4])
    # angle / sin(angle/2) -> 2 as the angle -> 0; avoid 0/0 there.
    scale = np.where(vec_norm > 1e-12, angle / np.maximum(vec_norm, 1e-12), 2.0)
    return np.asarray(q[..., :3] * scale, dtype=np.float64)


def slerp(q0: FloatArray, q1: FloatArray, s: FloatArray) -> FloatArray:
    """Spherical interpolation from q0 to q1 at fractions ``s`` (N,) -> (N, 4)."""
    dot = float(np.dot(q0, q1))
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        out = q0[None, :] + s[:, None] * (q1 - q0)[None, :]
        return np.asarray(out / np.linalg.norm(out, axis=1, keepdims=True))
    theta = math.acos(dot)
    w0 = np.sin((1.0 - s) * theta) / math.sin(theta)
    w1 = np.sin(s * theta) / math.sin(theta)
    return np.asarray(w0[:, None] * q0[None, :] + w1[:, None] * q1[None, :])


def minimum_jerk(n: int) -> FloatArray:
    """Fractions 0..1 of a minimum-jerk move sampled at ``n`` frames (first 0, last 1)."""
    if n <= 1:
        return np.ones(max(n, 0))
    u = np.linspace(0.0, 1.0, n)
    return np.asarray(10 * u**3 - 15 * u**4 + 6 * u**5)


# ---------------------------------------------------------------- UR5e kinematics


def _dh_frames(q: FloatArray) -> list[FloatArray]:
    """Base-to-joint transforms T_0..T_6 (T_0 = identity) for joint angles ``q``."""
    frames = [np.eye(4)]
    t = np.eye(4)
    for i in range(6):
        ct, st = math.cos(q[i]), math.sin(q[i])
        ca, sa = math.cos(_DH_ALPHA[i]), math.sin(_DH_ALPHA[i])
        a = np.array(
            [
                [ct, -st * ca, st * sa, _DH_A[i] * ct],
                [st, ct * ca, -ct * sa, _DH_A[i] * st],
                [0.0, sa, ca, _DH_D[i]],
                [0.0, 0.0, 0.0, 1.0],
            ]
        )
        t = t @ a
        frames.append(t)
    return frames


def forward_kinematics(q: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Tool-centre-point position (3,) and rotation matrix (3, 3) of a UR5e at ``q``."""
    flange = _dh_frames(q)[-1]
    rot = flange[:3, :3]
    return flange[:3, 3] + TCP_OFFSET_M * rot[:, 2], rot


def _ik_step(q: FloatArray, pos: FloatArray, rot: FloatArray, damping: float) -> tuple[FloatArray, float]:
    frames = _dh_frames(q)
    tool_rot = frames[-1][:3, :3]
    tcp = frames[-1][:3, 3] + TCP_OFFSET_M * tool_rot[:, 2]
    jac = np.zeros((6, 6))
    for i in range(6):
        z, o = frames[i][:3, 2], frames[i][:3, 3]
        jac[:3, i] = np.cross(z, tcp - o)
        jac[3:, i] = z
    err = np.concatenate([pos - tcp, rotvec_from_quat(quat_from_matrix(rot @ tool_rot.T))])
    dq = jac.T @ np.linalg.solve(jac @ jac.T + damping**2 * np.eye(6), err)
    return q + dq, float(np.linalg.norm(err))


def inverse_kinematics(pos: FloatArray, rot: FloatArray, q_start: FloatArray, max_iter: int = 200) -> FloatArray:
    """Damped-least-squares IK from ``q_start``; raises ArithmeticError if it does not converge."""
    q = q_start.copy()
    for _ in range(max_iter):
        q, err = _ik_step(q, pos, rot, damping=0.02)
        if err < 1e-7:
            return q
    raise ArithmeticError(f"UR5e IK did not converge for tool position {pos.tolist()!r} (residual {err:.3g})")


# ---------------------------------------------------------------- synthesis


def episode_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of one episode: independent of every other episode and of run order."""
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(index,)))


def _tool_rotation(yaw: float, tilt: float) -> FloatArray:
    # Ry(pi - tilt) points the tool z down and forward (+x); Rz(yaw) turns it about vertical.
    return rot_z(yaw) @ rot_y(math.pi - tilt)


def _split_frames(n_frames: int, rng: np.random.Generator) -> tuple[Phase, ...]:
    weights = np.array(_PHASE_WEIGHTS) * rng.uniform(0.85, 1.15, len(_PHASE_WEIGHTS))
    bounds = np.round(np.cumsum(weights / weights.sum()) * n_frames).astype(int)
    starts = [0, *bounds[:-1].tolist()]
    return tuple(Phase(name, int(s), int(e)) for name, s, e in zip(PHASES, starts, bounds.tolist(), strict=True))


def _sample_scene(rng: np.random.Generator) -> Scene:
    obj = (rng.uniform(0.48, 0.64), rng.uniform(-0.18, 0.18))
    while True:
        target = (rng.uniform(0.48, 0.64), rng.uniform(-0.20, 0.20))
        if math.dist(obj, target) > 0.14:
            break
    palette = ((200, 40, 40), (40, 90, 200), (230, 180, 30), (40, 160, 70), (150, 60, 170))
    tables = ((170, 130, 90), (190, 185, 175), (120, 90, 60))
    return Scene(
        object_xy_m=(round(obj[0], 4), round(obj[1], 4)),
        object_radius_m=round(rng.uniform(0.026, 0.036), 4),
        object_height_m=round(rng.uniform(0.08, 0.12), 4),
        object_rgb=palette[int(rng.integers(len(palette)))],
        target_xy_m=(round(target[0], 4), round(target[1], 4)),
        table_rgb=tables[int(rng.integers(len(tables)))],
    )


def synthesize_episode(seed: int, index: int, n_frames: int) -> Episode:
    """Sample one pick-and-place demonstration of ``n_frames`` frames at 59.94 Hz."""
    if n_frames < 2 * len(PHASES):
        raise ValueError(f"n_frames={n_frames!r} is too short: an episode needs >= {2 * len(PHASES)} frames")
    rng = episode_rng(seed, index)
    scene = _sample_scene(rng)
    phases = _split_frames(n_frames, rng)
    ox, oy = scene.object_xy_m
    tx, ty = scene.target_xy_m
    grasp_z = scene.object_height_m * 0.55
    lift_z = grasp_z + rng.uniform(0.10, 0.14)
    tilt = rng.uniform(math.radians(25), math.radians(35))

    def pose(x: float, y: float, z: float, yaw_deg: float) -> tuple[FloatArray, FloatArray]:
        return np.array([x, y, z]), quat_from_matrix(_tool_rotation(math.radians(yaw_deg), tilt))

    # Waypoints at the end of each phase (the start of the first is `home`); the tcp approaches
    # the cup from the -x side because the tool leans forward along +x.
    back = 0.5 * scene.object_radius_m
    yaw_obj = math.degrees(math.atan2(oy, ox)) + rng.uniform(-8, 8)
    yaw_tgt = math.degrees(math.atan2(ty, tx)) + rng.uniform(-8, 8)
    home = pose(rng.uniform(0.40, 0.45), rng.uniform(-0.08, 0.08), rng.uniform(0.26, 0.32), rng.uniform(-10, 10))
    pre_grasp = pose(ox - back - 0.03, oy, grasp_z + 0.10, yaw_obj)
    grasp = pose(ox - back, oy, grasp_z, yaw_obj)
    lifted = pose(ox - back, oy, lift_z, yaw_obj)
    pre_place = pose(tx - back, ty, lift_z, yaw_tgt)
    placed = pose(tx - back, ty, grasp_z, yaw_tgt)
    retreat = pose(tx - back - 0.06, ty, lift_z, yaw_tgt + rng.uniform(-6, 6))
    ends = (pre_grasp, grasp, grasp, lifted, pre_place, placed, placed, retreat)

    pos = np.zeros((n_frames, 3))
    quat = np.zeros((n_frames, 4))
    start = home
    for phase, end in zip(phases, ends, strict=True):
        s = minimum_jerk(phase.end_frame - phase.start_frame)
        pos[phase.start_frame : phase.end_frame] = start[0] + s[:, None] * (end[0] - start[0])
        quat[phase.start_frame : phase.end_frame] = slerp(start[1], end[1], s)
        start = end

    width, force = _gripper_signals(phases, scene, n_frames, rng)
    object_pos = _object_path(phases, scene, pos, n_frames)
    joints = _joint_path(pos, quat)
    return Episode(
        index=index,
        timestamps_s=np.arange(n_frames) / FPS,
        eef_pos_m=pos,
        eef_quat_xyzw=quat,
        eef_rotvec=rotvec_from_quat(quat),
        joint_positions_rad=joints,
        gripper_width_m=width,
        grip_force_n=force,
        object_pos_m=object_pos,
        phases=phases,
        scene=scene,
    )


def _phase(phases: tuple[Phase, ...], name: str) -> Phase:
    return next(p for p in phases if p.name == name)


def _gripper_signals(
    phases: tuple[Phase, ...], scene: Scene, n_frames: int, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """Width (m) opens on approach, closes past the cup's diameter, reopens on release."""
    diameter = 2.0 * scene.object_radius_m
    squeezed = diameter - rng.uniform(0.0015, 0.0025)  # soft fingers give a little
    start_width = rng.uniform(0.03, 0.05)
    open_width = GRIPPER_OPEN_WIDTH_M + rng.uniform(-0.003, 0.003)
    width = np.full(n_frames, open_width)
    approach, grasp, release = _phase(phases, "approach"), _phase(phases, "grasp"), _phase(phases, "release")
    n_open = max(2, (approach.end_frame - approach.start_frame) * 2 // 3)
    width[:n_open] = start_width + minimum_jerk(n_open) * (open_width - start_width)
    n_close = max(2, (grasp.end_frame - grasp.start_frame) * 3 // 4)
    close = grasp.start_frame + n_close
    width[grasp.start_frame : close] = open_width + minimum_jerk(n_close) * (squeezed - open_width)
    width[close : release.start_frame] = squeezed
    n_release = release.end_frame - release.start_frame
    width[release.start_frame : release.end_frame] = squeezed + minimum_jerk(n_release) * (open_width - squeezed)
    # Contact force: the fingers' compliance times the squeeze while the cup is between them,
    # plus a little sensor noise.
    holding = np.zeros(n_frames, dtype=bool)
    holding[grasp.start_frame : release.end_frame] = True
    force = GRIP_STIFFNESS_N_PER_M * np.clip(diameter - width, 0.0, None) * holding
    force = np.where(force > 0, force + rng.normal(0.0, 0.08, n_frames), 0.0)
    return np.clip(width, 0.0, GRIPPER_MAX_WIDTH_M), np.clip(force, 0.0, None)


def _object_path(phases: tuple[Phase, ...], scene: Scene, tcp: FloatArray, n_frames: int) -> FloatArray:
    """The cup rests until the grasp closes, rides with the tcp, and rests where it is released."""
    grasp, release = _phase(phases, "grasp"), _phase(phases, "release")
    rest = np.array([*scene.object_xy_m, 0.0])
    held_from = grasp.end_frame
    offset = tcp[held_from - 1] - rest
    path = np.tile(rest, (n_frames, 1))
    path[held_from : release.start_frame] = tcp[held_from : release.start_frame] - offset
    placed = tcp[release.start_frame] - offset
    placed[2] = 0.0
    path[release.start_frame :] = placed
    return path


def _start_joints(pos: FloatArray, rot: FloatArray) -> FloatArray:
    """IK for the first frame by continuation from the reference pose (robust where a cold start is not)."""
    ref_rot = _tool_rotation(*_REFERENCE_YAW_TILT)
    q = inverse_kinematics(_REFERENCE_POS, ref_rot, _Q_REFERENCE)
    q_ref, q_goal = quat_from_matrix(ref_rot), quat_from_matrix(rot)
    steps = np.linspace(0.0, 1.0, 11)[1:]
    for s, quat in zip(steps, slerp(q_ref, q_goal, steps), strict=True):
        q = inverse_kinematics(_REFERENCE_POS + s * (pos - _REFERENCE_POS), matrix_from_quat(quat), q)
    return q


def _joint_path(pos: FloatArray, quat: FloatArray) -> FloatArray:
    rots = matrix_from_quat(quat)
    joints = np.zeros((pos.shape[0], 6))
    q = _start_joints(pos[0], rots[0])
    for i in range(pos.shape[0]):
        q = inverse_kinematics(pos[i], rots[i], q)
        joints[i] = q
    return joints
