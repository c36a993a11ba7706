"""The docs stand alone: everything README.md and docs/*.md point to is in the repository, and the commands they show
at least parse.

- Every relative markdown link resolves to a file or folder of the repository, and its ``#anchor`` (also a link
  within the same page) to a heading of the target page (GitHub's heading ids).
- Every repository path the pages name (in backticks, links or code blocks) that starts with a top-level folder of
  the repository (``wp_policy/wp_policy/runtime/runner.py``, ``configs/graphs/r1lite.yaml``, ...) exists.
- Every ``wp-*`` command in a fenced code block answers ``--help`` for its subcommand (``wp-launch <graph>``:
  ``--show-args``), in-process through the console script's ``main(argv)``, once per command + subcommand; each
  ``--option`` it uses is one the subcommand's help lists.
- No file of the repository refers to notes outside it (the design and reference notes the project was started
  from, the shared folder beside the checkout) or to issue numbers of the project's tracker.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import shlex
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest

from packaging_facts import REPO, console_scripts

PAGES = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
TOP_LEVEL = ("ros2_ws", "wp_policy", "wp_training", "launch", "configs", "tests", "docker", "docs", "bench",
             "scripts", "requirements")
# A repository path: a top-level folder, then path characters (placeholders like <graph> or globs end the match).
REPO_PATH = re.compile(rf"(?<![\w./-])(?:\./)?((?:{'|'.join(TOP_LEVEL)})/[\w./-]*)")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|!\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
FENCE = re.compile(r"^\s*(```|~~~)")
# Build outputs of the colcon workspace that pages may name (`source ros2_ws/install/setup.bash`).
GENERATED = ("ros2_ws/build/", "ros2_ws/install/", "ros2_ws/log/")
# Subcommand-style console scripts: the first positional word selects the parser to ask for --help.
SUBCOMMANDS = {"wp-data", "wp-bag", "wp-train", "wp-launch", "wp-eval"}


# ------------------------------------------------------------------------------------------------------ page parsing
def split_fences(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """``(prose lines, fenced lines)`` of a markdown page, each as ``(line number, text)``."""
    prose, fenced, inside = [], [], False
    for lineno, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            inside = not inside
            continue
        (fenced if inside else prose).append((lineno, line))
    return prose, fenced


def github_slug(heading: str) -> str:
    """The id GitHub gives a heading: markup dropped, lower case, punctuation removed, spaces -> hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@lru_cache(maxsize=None)
def anchors(page: Path) -> frozenset[str]:
    prose, _ = split_fences(page.read_text())
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose:
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = github_slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return frozenset(out)


def where(page: Path, lineno: int) -> str:
    return f"{page.relative_to(REPO)}:{lineno}"


def link_problems(page: Path) -> list[str]:
    problems = []
    prose, _ = split_fences(page.read_text())
    for lineno, line in prose:
        line = CODE_SPAN.sub("", line)
        for m in LINK.finditer(line):
            target = m.group(1) or m.group(2)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
                continue
            path_part, _, anchor = target.partition("#")
            dest = (page.parent / path_part).resolve() if path_part else page
            if not dest.exists():
                problems.append(f"{where(page, lineno)}: link target {target!r} does not exist")
                continue
            try:
                dest.relative_to(REPO)
            except ValueError:
                problems.append(f"{where(page, lineno)}: link target {target!r} leaves the repository")
                continue
            if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append(f"{where(page, lineno)}: {target!r}: no heading with id #{anchor} in "
                                f"{dest.relative_to(REPO)}")
    return problems


def named_paths(page: Path) -> list[tuple[int, str]]:
    """Repository paths named in a page: in code spans, link targets and fenced code."""
    prose, fenced = split_fences(page.read_text())
    found = []
    for lineno, line in prose:
        for span in CODE_SPAN.findall(line):
            found += [(lineno, p) for p in REPO_PATH.findall(span)]
        for m in LINK.finditer(line):
            target = (m.group(1) or m.group(2)).partition("#")[0]
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):
                rel = (page.parent / target).resolve()
                if rel.is_relative_to(REPO) and target:
                    found.append((lineno, str(rel.relative_to(REPO))))
    for lineno, line in fenced:
        found += [(lineno, p) for p in REPO_PATH.findall(line)]
    return found


def path_problems(page: Path) -> list[str]:
    problems = []
    for lineno, path in named_paths(page):
        path = path.rstrip(".")
        if not path or path.startswith(GENERATED) or (REPO / path).exists():
            continue
        problems.append(f"{where(page, lineno)}: `{path}` is not in the repository")
    return problems


