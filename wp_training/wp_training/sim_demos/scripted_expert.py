"""Scripted experts for the robosuite stand-in tasks: demonstrations without a human or a trained policy.

An expert reads ground-truth poses (:meth:`wp_policy.sim.robosuite_env.RobosuiteEnv.privileged_state`) and emits
7-D LIBERO actions: delta position (3) + delta axis-angle (3, world frame), each in [-1, 1] where OSC_POSE scales
+-1 to +-5 cm / +-0.5 rad per step, and the gripper with LIBERO's sign (-1 open, +1 close).

Behaviour is a phase sequence (approach above the object, descend, close, lift; Stack adds carry over the base
cube, lower, release, retreat). Each phase servos the end effector to a target with a saturated P controller, a
top-down orientation whose yaw follows the cube (cubes are 90-degree symmetric), and a first-order low-pass filter
so commands stay smooth across phase switches. Diversity comes from :class:`ExpertParams`, sampled per episode from
a seeded generator (gains, speeds, heights, grasp offsets, timing), plus small per-step action noise. Real LIBERO
pick-and-place tasks reuse this machinery with goals read from the scene (:mod:`wp_training.sim_demos.libero_expert`);
:func:`run_expert_episode` picks the expert that fits the env.

Example::

    from wp_policy.sim.robosuite_env import RobosuiteEnv
    from wp_training.sim_demos.scripted_expert import run_expert_episode

    env = RobosuiteEnv(("Lift",), render=False)
    episode = run_expert_episode(env, "Lift", seed=0)
    print(episode.success, episode.num_steps)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from wp_policy.sim.base import SimEnv, SimObservation
from wp_policy.sim.conventions import EEF_POS_KEY, EEF_QUAT_KEY, GRIPPER_CLOSE, GRIPPER_OPEN, WAIT_ACTION
from wp_policy.sim.libero_env import LiberoEnv
from wp_policy.sim.protocol import NUM_WAIT_STEPS
from wp_policy.sim.rollout import EpisodeSpec, reset_episode

DEMO_SEED = 100_000  # first expert seed of demo collection: far from the small seeds evaluations use
POS_SCALE = 0.05  # metres per unit action (robosuite OSC_POSE output_max)
ROT_SCALE = 0.5  # radians per unit action
MAX_ROT_ACTION = 0.5  # cap on each rotation action dim: at most 0.25 rad of wrist turn per step
TOP_DOWN = np.diag([1.0, -1.0, -1.0])  # eef frame pointing straight down, eef x along world x
CUBE_A_HALF = 0.02  # robosuite Stack: cubeA half size (m)
CUBE_B_HALF = 0.025  # cubeB half size (m)


@dataclass(frozen=True)
class ExpertParams:
    """Per-episode behaviour of an expert; :meth:`sample` draws a varied but reliable set."""

    gain: float  # fraction of the position error commanded per step
    max_speed: float  # cap on the translation action norm (1.0 = 5 cm per step)
    rot_gain: float  # fraction of the orientation error commanded per step
    smoothing: float  # low-pass factor in [0, 1): weight of the previous command
    noise: float  # std of Gaussian noise added to the 6 motion dims of each action
    hover: float  # approach height of the fingertips above the grasp point (m)
    grasp_dz: float  # grasp point height relative to the cube centre (m)
    grasp_xy: tuple[float, float]  # grasp point offset from the cube centre (m)
    close_steps: int  # steps spent closing the gripper before lifting
    lift_height: float  # lift above the grasp point (Lift) / carry clearance over cubeB (Stack) (m)

    def __post_init__(self):
        if not 0.0 < self.gain <= 2.0 or not 0.0 < self.rot_gain <= 2.0:
            raise ValueError(f"gains must be in (0, 2], got gain={self.gain} rot_gain={self.rot_gain}")
        if not 0.0 < self.max_speed <= 1.0:
            raise ValueError(f"max_speed must be in (0, 1], got {self.max_speed}")
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {self.smoothing}")
        if self.noise < 0.0 or self.close_steps < 1:
            raise ValueError(f"noise must be >= 0 and close_steps >= 1, got {self.noise}, {self.close_steps}")

    @classmethod
    def sample(cls, rng: np.random.Generator, gain: tuple[float, float] = (0.5, 0.9),
               max_speed: tuple[float, float] = (0.45, 0.8)) -> ExpertParams:
        """One draw; ``gain`` and ``max_speed`` are (low, high) ranges (LIBERO's controller lags more: faster)."""
        return cls(
            gain=float(rng.uniform(*gain)),
            max_speed=float(rng.uniform(*max_speed)),
            rot_gain=float(rng.uniform(0.4, 0.7)),
            smoothing=float(rng.uniform(0.2, 0.5)),
            noise=float(rng.uniform(0.0, 0.04)),
            hover=float(rng.uniform(0.06, 0.12)),
            grasp_dz=float(rng.uniform(-0.008, 0.004)),
            grasp_xy=(float(rng.uniform(-0.005, 0.005)), float(rng.uniform(-0.005, 0.005))),
            close_steps=int(rng.integers(8, 14)),
            lift_height=float(rng.uniform(0.08, 0.14)),
        )


@dataclass(frozen=True)
class Command:
    """What a phase wants this step: an eef position, a yaw, the gripper, and whether the phase is finished."""

    target: np.ndarray  # [3] eef position (world, m)
    yaw: float  # eef yaw about world z (rad)
    gripper: float  # GRIPPER_OPEN or GRIPPER_CLOSE
    finished: bool


Phase = Callable[[Mapping[str, np.ndarray]], Command]
HOLD_RADIUS = 0.04  # a held cube's centre stays this close to the grip site; farther means the grasp failed
MISS_ABOVE = (0.03, 0.07)  # a missed grasp closes this high above the grasp point (m): shut too early
MISS_BESIDE = (0.035, 0.05)  # ... or this far beside the object's centre (m): the fingers close next to it
MISS_LIFT_STEPS = (0, 12)  # steps the empty hand keeps lifting after the miss, before the recording starts
MISS_MAX_STEPS = 120  # cap on the unrecorded missed-grasp prefix
PUSH_FREE_PHASES = ("close", "release")  # phases that move the gripper are never pushed (the grasp would fail)


@dataclass(frozen=True)
class Pushes:
    """DART-style disturbances of an expert (Laskey et al., CoRL 2017): at random steps the arm is pushed for a few
    steps in a random direction, then the expert servos back to its target.

    Undisturbed scripted demos move as a function of the arm's pose (the pose shows the phase of the script), so an
    Action Expert trained on them learns the motion from the pose and ignores the end waypoint it is given. With
    pushes the same pose is followed by different motions and only the next waypoint tells them apart; the recovery
    from an off-nominal pose is recorded as well. The push replaces the translation of the expert's action.
    """

    rate: float  # chance per step that a push starts (while none runs)
    steps: tuple[int, int] = (2, 6)  # push length in steps, inclusive range
    speed: tuple[float, float] = (0.3, 0.7)  # translation action norm of a push (1.0 = 5 cm per step)

    def __post_init__(self):
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"push rate must be in [0, 1], got {self.rate}")
        if not 1 <= self.steps[0] <= self.steps[1] or not 0.0 < self.speed[0] <= self.speed[1] <= 1.0:
            raise ValueError(f"push steps must be 1 <= low <= high and speed 0 < low <= high <= 1, got "
                             f"{self.steps}, {self.speed}")


