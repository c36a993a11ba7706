"""WaypointPolicy: the one declared transform order, shared by the direct sim loop and the ROS nodes.

    plan:  observation (physical) -> resize-with-pad, [-1, 1] / proprio_to_model -> q99 normalise -> prompt
           -> VLM constrained decoding (normalised waypoints) -> unnormalise -> rebuild dims without a token from
           their coupling (robot config) -> proprio_to_physical -> Plan
    fill:  pair (physical start, end, d) -> proprio_to_model -> normalise -> AE sample_actions (first d steps)
           -> clip [-1, 1] -> unnormalise -> action_to_execution -> actions the robot receives

Every model input is built by :mod:`wp_policy.transforms`, the functions the training datasets
(``wp_training.datasets.vlm_dataset`` / ``ae_dataset``) call too, with the same stats file for both models; only the
tolerance check on out-of-range proprio readings (:meth:`WaypointPolicy.normalized_proprio`) is the runtime's own.
Waypoints leave :meth:`WaypointPolicy.plan` in physical units because that is how they travel on /wp/waypoints;
:meth:`WaypointPolicy.fill` takes them back in the same units, so the direct loop and the ROS graph normalise
identical float64 values.

The AE's noise is drawn from a generator seeded with ``(seed, observation stamp, end waypoint)``
(:func:`fill_seed`), so replaying the same observations gives the same actions whichever process computes them.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import torch

from wp_policy import batch as B
from wp_policy.config_io import ConfigError
from wp_policy.normalize import DatasetStats, load_stats
from wp_policy.obs_sync import ObsSet
from wp_policy.policy_config import DEVICE_AUTO, PolicyConfig, check_device
from wp_policy.policy_config import load_policy_config  # noqa: F401  (re-exported: the policy file's loader)
from wp_policy.robot_config import RobotConfig, load_robot_config
from wp_policy.runtime.plan import Plan, Waypoint
from wp_policy.tokenizer import TextTokenizer, TokenizationError, TokenLayout, WaypointTokenizer
from wp_policy.transforms import (ActionTransform, ProprioTransform, ae_inputs, collate, image_inputs, to_device,
                                  vlm_prompt_inputs)


PROPRIO_CLIP_TOLERANCE = 0.1  # model-space distance past [-1, 1] still clipped (10 % of a gripper's half range)


class ProprioOutOfRange(ValueError):
    """A proprio reading lies far outside the range the model was trained on: nothing sensible can be planned."""


class PolicySettingError(ConfigError):
    """A PolicyConfig setting cannot be used (its file is missing or unreadable, its device is not there).
    ``field`` names the setting, so a launcher can say which argument or policy-file key to change."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self):  # rebuilt from both arguments, so a wp-eval worker can send it to its parent
        return type(self), (self.field, self.message)


def resolve_device(device: str) -> tuple[str, str]:
    """``device`` -> (the torch device to use, a warning or ""). ``auto`` is cuda when torch sees a GPU, otherwise
    cpu with a warning; an explicit cuda / cuda:N that is not there is a PolicySettingError at once, not a crash
    somewhere inside model loading."""
    check_device(device)
    if device == DEVICE_AUTO:
        if torch.cuda.is_available():
            return "cuda", ""
        return "cpu", f"device auto: {_why_no_cuda()}, running on the CPU (slow for full-size models)"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise PolicySettingError("device", f"{device!r} requested but {_why_no_cuda()}; use auto (falls back "
                                               "to the CPU) or cpu")
        index, count = int(device.partition(":")[2] or 0), torch.cuda.device_count()
        if index >= count:
            raise PolicySettingError("device", f"{device!r} requested but only {count} CUDA device(s) are visible")
    return device, ""


def _why_no_cuda() -> str:
    if torch.version.cuda is None:
        return f"this torch build ({torch.__version__}) has no CUDA support"
    return "no CUDA GPU is visible (see nvidia-smi and CUDA_VISIBLE_DEVICES)"


@contextmanager
def _setting(field: str) -> Iterator[None]:
    """Load errors inside carry the PolicyConfig field whose value caused them (see PolicySettingError)."""
    try:
        yield
    except (ConfigError, FileNotFoundError, TokenizationError) as exc:
        raise PolicySettingError(field, str(exc)) from None