# ---------------------------------------------------------------------------------------------------------- commands
def shown_commands() -> dict[tuple[str, str], list[tuple[str, list[str]]]]:
    """``{(command, subcommand): [(where, argv), ...]}`` of every wp-* command in a fenced block of the pages."""
    out: dict[tuple[str, str], list[tuple[str, list[str]]]] = {}
    scripts = console_scripts()
    for page in PAGES:
        _, fenced = split_fences(page.read_text())
        lines = [(n, re.sub(r"^\s*\$\s+", "", text)) for n, text in fenced]
        joined: list[tuple[int, str]] = []
        for n, text in lines:  # join backslash continuations
            if joined and joined[-1][1].endswith("\\"):
                joined[-1] = (joined[-1][0], joined[-1][1][:-1] + " " + text.strip())
            else:
                joined.append((n, text))
        for n, text in joined:
            text = text.split(" #", 1)[0]
            try:
                lex = shlex.shlex(text, posix=True, punctuation_chars=";&|()")
                lex.whitespace_split = True
                tokens = list(lex)
            except ValueError:
                continue  # not shell (a diagram, JSON, ...)
            simple: list[list[str]] = [[]]
            for tok in tokens:
                if tok in {";", "&&", "||", "|", "&", "(", ")"}:
                    simple.append([])
                else:
                    simple[-1].append(tok)
            for argv in simple:
                while argv and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", argv[0]):
                    argv = argv[1:]  # VAR=value prefixes
                if argv and argv[0] in ("nice", "time"):
                    argv = [a for a in argv[1:] if not re.match(r"^-n$|^-?\d+$", a)]
                if not argv:
                    continue
                name = argv[0].removeprefix(".venv/bin/").removeprefix("./.venv/bin/")
                if not name.startswith("wp-"):
                    continue
                assert name in scripts, f"{where(page, n)}: `{name}` is not a console script of the project"
                sub = ""
                if name in SUBCOMMANDS and len(argv) > 1 and not argv[1].startswith("-"):
                    sub = argv[1]
                out.setdefault((name, sub), []).append((where(page, n), argv))
    return out


def run_main(script: str, argv: list[str]) -> tuple[int, str]:
    """Run a console script's ``main(argv)`` in this process; its exit code and what it printed."""
    module, _, func = console_scripts()[script].partition(":")
    main = getattr(importlib.import_module(module.strip()), func.strip())
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return int(code or 0), out.getvalue()


def help_text(script: str, sub: str) -> tuple[int, str]:
    if script == "wp-launch":
        from wp_policy.supervisor import build_parser

        code, shown = run_main(script, [sub, "--show-args"] if sub else ["--help"])
        return code, shown + build_parser().format_help()
    return run_main(script, ([sub] if sub else []) + ["--help"])


# -------------------------------------------------------------------------------------------------------------- tests
def test_links_resolve_and_anchors_exist():
    problems = [p for page in PAGES for p in link_problems(page)]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_named_repository_paths_exist():
    problems = [p for page in PAGES for p in path_problems(page)]
    assert not problems, "paths the docs name that are not in the repository:\n" + "\n".join(problems)


def test_the_path_check_sees_paths():
    """Guard against a parser that silently finds nothing."""
    paths = {p for page in PAGES for _, p in named_paths(page)}
    assert "scripts/train_demo_policy.sh" in paths and any(p.startswith("configs/") for p in paths)
    assert github_slug("Safe end: final holds, never silence") == "safe-end-final-holds-never-silence"
    assert github_slug("Node parameters (`configs/graphs/<graph>.yaml`)") == "node-parameters-configsgraphsgraphyaml"


def test_shown_commands_parse():
    commands = shown_commands()
    assert {"wp-data", "wp-train", "wp-launch", "wp-eval"} <= {name for name, _ in commands}, commands.keys()
    problems = []
    for (script, sub), uses in sorted(commands.items()):
        code, text = help_text(script, sub)
        label = f"{script} {sub}".strip()
        if code != 0:
            problems.append(f"{uses[0][0]}: `{label} --help` exits {code}: {text.strip()[-500:]}")
            continue
        known = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", text))
        for at, argv in uses:
            for arg in argv[1:]:
                option = arg.split("=", 1)[0]
                if option.startswith("--") and len(option) > 2 and option not in known:
                    problems.append(f"{at}: `{label}` has no option {option}")
    assert not problems, "documented commands that do not parse:\n" + "\n".join(problems)


# Notes outside the repository (numbered sections "§N" are theirs; the docs have no such numbering) and the tracker's
# issue numbers (another project's `owner/repo#123` is fine).
OUTSIDE = re.compile(
    r"\bDESIGN\b|\bREFERENCE\.md|(?<![\w.-])seeds/|\.\./shared\b|\bdesign seed\b|§\s*\d|(?<![\w/-])[Ii]ssue #\d+"
)


def repository_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode()
    return [REPO / p for p in listed.split("\0") if p and not p.startswith((".venv/", ".git/"))]


def test_no_references_outside_the_repository():
    this = Path(__file__).resolve()
    problems = []
    for path in repository_files():
        if path.resolve() == this or not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                problems.append(f"{path.relative_to(REPO)}:{lineno}: {line.strip()[:120]}")
    assert not problems, ("references to notes outside the repository or to issue numbers (point to the docs page "
                          "that holds the content instead):\n" + "\n".join(problems))


@pytest.mark.parametrize("line", ["see DESIGN.md", "DESIGN §4", "REFERENCE.md facts", "../shared/x",
                                  "the design seed", "issue #6", "seeds/openvla_oft_memory.md"])
def test_the_outside_pattern_catches(line):
    assert OUTSIDE.search(line)


@pytest.mark.parametrize("line", ["tensorflow/tensorflow#109933", "lerobot #2559", "reset seeds 7..56",
                                  "seed=7", "REFERENCE_POINT"])
def test_the_outside_pattern_spares(line):
    assert not OUTSIDE.search(line)

