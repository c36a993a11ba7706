"""When the runner asks for the next plan and how far ahead it fills: one setting for wp-eval, wp-demo and the graph.

:class:`ReplanConfig` is what users write (``replan:`` in eval and demo configs; the ``replan_mode``,
``pairs_per_plan``, ``plan_lead_s`` and ``fill_lead_s`` launch arguments and node parameters). Its leads are in
seconds, so one config means the same policy at any control rate; :meth:`ReplanConfig.strategy` is the one place
they become ticks. The strategy (:class:`AfterLast` or :class:`Lookahead`) answers the runner's per-tick questions:

- ``after_last`` (the original loop): ask for a plan once the last pair of the current plan has run; a new plan
  replaces whatever is left; nothing is filled ahead.
- ``lookahead``: fill the next pair while the current one runs (and any later pair due to start within
  ``fill_lead_s``, so short pairs do not outrun the AE), and ask for the next plan when the last pair starts or once
  at most ``plan_lead_s`` of motion is queued (cover the VLM + AE latency); the answer is appended after the queue.

``pairs_per_plan`` (both modes; 0 = all, the original) runs only the first N pairs of each plan, then replans.

``pair_start`` says where each pair's fill starts. ``planned`` (the original): at the previous planned waypoint, so
the chunks of one plan join up whatever the arm did. ``measured`` (after_last only): at the proprio measured on the
tick the pair starts, so an arm that lags its plan is asked for the remaining way rather than for the planned step;
this matters for an AE that reads the pose relative to the pair's start (``relative_dims``), which otherwise never
sees the lag. A lookahead fill runs before the previous pair has ended, so it has no measured start to use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

REPLAN_MODES = ("after_last", "lookahead")
PAIR_STARTS = ("planned", "measured")
# node parameter / launch argument -> ReplanConfig field (the ROS names predate the config and stay)
PARAM_FIELDS = {"replan_mode": "mode", "pairs_per_plan": "pairs_per_plan", "plan_lead_s": "plan_lead_s",
                "fill_lead_s": "fill_lead_s", "pair_start": "pair_start"}
# the flat keys eval and demo configs had before their ``replan:`` section (config_io's REMOVED_KEYS hook)
MOVED_KEYS = {
    "replan_mode": "moved to replan.mode (replan: {mode: lookahead}, or --set replan.mode=lookahead)",
    "pairs_per_plan": "moved to replan.pairs_per_plan (--set replan.pairs_per_plan=N)",
    "lead_ticks": "replaced by replan.plan_lead_s, in seconds as on the ROS graph (ticks / the robot's control_hz: "
                  "the old 4 ticks at LIBERO's 20 Hz are 0.2)",
    "fill_lead_ticks": "replaced by replan.fill_lead_s, in seconds as on the ROS graph (ticks / control_hz)",
    "plan_lead_s": "moved to replan.plan_lead_s",
    "fill_lead_s": "moved to replan.fill_lead_s",
}


@dataclass(frozen=True)
class ReplanStrategy:
    """The replan mode in control ticks (built by :meth:`ReplanConfig.strategy`, never from user input)."""

    pairs_per_plan: int = 0  # 0: every pair of a plan runs
    measured_starts: bool = field(default=False, kw_only=True)  # every pair starts at the measured proprio
    name: ClassVar[str] = ""
    appends_answer: ClassVar[bool] = False  # a requested plan goes after the queued pairs instead of replacing them

    def wants_early_plan(self, last_pair_started: bool, remaining_ticks: int) -> bool:
        """Ask for the next plan while a pair still runs (no stop queued, none requested yet)."""
        return False

    def fills_now(self, index: int, starts_in: int) -> bool:
        """Fill queued pair ``index`` (0: the next one), due to start in ``starts_in`` ticks, at this tick."""
        return False


@dataclass(frozen=True)
class AfterLast(ReplanStrategy):
    name: ClassVar[str] = "after_last"


@dataclass(frozen=True)
class Lookahead(ReplanStrategy):
    lead_ticks: int = 0  # ask for the next plan once at most this many actions are queued
    fill_lead_ticks: int = 0  # also fill later pairs due to start within this many ticks
    name: ClassVar[str] = "lookahead"
    appends_answer: ClassVar[bool] = True

    def wants_early_plan(self, last_pair_started: bool, remaining_ticks: int) -> bool:
        return last_pair_started or remaining_ticks <= self.lead_ticks

    def fills_now(self, index: int, starts_in: int) -> bool:
        return index == 0 or starts_in <= self.fill_lead_ticks


@dataclass(frozen=True)
class ReplanConfig:
    """The replan settings, validated once here for every config and node that carries them."""

    mode: str = "after_last"  # after_last | lookahead (see the module docstring)
    pairs_per_plan: int = 0  # run the first N pairs of each plan, then replan (0: all)
    plan_lead_s: float = 0.5  # lookahead: ask for the next plan this much motion before the queue ends
    fill_lead_s: float = 0.15  # lookahead: fill every pair that starts within this time (AE latency)
    pair_start: str = "planned"  # planned | measured: where each pair's fill starts (see the module docstring)

    def __post_init__(self):
        problems = []
        if self.mode not in REPLAN_MODES:
            problems.append(f"replan mode must be one of {list(REPLAN_MODES)}, got {self.mode!r}")
        if self.pairs_per_plan < 0:
            problems.append(f"pairs_per_plan must be >= 0 (0: every pair of a plan), got {self.pairs_per_plan}")
        if self.pair_start not in PAIR_STARTS:
            problems.append(f"pair_start must be one of {list(PAIR_STARTS)}, got {self.pair_start!r}")
        elif self.pair_start == "measured" and self.mode != AfterLast.name:
            problems.append("pair_start measured needs mode after_last (a lookahead fill runs before the previous "
                            "pair has ended, with no measured start yet)")
        for name in ("plan_lead_s", "fill_lead_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                problems.append(f"{name} must be a number of seconds >= 0, got {value!r}")
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_params(cls, values) -> ReplanConfig:
        """From node parameters or launch arguments (``replan_mode``, ``pairs_per_plan``, ``plan_lead_s``,
        ``fill_lead_s``, ``pair_start``)."""
        return cls(**{f: values[p] for p, f in PARAM_FIELDS.items()})

    def params(self) -> dict:
        """The node parameters / launch arguments that carry this config (inverse of :meth:`from_params`)."""
        return {p: getattr(self, f) for p, f in PARAM_FIELDS.items()}

    def strategy(self, control_hz: float) -> ReplanStrategy:
        """The strategy at ``control_hz``: the one place a lead in seconds becomes ticks (rounded up, so a lead is
        never shorter than asked; float noise such as 0.15 * 20 = 3.0000000000000004 is not a tick)."""
        if self.mode == AfterLast.name:
            return AfterLast(self.pairs_per_plan, measured_starts=self.pair_start == "measured")

        def ticks(seconds: float) -> int:
            return math.ceil(round(seconds * control_hz, 6))

        return Lookahead(self.pairs_per_plan, ticks(self.plan_lead_s), ticks(self.fill_lead_s))

