"""Episodes as data (wp_policy.sim.episodes): the run's episode list by task name or position, the per-episode records
file a caller follows, and results.json's content from records with a runner's own keys."""

from __future__ import annotations

import numpy as np
import pytest

from wp_policy.config_io import ConfigError
from wp_policy.sim.episodes import (EpisodeResult, append_record, plan_specs, read_records, results_document,
                                    summary_record)


def test_tasks_by_position_or_name_give_the_same_episodes():
    by_id = plan_specs("robosuite:Lift,Stack", (1,), 2, seed=7, num_wait_steps=3, max_steps=9)
    assert by_id == plan_specs("robosuite:Lift,Stack", ("Stack",), 2, seed=7, num_wait_steps=3, max_steps=9)
    assert [(s.task, s.trial, s.seed, s.init_state, s.max_steps, s.num_wait_steps) for s in by_id] == [
        ("Stack", 0, 7, None, 9, 3), ("Stack", 1, 8, None, 9, 3)]
    assert [s.task for s in plan_specs("robosuite:Lift,Stack")] == ["Lift", "Stack"]  # empty: every task
    with pytest.raises(ConfigError, match=r"task_id 2 is out of range: robosuite:Lift,Stack has 2 task\(s\)"):
        plan_specs("robosuite:Lift,Stack", (2,))


def test_records_file_holds_complete_lines_only(tmp_path):
    path = tmp_path / "episodes.jsonl"
    assert read_records(path) == []
    append_record(path, {"episodes": 2})
    append_record(path, {"trial": 0})
    with open(path, "a") as f:
        f.write('{"trial": 1')  # still being written
    assert read_records(path) == [{"episodes": 2}, {"trial": 0}]


def test_results_document_summarises_records_with_a_runners_own_keys():
    result = EpisodeResult("Lift", 0, 7, True, 2, "success", np.ones((2, 7)), plan_latency_s=(0.1,))
    record = result.to_json() | {"bridge": {"holds": {}}}
    assert EpisodeResult.from_json(record).to_json() == result.to_json()  # extra keys are ignored
    doc = results_document("robosuite:Lift", {"trials": 1}, ["Lift", "Stack"], [result], [record], demo={"x": 1})
    assert doc["overall"]["successes"] == 1 and doc["per_task"]["Stack"]["episodes"] == 0
    assert doc["episodes"] == [record] and doc["demo"] == {"x": 1} and doc["config"] == {"trials": 1}
    assert "actions" not in summary_record(result) and "bridge" in doc["episodes"][0]