class ScriptedExpert:
    """Runs a list of phases; subclasses define them. One instance per episode (it keeps phase state)."""

    first_object = "cube"  # the object the first approach/descend/close phases grasp

    def __init__(self, params: ExpertParams, rng: np.random.Generator, regrasp: bool = True):
        self.params = params
        self.rng = rng
        self.regrasp = regrasp  # False: a lost or missed object is not grasped again (the missed-grasp prefix)
        self.phase_index = 0
        self.steps_in_phase = 0
        self._previous = np.zeros(6)
        self._memory: dict[str, np.ndarray | float] = {}
        self._phases: list[tuple[str, Phase]] = self.phases()
        self.regrasps = 0
        self.pushes: Pushes | None = None
        self._push_rng: np.random.Generator | None = None
        self._push = np.zeros(3)
        self._push_left = 0
        self.pushed_steps = 0

    def disturb(self, pushes: Pushes, rng: np.random.Generator) -> None:
        """Push the arm around (:class:`Pushes`), with draws from their own ``rng`` so the rest of the episode's
        variation is the same as without pushes."""
        self.pushes, self._push_rng = pushes, rng

    def phases(self) -> list[tuple[str, Phase]]:
        """(name, phase) in order; the last phase runs until the episode ends."""
        raise NotImplementedError

    def held_cube(self) -> str | None:
        """Prefix of the object that must stay in the hand during the current phase (None: nothing held)."""
        return None

    @property
    def phase(self) -> str:
        return self._phases[self.phase_index][0]

    def observe(self, env) -> Mapping[str, np.ndarray]:
        """The ground truth this expert acts on, read from the env after each step."""
        return env.privileged_state()

    def lost_grip(self, priv: Mapping[str, np.ndarray]) -> bool:
        """Whether the object that should be in the hand is not (then the expert grasps again)."""
        cube = self.held_cube()
        return self.regrasp and cube is not None and np.linalg.norm(priv[f"{cube}_pos"] - priv[EEF_POS_KEY]) > HOLD_RADIUS

    def act(self, priv: Mapping[str, np.ndarray]) -> np.ndarray:
        """One float32 [7] action from the current ground-truth poses."""
        if self.lost_grip(priv):
            self.phase_index, self.steps_in_phase = 0, 0  # the object slipped or was missed: grasp again
            self.regrasps += 1
        command = self._phases[self.phase_index][1](priv)
        while command.finished and self.phase_index < len(self._phases) - 1:
            self.phase_index += 1
            self.steps_in_phase = 0
            command = self._phases[self.phase_index][1](priv)
        self.steps_in_phase += 1
        motion = self._servo(priv, command)
        push = self._next_push()
        if push is not None:
            motion[:3] = push
        return np.append(motion, command.gripper).astype(np.float32)

    def _next_push(self) -> np.ndarray | None:
        """This step's push translation, or None (no pushes, none running, or a phase that moves the gripper)."""
        if self.pushes is None or self.phase in PUSH_FREE_PHASES:
            self._push_left = 0
            return None
        rng = self._push_rng
        if self._push_left == 0 and rng.random() < self.pushes.rate:
            direction = rng.normal(size=3)
            self._push = direction / np.linalg.norm(direction) * rng.uniform(*self.pushes.speed)
            self._push_left = int(rng.integers(self.pushes.steps[0], self.pushes.steps[1] + 1))
        if self._push_left == 0:
            return None
        self._push_left -= 1
        self.pushed_steps += 1
        return self._push.copy()

    def _servo(self, priv: Mapping[str, np.ndarray], command: Command) -> np.ndarray:
        p = self.params
        translation = p.gain * (command.target - priv[EEF_POS_KEY]) / POS_SCALE
        norm = np.linalg.norm(translation)
        if norm > p.max_speed:
            translation *= p.max_speed / norm
        target_rot = _rot_z(command.yaw) @ TOP_DOWN
        rotation = p.rot_gain * _rotvec(target_rot @ _quat_to_matrix(priv[EEF_QUAT_KEY]).T) / ROT_SCALE
        raw = np.concatenate([translation, np.clip(rotation, -MAX_ROT_ACTION, MAX_ROT_ACTION)])
        self._previous = p.smoothing * self._previous + (1.0 - p.smoothing) * raw
        return np.clip(self._previous + self.rng.normal(0.0, p.noise, 6), -1.0, 1.0)

    # -- building blocks shared by the task experts -------------------------------------------------------------
    def _grasp_point(self, cube_pos: np.ndarray) -> np.ndarray:
        dx, dy = self.params.grasp_xy
        return cube_pos + np.array([dx, dy, self.params.grasp_dz])

    def _grasp_yaw(self, priv, cube: str) -> float:
        """The eef yaw nearest to the current one that lines the fingers up with the cube's faces."""
        eef_yaw = _yaw(_quat_to_matrix(priv[EEF_QUAT_KEY]))
        return eef_yaw + _wrap_quarter(_yaw(_quat_to_matrix(priv[f"{cube}_quat"])) - eef_yaw)

    def _approach(self, cube: str) -> Phase:
        def phase(priv):
            target = self._grasp_point(priv[f"{cube}_pos"]) + np.array([0.0, 0.0, self.params.hover])
            yaw = self._grasp_yaw(priv, cube)
            err = target - priv[EEF_POS_KEY]
            yaw_err = abs(_wrap_pi(yaw - _yaw(_quat_to_matrix(priv[EEF_QUAT_KEY]))))
            done = np.linalg.norm(err[:2]) < 0.01 and abs(err[2]) < 0.02 and yaw_err < 0.08
            return Command(target, yaw, GRIPPER_OPEN, done)

        return phase

    def _descend(self, cube: str) -> Phase:
        def phase(priv):
            target = self._grasp_point(priv[f"{cube}_pos"])
            yaw = self._grasp_yaw(priv, cube)
            done = np.linalg.norm(target - priv[EEF_POS_KEY]) < 0.008 or self.steps_in_phase > 40
            if done:
                self._memory["grasp_pos"] = priv[EEF_POS_KEY].copy()
                self._memory["grasp_yaw"] = yaw
            return Command(target, yaw, GRIPPER_OPEN, done)

        return phase

    def _close(self) -> Phase:
        def phase(priv):
            finished = self.steps_in_phase >= self.params.close_steps
            return Command(self._memory["grasp_pos"], self._memory["grasp_yaw"], GRIPPER_CLOSE, finished)

        return phase


