"""World points -> pixels of a rendered view, with MuJoCo's camera model and LIBERO's image convention.

Why here: the episode videos draw the planner's waypoints (end-effector positions in the world frame, the frame of
``robot0_eef_pos``) into the agentview image, and they must land where the simulator renders those positions.

The model is MuJoCo's pinhole camera (what robosuite's ``camera_utils`` computes): the camera looks along its
body's -z axis with +y up, the vertical field of view is ``cam_fovy``, the principal point is the image centre and
pixels are square. In the upright image (row 0 at the top) a camera-frame point ``(x, y, z)`` with ``z < 0``
lands at ``u = W / 2 + f x / -z``, ``v = H / 2 - f y / -z`` with ``f = (H / 2) / tan(fovy / 2)``. robosuite reads
frames bottom row first (OpenGL), i.e. the upright image flipped vertically, and LIBERO's convention then rotates
that by 180 degrees (``img[::-1, ::-1]``): the two row flips cancel and the columns end up mirrored, so a view pixel
is ``(x, y) = (W - u, v)``.
"""

from __future__ import annotations

import numpy as np

NEAR = 1e-6  # metres in front of the camera below which a point cannot be projected


def project_to_view(sim, camera: str, points, height: int, width: int) -> np.ndarray:
    """Pixel coordinates ``float64 [N, 2]`` = (x right, y down) of world ``points [N, 3]`` in the LIBERO-convention
    view of ``camera`` rendered at ``height x width``; pixel (r, c) covers ``[c, c + 1) x [r, r + 1)``.

    Rows are NaN for points at or behind the camera plane (no image position exists). Points outside the field
    of view get coordinates outside ``[0, W) x [0, H)``; the caller decides whether to clip.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must have shape [N, 3] (world x, y, z), got {pts.shape}")
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height} x {width}")
    cam_id = sim.model.camera_name2id(camera)
    position = np.asarray(sim.data.cam_xpos[cam_id], dtype=np.float64)
    rotation = np.asarray(sim.data.cam_xmat[cam_id], dtype=np.float64).reshape(3, 3)  # columns: camera axes
    local = (pts - position) @ rotation  # camera frame: x right, y up, looking along -z
    depth = -local[:, 2]
    focal = 0.5 * height / np.tan(np.deg2rad(float(sim.model.cam_fovy[cam_id])) / 2.0)
    out = np.full((len(pts), 2), np.nan)
    front = depth > NEAR
    u = width / 2.0 + focal * local[front, 0] / depth[front]
    v = height / 2.0 - focal * local[front, 1] / depth[front]
    out[front, 0] = width - u
    out[front, 1] = v
    return out
