"""A scripted expert for real LIBERO pick-and-place tasks (libero_object, libero_spatial and alike).

The task's BDDL goal names what to move and where: ``(On akita_black_bowl_1 plate_1)`` or
``(In alphabet_soup_1 basket_1_contain_region)``. The expert reads the scene's ground truth from LIBERO's simulator
(:attr:`wp_policy.sim.libero_env.LiberoEnv.scene`): the end effector from the observation, the object's body
position (what LIBERO's success check uses) and the world-frame corners of its collision geoms' bounding boxes
(top, bottom, footprint and long axis), and the target's body position or region site. It acts like the stand-in
experts (:class:`wp_training.sim_demos.scripted_expert.ScriptedExpert`: same servo, parameters and action
convention) through approach -> descend -> close -> lift -> carry -> lower -> release -> retreat, every target recomputed from the
current state each step; if the object leaves the hand it grasps again.

Grasps are top-down. An object whose narrow side fits the open gripper is taken around it (fingers across the narrow
side, tall objects near their top); a wider one (LIBERO's bowls) by its rim, one finger inside, on the side facing
the hand. The held object is carried with its bottom clear of the target's top, lowered until it rests on the target
(``On``) or just above the region's floor (``In``), and released.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from wp_policy.sim.conventions import EEF_POS_KEY, EEF_QUAT_KEY, GRIPPER_CLOSE, GRIPPER_OPEN
from wp_policy.sim.libero_env import LiberoEnv
from wp_training.sim_demos.scripted_expert import (
    DEMO_SEED,
    Command,
    ExpertParams,
    ScriptedExpert,
    _quat_to_matrix,
    _wrap_pi,
    _yaw,
    run_expert_episode,
)

MAX_GRASP_WIDTH = 0.07  # widest narrow side taken around (the Panda opens to 0.08 m)
GRASP_DEPTH = 0.035  # tall objects are taken this far below their top
RIM_INSET = 0.015  # rim grasp: grasp point this far inside the object's outer edge
RIM_DEPTH = 0.03  # and this far below its top
ROUND_RATIO = 0.85  # footprints this close to round have no preferred yaw
HOLD_DRIFT = 0.05  # a held object's offset from the hand may drift this far before the grasp counts as lost
CARRY_CLEARANCE = 0.03  # the carried object's bottom stays this far above the target's top (plus lift_height / 2)
FUNNEL_SLOPE = 0.6  # while far from a target in xy, aim this much higher per metre of xy distance ...
FUNNEL_MAX = 0.12  # ... up to this much: arcs over clutter instead of sweeping through it
IN_DROP = 0.02  # ``In``: release with the object's bottom this far above the region's floor
ON_DROP = 0.005  # ``On``: aim the object's bottom this far above the target's top
STALL_STEPS, STALL_DROP = 4, 0.002  # a descent that drops less than this over that many steps has stalled
MAX_DOWN_STEPS = 40  # and one that takes longer gives up
OVERSHOOT = 0.02  # vertical moves aim this far past where they end, so the P servo does not crawl at the end
# OSC_POSE in LIBERO's scenes covers well under 5 cm per unit action per step: LIBERO experts move faster
GAIN_RANGE, MAX_SPEED_RANGE = (0.7, 1.1), (0.8, 1.0)


@dataclass(frozen=True)
class PickPlaceGoal:
    """A BDDL goal of one ``On``/``In`` predicate: move ``obj`` onto / into ``target``."""

    predicate: str  # "on" | "in"
    obj: str  # object to move (a body in the scene)
    target: str  # object or region site it must end on / in
    target_body: str  # the body that carries the target (the site's parent object, or the target itself)
    target_is_site: bool

    @classmethod
    def from_task_env(cls, task_env) -> PickPlaceGoal:
        goal = task_env.parsed_problem["goal_state"]
        if len(goal) != 1 or len(goal[0]) != 3 or goal[0][0].lower() not in ("on", "in"):
            raise ValueError(f"the LIBERO pick-and-place expert needs a goal of one (On obj target) or (In obj "
                             f"region) predicate; this task's goal is {goal}")
        predicate, obj, target = goal[0][0].lower(), goal[0][1], goal[0][2]
        if obj not in task_env.objects_dict:
            raise ValueError(f"goal object {obj!r} is not a movable object of the scene")
        sites = task_env.object_sites_dict
        if target in sites:
            return cls(predicate, obj, target, sites[target].parent_name, True)
        if target not in task_env.obj_body_id:
            raise ValueError(f"goal target {target!r} is neither an object nor a region site of the scene")
        return cls(predicate, obj, target, target, False)


def geom_box_corners(task_env, name: str) -> np.ndarray:
    """World-frame corners [8 * G, 3] of the bounding boxes of an object's G collision geoms."""
    model, data = task_env.sim.model._model, task_env.sim.data._data
    corners = []
    for geom in task_env.get_object(name).contact_geoms:
        gid = task_env.sim.model.geom_name2id(geom)
        centre, half = model.geom_aabb[gid, :3], model.geom_aabb[gid, 3:]
        rot = data.geom_xmat[gid].reshape(3, 3)
        for signs in itertools.product((-1.0, 1.0), repeat=3):
            corners.append(data.geom_xpos[gid] + rot @ (centre + np.array(signs) * half))
    if not corners:
        raise ValueError(f"object {name!r} has no collision geoms to measure")
    return np.array(corners)