class LiftExpert(ScriptedExpert):
    """Lift: approach above the cube, descend, close, lift straight up (success: cube 4 cm above the table)."""

    def phases(self):
        return [
            ("approach", self._approach("cube")),
            ("descend", self._descend("cube")),
            ("close", self._close()),
            ("lift", self._lift),
        ]

    def held_cube(self):
        return "cube" if self.phase == "lift" else None

    def _lift(self, priv):
        target = self._memory["grasp_pos"] + np.array([0.0, 0.0, self.params.lift_height])
        return Command(target, self._memory["grasp_yaw"], GRIPPER_CLOSE, False)


class StackExpert(ScriptedExpert):
    """Stack: pick cubeA, carry it over cubeB, lower until it rests on top, release, retreat upward."""

    first_object = "cubeA"

    def phases(self):
        return [
            ("approach", self._approach("cubeA")),
            ("descend", self._descend("cubeA")),
            ("close", self._close()),
            ("lift", self._lift),
            ("carry", self._carry),
            ("lower", self._lower),
            ("release", self._release),
            ("retreat", self._retreat),
        ]

    def held_cube(self):
        return "cubeA" if self.phase in ("lift", "carry", "lower") else None

    def _grasp_yaw(self, priv, cube: str) -> float:
        """Face-aligned yaw whose fingers (the eef y axis) close across the cubeA->cubeB line, never onto cubeB.

        Of the cube's 90-degree yaw lattice, keep the members whose eef x axis is closer to parallel with the
        line between the cubes and take the one nearest the current yaw (at most 90 degrees of wrist rotation).
        """
        nearest = super()._grasp_yaw(priv, cube)
        line = priv["cubeB_pos"][:2] - priv["cubeA_pos"][:2]
        heading = math.atan2(line[1], line[0])
        candidates = (nearest, nearest + math.pi / 2, nearest - math.pi / 2)
        eef_yaw = _yaw(_quat_to_matrix(priv[EEF_QUAT_KEY]))
        return min(candidates, key=lambda y: (round(abs(math.sin(y - heading)), 6), abs(y - eef_yaw)))

    def _carry_height(self, priv) -> float:
        """cubeA centre height that clears cubeB by the episode's clearance."""
        return float(priv["cubeB_pos"][2] + CUBE_B_HALF + CUBE_A_HALF + self.params.lift_height * 0.5)

    def _move_cube_to(self, priv, cube_target: np.ndarray) -> np.ndarray:
        """eef target that brings the held cubeA to ``cube_target`` (keeps the grasp offset)."""
        return priv[EEF_POS_KEY] + (cube_target - priv["cubeA_pos"])

    def _place_yaw(self, priv) -> float:
        return self._memory["grasp_yaw"] + _wrap_quarter(
            _yaw(_quat_to_matrix(priv["cubeB_quat"])) - _yaw(_quat_to_matrix(priv["cubeA_quat"]))
        )

    def _lift(self, priv):
        cube_target = np.append(priv["cubeA_pos"][:2], self._carry_height(priv))
        done = priv["cubeA_pos"][2] > self._carry_height(priv) - 0.015
        return Command(self._move_cube_to(priv, cube_target), self._memory["grasp_yaw"], GRIPPER_CLOSE, done)

    def _carry(self, priv):
        cube_target = np.append(priv["cubeB_pos"][:2], self._carry_height(priv))
        done = np.linalg.norm(priv["cubeA_pos"][:2] - priv["cubeB_pos"][:2]) < 0.006
        return Command(self._move_cube_to(priv, cube_target), self._place_yaw(priv), GRIPPER_CLOSE, done)

    def _lower(self, priv):
        rest = priv["cubeB_pos"][2] + CUBE_B_HALF + CUBE_A_HALF
        cube_target = np.append(priv["cubeB_pos"][:2], rest - 0.005)
        done = priv["cubeA_pos"][2] < rest + 0.004 or self.steps_in_phase > 40
        if done:
            self._memory["release_pos"] = priv[EEF_POS_KEY].copy()
        return Command(self._move_cube_to(priv, cube_target), self._place_yaw(priv), GRIPPER_CLOSE, done)

    def _release(self, priv):
        finished = self.steps_in_phase >= self.params.close_steps
        return Command(self._memory["release_pos"], self._place_yaw(priv), GRIPPER_OPEN, finished)

    def _retreat(self, priv):
        target = self._memory["release_pos"] + np.array([0.0, 0.0, self.params.lift_height])
        return Command(target, self._place_yaw(priv), GRIPPER_OPEN, False)