def stamp_seed(seed: int, stamp_ns: int) -> int:
    """A 63-bit generator seed from the run seed and an observation stamp (deterministic across processes)."""
    x = (int(seed) * 0x9E3779B97F4A7C15 + int(stamp_ns)) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & 0xFFFFFFFFFFFFFFFF
    return (x ^ (x >> 33)) & 0x7FFFFFFFFFFFFFFF


def fill_seed(seed: int, stamp_ns: int, end: np.ndarray) -> int:
    """Seed of one fill: two pairs filled from the same observation (lookahead) still get different noise."""
    tag = zlib.crc32(np.ascontiguousarray(end, dtype=np.float64).tobytes())
    return stamp_seed(seed, int(stamp_ns) ^ (tag << 31))


class WaypointPolicy:
    """Plans and fills for one robot; holds the models, tokenizer, normalisers and robot config."""

    def __init__(self, robot: RobotConfig, vlm, ae, tokenizer: WaypointTokenizer, stats: DatasetStats,
                 config: PolicyConfig):
        self.robot, self.vlm, self.ae, self.tokenizer, self.config = robot, vlm, ae, tokenizer, config
        stats.check_dims(robot.action.dim, robot.proprio.dim, where=config.stats_path)
        robot.proprio.check_token_dims(tokenizer.waypoint_dims, where=config.vlm_checkpoint or "tokenizer")
        self.proprio_transform = ProprioTransform(robot, stats.proprio)
        self.action_transform = ActionTransform(robot, stats.action)
        self.proprio_norm, self.action_norm = self.proprio_transform.norm, self.action_transform.norm
        self.device = torch.device(config.device)
        self.device_warning = ""  # set by from_config when device auto found no GPU (nodes report it)
        self.proprio_clipped = 0  # readings slightly outside [-1, 1] clipped before binning (see normalized_proprio)

    @classmethod
    def from_config(cls, config: PolicyConfig) -> WaypointPolicy:
        """Load the robot config, stats, tokenizer and whichever models the config names, on the resolved device
        (``config.device`` of the result is cpu / cuda[:N], never auto). A file that does not load, or a device
        that is not there, is a PolicySettingError naming the setting."""
        device, device_warning = resolve_device(config.device)
        config = replace(config, device=device)
        with _setting("robot"):
            robot = load_robot_config(config.robot)
        with _setting("stats_path"):
            stats = load_stats(config.stats_path)
        with _setting("vlm_checkpoint"):
            vlm = _load_model(config.vlm_checkpoint, "waypoint_vlm", device)
        with _setting("ae_checkpoint"):
            ae = _load_model(config.ae_checkpoint, "waypoint_ae", device)
        check_models(robot, vlm, ae, config)
        layout = TokenLayout((vlm or ae).config.vocab_size)
        with _setting("tokenizer_path"):
            try:
                tokenizer = WaypointTokenizer(TextTokenizer(config.tokenizer_path), layout, robot.proprio.dim,
                                              config.num_waypoints, config.max_token_len,
                                              waypoint_dims=vlm.config.waypoint_dims if vlm is not None else ())
            except TokenizationError as exc:
                raise ConfigError(f"{config.tokenizer_path}: {exc}") from None
        policy = cls(robot, vlm, ae, tokenizer, stats, config)
        policy.device_warning = device_warning
        return policy

    # ---- observation -> model inputs -------------------------------------------------------------------------
    def normalized_proprio(self, proprio: np.ndarray) -> np.ndarray:
        """Physical proprio ``[P]`` -> model space -> q99 ``[P]`` in [-1, 1] (a ValueError names NaN / wrong size).

        q99 dims are clipped by the normaliser; dims that pass through it (grippers, already in [-1, 1] in model
        space) are clipped here when a reading lies slightly outside (sensor noise: a 100.4 mm stroke on a 0-100 mm
        gripper), counted in :attr:`proprio_clipped`, so it never makes every plan fail. A reading further out than
        ``PROPRIO_CLIP_TOLERANCE`` is a fault (wrong units, a miscalibrated sensor): :class:`ProprioOutOfRange`.
        """
        try:
            y = self.proprio_transform.normalize(proprio)
        except ValueError as exc:
            raise ValueError(f"proprio {np.asarray(proprio).tolist()}: {exc}") from None
        excess = np.abs(y) - 1.0
        if np.any(excess > PROPRIO_CLIP_TOLERANCE):
            dims = [f"{self.robot.proprio.names[d]} = {np.asarray(proprio)[d]:.4g} ({y[d]:+.3f} in model space)"
                    for d in np.flatnonzero(excess > PROPRIO_CLIP_TOLERANCE)]
            raise ProprioOutOfRange(f"proprio far outside its range: {', '.join(dims)}; more than "
                                    f"{PROPRIO_CLIP_TOLERANCE} beyond [-1, 1] (check the feedback's units and the "
                                    "robot config)")
        self.proprio_clipped += int(np.count_nonzero(excess > 0))
        return np.clip(y, -1.0, 1.0)

    def physical_proprio(self, normalized: np.ndarray) -> np.ndarray:
        return self.proprio_transform.unnormalize(normalized)

    def physical_waypoint(self, decoded: np.ndarray) -> np.ndarray:
        """A decoded waypoint (normalised values of the tokenizer's waypoint dims) -> physical proprio ``[P]``;
        dims without a token are rebuilt from their coupling (robot config), so mirrored fingers always agree."""
        dims = self.tokenizer.waypoint_dims
        full = np.zeros(self.robot.proprio.dim)
        full[list(dims)] = decoded
        untokenised = set(range(self.robot.proprio.dim)) - set(dims)
        model = self.robot.proprio.fill_coupled(self.proprio_norm.unnormalize(full), untokenised)
        return self.robot.proprio_to_physical(model)

    def image_fields(self, obs: ObsSet, image_keys: tuple[str, ...], size: int) -> dict:
        """Views -> one sample's ``IMAGES`` (float32 [3, S, S] in [-1, 1]) and ``IMAGE_MASKS`` (numpy, as in
        training: a model key this robot has no camera for gets zeros and mask False)."""
        def frame_of(camera) -> np.ndarray:
            if camera.view not in obs.images:
                raise ValueError(f"observation has no image for view {camera.view!r} (has {sorted(obs.images)})")
            return np.asarray(obs.images[camera.view])

        return image_inputs(self.robot, frame_of, image_keys, size)

    def image_inputs(self, obs: ObsSet, image_keys: tuple[str, ...], size: int) -> tuple[dict, dict]:
        """Views -> ``IMAGES`` float32 [1, 3, S, S] and ``IMAGE_MASKS`` bool [1] per model key, on the device."""
        batch = self._batch(self.image_fields(obs, image_keys, size))
        return batch[B.IMAGES], batch[B.IMAGE_MASKS]

    def plan_inputs(self, obs: ObsSet, instruction: str) -> dict:
        """The planner's batch of one (``IMAGES``, ``IMAGE_MASKS``, ``TOKENS``, ``INPUT_MASK``, ``AR_MASK``)."""
        cfg = self.vlm.config
        prompt = vlm_prompt_inputs(self.tokenizer, instruction, self.normalized_proprio(obs.proprio))
        return self._batch({**self.image_fields(obs, cfg.image_keys, cfg.vision.image_size), **prompt})

    def fill_inputs(self, obs: ObsSet, instruction: str, start: np.ndarray, end: np.ndarray, duration: int) -> dict:
        """The AE's batch of one for physical ``start`` / ``end`` (the prompt unpadded; otherwise as in training)."""
        cfg = self.ae.config
        inputs = ae_inputs(self.tokenizer, instruction, self.normalized_proprio(start), self.normalized_proprio(end),
                           duration, cfg.proprio_dim, relative_dims=cfg.relative_dims)
        return self._batch({**self.image_fields(obs, cfg.image_keys, cfg.vision.image_size), **inputs})

    def _batch(self, sample: dict) -> dict:
        return to_device(collate([sample]), self.device)

    # ---- planning --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def plan(self, obs: ObsSet, instruction: str) -> Plan:
        """Up to M waypoints in physical units, stamped with the observation's stamp (durations 0..HORIZON)."""
        if self.vlm is None:
            raise RuntimeError("this policy was loaded without a VLM checkpoint; it can only fill")
        cfg = self.vlm.config
        batch = self.plan_inputs(obs, instruction)
        result = self.vlm.plan(batch[B.IMAGES], batch[B.IMAGE_MASKS], batch[B.TOKENS], batch[B.INPUT_MASK],
                               batch[B.AR_MASK], num_waypoints=self.config.num_waypoints,
                               max_duration=min(cfg.layout.max_duration, B.HORIZON))  # the AE fills <= HORIZON
        n = int(result.num_valid[0])
        proprio = result.proprio[0, :n].double().numpy()
        durations = result.durations[0, :n].numpy()
        return Plan(tuple(Waypoint(self.physical_waypoint(p), int(d)) for p, d in zip(proprio, durations)),
                    obs.stamp_ns)

    # ---- filling ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def fill(self, obs: ObsSet, instruction: str, start: np.ndarray, end: np.ndarray, duration: int) -> np.ndarray:
        """Actions for one waypoint pair: ``float64 [duration, action_dim]`` in execution space."""
        if self.ae is None:
            raise RuntimeError("this policy was loaded without an AE checkpoint; it can only plan")
        if not 1 <= duration <= B.HORIZON:
            raise ValueError(f"duration must be in 1..{B.HORIZON} to fill a chunk, got {duration}")
        batch = self.fill_inputs(obs, instruction, start, end, duration)
        gen = torch.Generator(device=self.device).manual_seed(fill_seed(self.config.seed, obs.stamp_ns, end))
        chunk = self.ae.sample_actions(batch, generator=gen, num_steps=self.config.num_flow_steps,
                                       noise_scale=self.config.noise_scale)  # [1, T, A]
        actions = chunk[0, :duration, : self.robot.action.dim].double().cpu().numpy()
        return self.action_transform.to_execution(actions)