def footprint(points: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """(centre xy, long-axis yaw, long width, narrow width) of points seen from above (principal axes)."""
    xy = points[:, :2]
    mean = xy.mean(axis=0)
    _, vecs = np.linalg.eigh(np.cov((xy - mean).T))
    major, minor = vecs[:, 1], vecs[:, 0]
    along, across = (xy - mean) @ major, (xy - mean) @ minor
    centre = mean + major * (along.max() + along.min()) / 2 + minor * (across.max() + across.min()) / 2
    return centre, math.atan2(major[1], major[0]), float(np.ptp(along)), float(np.ptp(across))


class LiberoPickPlaceExpert(ScriptedExpert):
    """Moves the goal's object onto / into the goal's target; :meth:`observe` reads the LIBERO scene."""

    def __init__(self, goal: PickPlaceGoal, params: ExpertParams, rng: np.random.Generator):
        self.goal = goal
        self._z_trace: list[float] = []  # eef heights of the current downward phase (stall detection)
        super().__init__(params, rng)

    def phases(self):
        return [
            ("approach", self._approach_object),
            ("descend", self._descend_object),
            ("close", self._close()),
            ("lift", self._lift),
            ("carry", self._carry),
            ("lower", self._lower),
            ("release", self._release),
            ("retreat", self._retreat),
        ]

    def observe(self, env: LiberoEnv) -> Mapping[str, np.ndarray]:
        task_env = env.scene.env
        raw = env.last_raw_obs
        points = geom_box_corners(task_env, self.goal.obj)
        centre, axis_yaw, long_width, narrow_width = footprint(points)
        target_points = geom_box_corners(task_env, self.goal.target_body)
        if self.goal.target_is_site:
            site = task_env.object_sites_dict[self.goal.target]
            target_pos = np.array(task_env.sim.data.get_site_xpos(self.goal.target), dtype=np.float64)
            floor = target_pos[2] - float(np.asarray(site.size)[2])
        else:
            target_pos = np.array(task_env.sim.data.body_xpos[task_env.obj_body_id[self.goal.target]])
            floor = float(target_points[:, 2].max())
        return {
            EEF_POS_KEY: np.array(raw[EEF_POS_KEY], dtype=np.float64),
            EEF_QUAT_KEY: np.array(raw[EEF_QUAT_KEY], dtype=np.float64),
            "object_pos": np.array(task_env.sim.data.body_xpos[task_env.obj_body_id[self.goal.obj]]),
            "object_centre": centre,
            "object_z": np.array([points[:, 2].min(), points[:, 2].max()]),  # bottom, top
            "object_axis": np.array([axis_yaw, long_width, narrow_width]),
            "target_pos": target_pos,
            "target_top": np.array([float(target_points[:, 2].max())]),  # what the carried object must clear
            "place_z": np.array([floor + (IN_DROP if self.goal.predicate == "in" else ON_DROP)]),  # its bottom's goal
        }

    def lost_grip(self, priv) -> bool:
        if self.phase not in ("lift", "carry", "lower"):
            return False
        offset = priv["object_pos"] - priv[EEF_POS_KEY]
        return bool(np.linalg.norm(offset - self._memory["grasp_offset"]) > HOLD_DRIFT)

    # -- grasp geometry ---------------------------------------------------------------------------------------------
    def _grasp(self, priv) -> tuple[np.ndarray, float]:
        """(eef grasp point, eef yaw) for the object as it is now."""
        eef_yaw = _yaw(_quat_to_matrix(priv[EEF_QUAT_KEY]))
        axis_yaw, long_width, narrow_width = priv["object_axis"]
        bottom, top = priv["object_z"]
        centre = priv["object_centre"]
        dx, dy = self.params.grasp_xy
        if narrow_width <= MAX_GRASP_WIDTH:
            depth = min(GRASP_DEPTH, (top - bottom) / 2)
            point = np.array([centre[0] + dx, centre[1] + dy, top - depth + self.params.grasp_dz])
            yaw = self._memory.setdefault("start_yaw", eef_yaw) if narrow_width > ROUND_RATIO * long_width \
                else _nearest_half_turn(axis_yaw, eef_yaw)  # eef x along the long side: fingers close across it
            return point, yaw
        if "rim_dir" not in self._memory:  # the rim on the side facing the hand, chosen once
            to_hand = priv[EEF_POS_KEY][:2] - centre
            norm = np.linalg.norm(to_hand)
            self._memory["rim_dir"] = to_hand / norm if norm > 1e-6 else np.array([-1.0, 0.0])
        rim_dir = self._memory["rim_dir"]
        radius = long_width / 2 - RIM_INSET
        point = np.array([centre[0] + rim_dir[0] * radius, centre[1] + rim_dir[1] * radius, top - RIM_DEPTH])
        yaw = _nearest_half_turn(math.atan2(rim_dir[1], rim_dir[0]) + math.pi / 2, eef_yaw)  # fingers close radially
        return point, yaw

    def _held_target(self, priv, object_xy: np.ndarray, bottom_z: float) -> np.ndarray:
        """eef target that brings the held object's body to ``object_xy`` and its bottom to ``bottom_z``."""
        shift = np.append(object_xy - priv["object_pos"][:2], bottom_z - priv["object_z"][0])
        return priv[EEF_POS_KEY] + shift

    def _carry_bottom(self, priv) -> float:
        """Height of the carried object's bottom: clear of the target and of where it was picked from."""
        return max(float(priv["target_top"][0]), self._memory["pick_bottom"]) + CARRY_CLEARANCE + \
            self.params.lift_height / 2

    def _stalled(self, priv) -> bool:
        """The hand has stopped going down (a finger or the object rests on something), or the phase is long."""
        z = float(priv[EEF_POS_KEY][2])
        if self.steps_in_phase == 0:
            self._z_trace = []
        self._z_trace.append(z)
        return self.steps_in_phase > MAX_DOWN_STEPS or (
            self.steps_in_phase >= STALL_STEPS and self._z_trace[-STALL_STEPS - 1] - z < STALL_DROP)

    # -- phases -----------------------------------------------------------------------------------------------------
    def _approach_object(self, priv):
        point, yaw = self._grasp(priv)
        target = point + np.array([0.0, 0.0, self.params.hover])
        err = target - priv[EEF_POS_KEY]
        target[2] += _funnel(np.linalg.norm(err[:2]))
        yaw_err = abs(_wrap_pi(yaw - _yaw(_quat_to_matrix(priv[EEF_QUAT_KEY]))))
        done = np.linalg.norm(err[:2]) < 0.01 and abs(err[2]) < 0.02 and yaw_err < 0.08
        return Command(target, yaw, GRIPPER_OPEN, done)

    def _descend_object(self, priv):
        point, yaw = self._grasp(priv)
        done = np.linalg.norm(point - priv[EEF_POS_KEY]) < 0.008 or self._stalled(priv)
        if done:
            self._memory["grasp_pos"] = priv[EEF_POS_KEY].copy()
            self._memory["grasp_yaw"] = yaw
            self._memory["pick_bottom"] = float(priv["object_z"][0])
        return Command(point, yaw, GRIPPER_OPEN, done)

    def _lift(self, priv):
        if self.steps_in_phase == 0:
            self._memory["grasp_offset"] = priv["object_pos"] - priv[EEF_POS_KEY]
        carry = self._carry_bottom(priv)
        target = self._held_target(priv, priv["object_pos"][:2], carry + OVERSHOOT)
        target[:2] = self._memory["grasp_pos"][:2]
        done = priv["object_z"][0] > carry
        return Command(target, self._memory["grasp_yaw"], GRIPPER_CLOSE, done)

    def _carry(self, priv):
        goal_xy = priv["target_pos"][:2]
        xy_err = np.linalg.norm(goal_xy - priv["object_pos"][:2])
        target = self._held_target(priv, goal_xy, self._carry_bottom(priv) + _funnel(xy_err))
        return Command(target, self._memory["grasp_yaw"], GRIPPER_CLOSE, bool(xy_err < 0.01))

    def _lower(self, priv):
        place = float(priv["place_z"][0])
        target = self._held_target(priv, priv["target_pos"][:2], place - OVERSHOOT)
        done = priv["object_z"][0] < place + 0.005 or self._stalled(priv)
        if done:
            self._memory["release_pos"] = priv[EEF_POS_KEY].copy()
        return Command(target, self._memory["grasp_yaw"], GRIPPER_CLOSE, done)

    def _release(self, priv):
        finished = self.steps_in_phase >= self.params.close_steps
        return Command(self._memory["release_pos"], self._memory["grasp_yaw"], GRIPPER_OPEN, finished)

    def _retreat(self, priv):
        target = self._memory["release_pos"] + np.array([0.0, 0.0, self.params.lift_height])
        return Command(target, self._memory["grasp_yaw"], GRIPPER_OPEN, False)


def make_libero_expert(env: LiberoEnv, rng: np.random.Generator,
                       params: ExpertParams | None = None) -> LiberoPickPlaceExpert:
    """The expert for the task ``env`` was last reset to (its goal comes from the scene's BDDL problem)."""
    goal = PickPlaceGoal.from_task_env(env.scene.env)
    if params is None:
        params = ExpertParams.sample(rng, gain=GAIN_RANGE, max_speed=MAX_SPEED_RANGE)
    return LiberoPickPlaceExpert(goal, params, rng)


def _nearest_half_turn(yaw: float, reference: float) -> float:
    """``yaw`` plus a multiple of pi, nearest ``reference``: a parallel gripper is symmetric under half a turn."""
    return reference + (_wrap_pi(2 * (yaw - reference)) / 2)


def _funnel(xy_distance: float) -> float:
    """Extra height while still far from a target in xy."""
    return min(FUNNEL_MAX, FUNNEL_SLOPE * float(xy_distance))


@dataclass(frozen=True)
class MeasureConfig:
    """Which expert episodes :func:`measure` runs: tasks x init states of one suite, without cameras."""

    suite: str
    trials: int = 2  # init states per task: first_init_state, first_init_state + 1, ...
    first_init_state: int = 0
    task_ids: tuple[int, ...] = ()  # () = every task of the suite
    seed: int = DEMO_SEED  # expert seed of trial i: seed + i (collect-sim's default and rule)

    def __post_init__(self):
        if self.trials < 1 or self.first_init_state < 0 or self.seed < 0:
            raise ValueError(f"trials must be >= 1, first_init_state and seed >= 0; got {self.trials}, "
                             f"{self.first_init_state}, {self.seed}")


def measure(cfg: MeasureConfig) -> list[dict]:
    """The expert's success and steps per task (one row per task), as collect-sim would see them, minus rendering."""
    env = LiberoEnv(cfg.suite, render=False)
    rows = []
    try:
        tasks = [env.tasks[i] for i in cfg.task_ids] if cfg.task_ids else list(env.tasks)
        for task in tasks:
            episodes = []
            for i in range(cfg.trials):
                start = time.perf_counter()
                ep = run_expert_episode(env, task.name, cfg.seed + i, init_state=cfg.first_init_state + i)
                episodes.append((ep, time.perf_counter() - start))
            kept = [ep for ep, _ in episodes if ep.success]
            rows.append({
                "task": task.name, "successes": len(kept), "attempts": len(episodes),
                "mean_steps": float(np.mean([ep.num_steps for ep in kept])) if kept else float("nan"),
                "failed_init_states": [ep.init_state for ep, _ in episodes if not ep.success],
                "s_per_episode": float(np.mean([s for _, s in episodes])),
            })
            print(f"{task.name}: {len(kept)}/{len(episodes)}, mean steps {rows[-1]['mean_steps']:.0f}", flush=True)
    finally:
        env.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m wp_training.sim_demos.libero_expert --suite libero_object --trials 3``: per-task success."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--suite", required=True, help="LIBERO suite, e.g. libero_object")
    parser.add_argument("--trials", type=int, default=2, help="init states per task")
    parser.add_argument("--first-init-state", type=int, default=0)
    parser.add_argument("--task-ids", default="", help="comma-separated task positions (default: all)")
    parser.add_argument("--seed", type=int, default=DEMO_SEED, help="expert seed of trial i: seed + i")
    parser.add_argument("--json", default="", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    cfg = MeasureConfig(args.suite, args.trials, args.first_init_state,
                        tuple(int(i) for i in args.task_ids.split(",") if i.strip()), args.seed)
    rows = measure(cfg)
    print("| task | expert success | mean steps | s per episode (no cameras) |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['task']} | {row['successes']}/{row['attempts']} | {row['mean_steps']:.0f} | "
              f"{row['s_per_episode']:.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"config": asdict(cfg), "tasks": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