EXPERTS: dict[str, type[ScriptedExpert]] = {"Lift": LiftExpert, "Stack": StackExpert}


def make_expert(task: str, rng: np.random.Generator, params: ExpertParams | None = None) -> ScriptedExpert:
    """A fresh expert for one episode of ``task``; ``params`` default to a draw from ``rng``."""
    try:
        cls = EXPERTS[task]
    except KeyError:
        raise ValueError(f"no scripted expert for task {task!r}; available: {sorted(EXPERTS)}") from None
    return cls(params if params is not None else ExpertParams.sample(rng), rng)


def expert_for(env: SimEnv, task: str, rng: np.random.Generator) -> ScriptedExpert:
    """The expert for ``task`` in a freshly reset ``env``: real LIBERO tasks read their goal from the scene."""
    if isinstance(env, LiberoEnv):
        from wp_training.sim_demos.libero_expert import make_libero_expert  # imports this module

        return make_libero_expert(env, rng)
    return make_expert(task, rng)


@dataclass
class ExpertEpisode:
    """One expert rollout as recorded: the observation before each action and the action itself.

    images: view -> uint8 [T, H, W, 3] (empty without rendering); states float32 [T, 8]; actions float32 [T, 7].
    """

    task: str
    seed: int
    instruction: str
    success: bool
    images: dict[str, np.ndarray]
    states: np.ndarray
    actions: np.ndarray
    regrasps: int
    init_state: int | None = None  # row of the task's fixed init states the episode started from (real LIBERO)
    missed_grasp: bool = False  # recorded from a missed grasp (run_expert_episode(missed_grasp=True))
    pushed_steps: int = 0  # recorded steps whose translation was a push (run_expert_episode(pushes=...))

    @property
    def num_steps(self) -> int:
        return len(self.actions)


