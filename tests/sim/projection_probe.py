"""The camera-model checks' simulator side, run in a spawned child (rendering must not share the pytest process
with TensorFlow, see conftest.py): project known world points with ``env.project_points`` and measure the same
things in the rendered agentview image."""

from __future__ import annotations

import numpy as np

SIZE = 64


def _gripper_box(sim, image: np.ndarray) -> list[int]:
    """Bounding box (x0, x1, y0, y1) of the agentview pixels that change when the gripper's geoms are hidden."""
    from wp_policy.sim.conventions import rotate_180

    frame = rotate_180(sim.render(camera_name="agentview", height=SIZE, width=SIZE))
    assert np.array_equal(frame, image), "a direct render must equal the observation"
    gripper = [i for i in range(sim.model.ngeom) if (sim.model.geom_id2name(i) or "").startswith("gripper0_")]
    rgba = sim.model.geom_rgba.copy()
    sim.model.geom_rgba[gripper, 3] = 0.0
    hidden = rotate_180(sim.render(camera_name="agentview", height=SIZE, width=SIZE))
    sim.model.geom_rgba[:] = rgba
    rows, cols = np.nonzero(np.abs(frame.astype(int) - hidden).sum(axis=-1) > 30)
    assert rows.size > 20, "hiding the gripper changed no pixels"
    return [int(cols.min()), int(cols.max()) + 1, int(rows.min()), int(rows.max()) + 1]


def probe(kind: str) -> dict:
    if kind == "robosuite":
        return _robosuite()
    return _libero()


def _robosuite() -> dict:
    from wp_policy.sim.robosuite_env import RobosuiteEnv

    with RobosuiteEnv(("Lift",), image_size=SIZE) as env:
        try:
            env.project_points(np.zeros((1, 3)))
            before = ""
        except RuntimeError as exc:
            before = str(exc)
        obs = env.reset("Lift", seed=1)
        sim = env._envs["Lift"].sim
        flat = env.flat_state()
        flat[1 + sim.model.get_joint_qpos_addr("cube_joint0")[0] + 1] = 0.25  # cube to y = 0.25: off-centre
        obs = env.reset("Lift", init_state=flat)
        cube = env.privileged_state()["cube_pos"]
        eef = obs.state[:3].astype(np.float64)
        xy = env.project_points(np.stack([eef, cube, eef + [5.0, 0.0, 0.0]]))  # 5 m towards (behind) the camera
        image = obs.images["primary"]
        cx, cy = np.floor(xy[1]).astype(int)
        return {"size": image.shape[:2], "eef_xy": xy[0].tolist(), "cube_xy": xy[1].tolist(),
                "behind_xy": xy[2].tolist(), "cube_pixel": image[cy, cx].tolist(),
                "mirrored_pixel": image[cy, SIZE - 1 - cx].tolist(), "gripper_box": _gripper_box(sim, image),
                "before_reset": before}


def _libero() -> dict:
    from wp_policy.sim.libero_env import LiberoEnv

    with LiberoEnv("libero_object", image_size=SIZE) as env:
        task = env.tasks[0].name
        obs = env.reset(task, init_state=env.init_states(task)[0])
        xy = env.project_points(obs.state[None, :3].astype(np.float64))
        image = obs.images["primary"]
        return {"size": image.shape[:2], "eef_xy": xy[0].tolist(), "gripper_box": _gripper_box(env.scene.sim, image)}
