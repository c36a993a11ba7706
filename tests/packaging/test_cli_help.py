"""Every user-facing ``wp-*`` command (and each subcommand) answers ``--help`` with a description, help text on
every option and at least one example, so a user never has to read the source to run it."""

from __future__ import annotations

import importlib
import re

import pytest

COMMANDS = {
    "wp-launch": ("wp_policy.supervisor", [[]]),
    "wp-bag": ("wp_policy.ros.bag_cli", [["record"], ["replay"], ["info"], ["synth"]]),
    "wp-stop": ("wp_policy.ros.stop_cli", [[]]),
    "wp-eval": ("wp_policy.sim.eval_cli", [[], ["plot"]]),
    "wp-demo": ("wp_policy.demo", [[]]),
    "wp-data": ("wp_training.data_cli", [[], ["extract-waypoints"], ["stats"], ["cache-features"], ["collect-sim"],
                                         ["from-bags"], ["from-lerobot"], ["tokenizer"]]),
    "wp-train": ("wp_training.train_cli", [[], ["export"], ["select"], ["plan-memory"]]),
}
CASES = [(name, module, sub) for name, (module, subs) in COMMANDS.items() for sub in subs]


def _help_text(module: str, argv: list[str], capsys) -> str:
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code in (0, None)
    return capsys.readouterr().out


def _options_without_help(text: str) -> list[str]:
    """Option lines of argparse's listing with nothing after the option's name (help on the next line counts)."""
    lines = text.splitlines()
    missing = []
    for i, line in enumerate(lines):
        match = re.match(r"^  (-[-\w]+(?:[ ,=][\w\[\]{}.,-]+)*)\s*$", line)
        if match and not (i + 1 < len(lines) and re.match(r"^ {8,}\S", lines[i + 1])):
            missing.append(match.group(1))
    return missing


@pytest.mark.parametrize(("name", "module", "sub"), CASES, ids=[" ".join([c[0], *c[2]]) for c in CASES])
def test_help_has_a_description_option_help_and_an_example(name, module, sub, capsys):
    text = _help_text(module, sub, capsys)
    usage, _, rest = text.partition("\n\n")
    assert usage.startswith("usage:"), text
    assert rest.strip() and not rest.lstrip().startswith(("options:", "positional arguments:")), \
        f"{name} {' '.join(sub)}: no description\n{text}"
    example = rf"^ +({re.escape(name)}|python -m |\.venv/bin/python -m )"
    assert re.search(example, text, re.M), f"{name} {' '.join(sub)}: no example command\n{text}"
    assert _options_without_help(text) == [], f"{name} {' '.join(sub)}: options without help\n{text}"