def missed_grasp_params(params: ExpertParams, rng: np.random.Generator) -> ExpertParams:
    """``params`` with a grasp point the fingers cannot hold: shut above the object, or next to it."""
    if rng.random() < 0.5:
        dx, dy = rng.uniform(-0.01, 0.01, 2)
        return replace(params, grasp_xy=(float(dx), float(dy)), grasp_dz=params.grasp_dz + rng.uniform(*MISS_ABOVE))
    angle, radius = rng.uniform(0.0, 2.0 * math.pi), rng.uniform(*MISS_BESIDE)
    return replace(params, grasp_xy=(float(radius * math.cos(angle)), float(radius * math.sin(angle))))


def play_missed_grasp(env: SimEnv, task: str, rng: np.random.Generator) -> SimObservation | None:
    """Drive the robot, unrecorded, into the state a policy is in after a missed grasp; its last observation.

    The task's expert runs with :func:`missed_grasp_params` and no regrasp through approach, descend and close,
    then lifts the empty hand for a few steps. None when the fingers caught the object after all (the attempt is
    then dropped: a demo must never open a hand that holds the object) or the prefix ran out of steps.
    """
    expert = make_expert(task, rng)
    expert = type(expert)(missed_grasp_params(expert.params, rng), rng, regrasp=False)
    close = [name for name, _ in expert.phases()].index("close")
    lift_steps = int(rng.integers(MISS_LIFT_STEPS[0], MISS_LIFT_STEPS[1] + 1))
    for _ in range(MISS_MAX_STEPS):
        obs = env.step(expert.act(expert.observe(env))).obs
        if expert.phase_index > close and expert.steps_in_phase >= lift_steps:
            priv = expert.observe(env)
            missed = np.linalg.norm(priv[f"{expert.first_object}_pos"] - priv[EEF_POS_KEY]) > HOLD_RADIUS
            return obs if missed else None
    return None