_KIND_NAMES = {"waypoint_vlm": "a VLM planner", "waypoint_ae": "an Action Expert"}


def _load_model(path: str, kind: str, device: str):
    """The checkpoint at ``path`` (None when empty), refused at once when it holds the other model."""
    if not path:
        return None
    from wp_policy.models import from_pretrained

    model = from_pretrained(path, device=device).eval()
    if model.config.kind != kind:
        raise ConfigError(f"{path}: holds {_KIND_NAMES[model.config.kind]} checkpoint, but this path must name "
                          f"{_KIND_NAMES[kind]} checkpoint")
    return model


def check_models(robot: RobotConfig, vlm, ae, config: PolicyConfig) -> None:
    """Refuse checkpoints that cannot serve this robot or each other at start-up (ConfigError naming the file and
    the mismatch), rather than failing on every plan or fill once the robot runs."""
    if ae is not None and ae.config.horizon < B.HORIZON:
        raise ConfigError(f"{config.ae_checkpoint}: the AE fills {ae.config.horizon}-step chunks, but a waypoint "
                          f"may be up to {B.HORIZON} ticks away; it needs horizon >= {B.HORIZON}")
    if vlm is not None and vlm.config.proprio_dim != robot.proprio.dim:
        raise ConfigError(f"{config.vlm_checkpoint}: the VLM plans {vlm.config.proprio_dim}-D waypoints but robot "
                         f"{robot.robot_type} has {robot.proprio.dim} proprio dims")
    if ae is not None and (ae.config.action_dim < robot.action.dim or ae.config.proprio_dim < robot.proprio.dim):
        raise ConfigError(f"{config.ae_checkpoint}: the AE takes {ae.config.proprio_dim} proprio / "
                         f"{ae.config.action_dim} action dims, robot {robot.robot_type} needs {robot.proprio.dim} / "
                         f"{robot.action.dim}")
    if ae is not None and any(d >= robot.proprio.dim for d in ae.config.relative_dims):
        raise ConfigError(f"{config.ae_checkpoint}: the AE reads proprio dims {list(ae.config.relative_dims)} "
                          f"relative to the start, but robot {robot.robot_type} has {robot.proprio.dim} proprio dims")
    if vlm is not None and ae is not None and vlm.config.vocab_size != ae.config.vocab_size:
        raise ConfigError(f"the VLM ({vlm.config.vocab_size}) and the AE ({ae.config.vocab_size}) use different "
                         "vocabularies; they must share one tokenizer")
    cams = {c.model_key for c in robot.cameras}
    for name, model in (("VLM", vlm), ("AE", ae)):
        if model is not None and not cams & set(model.config.image_keys):
            raise ConfigError(f"the {name} reads image keys {list(model.config.image_keys)}, none of which is a "
                             f"camera of robot {robot.robot_type} ({sorted(cams)})")
