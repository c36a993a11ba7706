"""One ``--help`` style for every ``wp-*`` command: descriptions and examples kept as written, defaults shown."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the line breaks of descriptions and epilogs (examples) and appends ``(default: ...)`` to options that
    have a meaningful default (not to required options, flags, or empty or missing defaults)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        if action.required or default is None or default is False or (not default and default != 0):
            return action.help
        return super()._get_help_string(action)