def run_expert_episode(env: SimEnv, task: str, seed: int, max_steps: int | None = None,
                       post_success_steps: int = 0, init_state: int | None = None,
                       missed_grasp: bool = False, pushes: Pushes | None = None) -> ExpertEpisode:
    """Reset ``task``, wait like the evaluation protocol, then let the expert act until success.

    The reset is the evaluation's (:func:`wp_policy.sim.rollout.reset_episode`): from row ``init_state`` of the
    task's fixed init states (real LIBERO; the env keeps its own seed), else with ``seed`` (the stand-ins). The
    NUM_WAIT_STEPS settling steps are not recorded, so the first recorded frame looks like the first frame a policy
    sees under the evaluation protocol. The expert's variation is drawn from a generator seeded by ``seed``: the
    whole episode is a function of (task, seed, init_state).

    ``post_success_steps``: keep acting (and recording) this many steps after the first successful one. Demos that
    end on the very frame success is reached teach a planner to put its stop waypoint exactly on the success line,
    where any tracking shortfall stops just short of it; a few steps past it give the stop a margin.

    ``missed_grasp``: start the recording from a missed grasp (:func:`play_missed_grasp`, unrecorded, its variation
    seeded by ``[seed, 1]``), so the demo shows the recovery: open, approach again, grasp. Planners trained only on
    clean demos have never seen an empty closed hand and end such episodes with a stop. Stand-in tasks only.

    ``pushes``: disturb the expert (:class:`Pushes`, draws seeded by ``[seed, 3]``); the recording holds the pushed
    motion and the expert's recovery from it.
    """
    if post_success_steps < 0:
        raise ValueError(f"post_success_steps must be >= 0, got {post_success_steps}")
    spec = EpisodeSpec(task, trial=0, seed=None if init_state is not None else seed, init_state=init_state)
    obs = reset_episode(env, spec)
    for _ in range(NUM_WAIT_STEPS):
        obs = env.step(WAIT_ACTION).obs
    if missed_grasp:
        if isinstance(env, LiberoEnv):
            raise ValueError("missed-grasp starts exist for the stand-in tasks' experts only")
        missed = play_missed_grasp(env, task, np.random.default_rng([seed, 1]))
        if missed is None:  # dropped attempt: nothing recorded
            return ExpertEpisode(task=task, seed=seed, instruction=obs.instruction, success=False, images={},
                                 states=np.zeros((0, len(obs.state)), np.float32),
                                 actions=np.zeros((0, len(WAIT_ACTION)), np.float32), regrasps=0,
                                 missed_grasp=True)
        obs = missed
    expert = expert_for(env, task, np.random.default_rng(seed))
    if pushes is not None:
        expert.disturb(pushes, np.random.default_rng([seed, 3]))
    frames: dict[str, list[np.ndarray]] = {view: [] for view in obs.images}
    states, actions, success, extra = [], [], False, 0
    for _ in range(max_steps if max_steps is not None else env.task(task).max_steps):
        action = expert.act(expert.observe(env))
        for view, image in obs.images.items():
            frames[view].append(image)
        states.append(obs.state)
        actions.append(action)
        result = env.step(action)
        obs = result.obs
        success = success or result.done
        if success:
            if extra >= post_success_steps:
                break
            extra += 1
    return ExpertEpisode(
        task=task, seed=seed, instruction=obs.instruction, success=success,
        images={view: np.stack(f) for view, f in frames.items() if f},
        states=np.stack(states).astype(np.float32), actions=np.stack(actions).astype(np.float32),
        regrasps=expert.regrasps, init_state=init_state, missed_grasp=missed_grasp, pushed_steps=expert.pushed_steps,
    )


# -- small rotation helpers (numpy only) --------------------------------------------------------------------------
def _quat_to_matrix(quat_xyzw: np.ndarray) -> np.ndarray:
    x, y, z, w = np.asarray(quat_xyzw, dtype=np.float64) / np.linalg.norm(quat_xyzw)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _rotvec(rot: np.ndarray) -> np.ndarray:
    """Axis-angle [3] of a rotation matrix, angle in [0, pi] (via the quaternion, stable near pi)."""
    trace = np.trace(rot)
    w = math.sqrt(max(0.0, 1.0 + trace)) / 2.0
    xyz = np.sqrt(np.clip(1.0 + 2.0 * np.diag(rot) - trace, 0.0, None)) / 2.0
    xyz *= np.sign([rot[2, 1] - rot[1, 2], rot[0, 2] - rot[2, 0], rot[1, 0] - rot[0, 1]] + np.array([1e-300] * 3))
    sin_half = np.linalg.norm(xyz)
    if sin_half < 1e-12:
        return np.zeros(3)
    return xyz / sin_half * 2.0 * math.atan2(sin_half, w)


def _rot_z(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _yaw(rot: np.ndarray) -> float:
    return math.atan2(rot[1, 0], rot[0, 0])


def _wrap_quarter(angle: float) -> float:
    """``angle`` folded into [-pi/4, pi/4): cubes look the same every 90 degrees."""
    return (angle + math.pi / 4) % (math.pi / 2) - math.pi / 4


def _wrap_pi(angle: float) -> float:
    """``angle`` folded into [-pi, pi)."""
    return (angle + math.pi) % (2 * math.pi) - math.pi
