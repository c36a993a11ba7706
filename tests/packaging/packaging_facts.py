"""What the packaging tests compare against, read from the repository itself so the tests follow the project as it
grows: console scripts from setup.py/pyproject.toml, Makefile targets, launch files and their declared arguments,
Dockerfile stages, compose services, and the shell commands written in the docs."""

from __future__ import annotations

import ast
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
WORKSPACE = REPO / "ros2_ws"
DOCKER_DIR = REPO / "docker"
DOCKERFILE = DOCKER_DIR / "Dockerfile"
COMPOSE_FILE = DOCKER_DIR / "compose.yaml"
DOCS = (REPO / "docs" / "install.md", REPO / "docs" / "deploy.md")
ROS_PACKAGE = "wp_policy"

# The one workspace build command: the colcon test runs exactly this, and the docs and the Dockerfile must say it.
COLCON_BUILD = "colcon build --symlink-install"
# Files `COLCON_BUILD` produces in the workspace (asserted by the colcon test), so docs may `source` them.
COLCON_PRODUCES = ("install/setup.bash", "install/local_setup.bash")
# The R1 Lite SDK is ROS 2 Humble (configs/robots/r1lite.yaml); the robot image must match it for DDS interop.
SDK_ROS_DISTRO = "humble"

SHELL_SEPARATORS = {"&&", "||", ";", "|", "&", "(", ")", ";;"}


# --------------------------------------------------------------------------------------------------- python packages
@lru_cache(maxsize=None)
def ros_console_scripts() -> dict[str, str]:
    """``{name: "module:function"}`` of wp_policy's console scripts (setup.py): colcon installs these into
    ``lib/wp_policy`` where ``ros2 run`` / ``ros2 launch`` look for executables."""
    import setuptools  # noqa: F401  (installs the distutils shim that run_setup lives in)
    from distutils.core import run_setup

    dist = run_setup(str(REPO / "wp_policy" / "setup.py"), stop_after="init")
    return _parse_entry_points((dist.entry_points or {}).get("console_scripts", []))


@lru_cache(maxsize=None)
def console_scripts() -> dict[str, str]:
    """Console scripts of both project packages: wp_policy (setup.py) and wp_training (pyproject.toml)."""
    project = tomllib.loads((REPO / "wp_training" / "pyproject.toml").read_text())["project"]
    return {**ros_console_scripts(), **project.get("scripts", {})}


def _parse_entry_points(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        name, _, target = line.partition("=")
        out[name.strip()] = target.strip()
    return out


def makefile_targets(path: Path = REPO / "Makefile") -> set[str]:
    """Explicit targets of a Makefile (``name: prereqs`` lines; variable assignments excluded)."""
    targets = set()
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.$()/ -]+?)\s*:(?![=:])", line)
        if m and not line.startswith("\t"):
            targets.update(t for t in m.group(1).split() if "$" not in t)
    return targets


def repo_files(folder: str) -> list[Path]:
    """Every file under a top-level repo folder (relative paths), as setup.py's data_files would install them."""
    root = REPO / folder
    return sorted(
        p.relative_to(root) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )


def launch_graph_name(launch_file: Path) -> str:
    """The graph a launch file starts: its module-level ``GRAPH = "<name>"`` (wp_policy.graph holds the nodes)."""
    for node in ast.parse(launch_file.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "GRAPH" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{launch_file} defines no GRAPH name")


def launch_problem(file_name: str, arguments: list[str]) -> str | None:
    """Why ``ros2 launch wp_policy <file_name> <arguments>`` would not start, or None. The arguments go through
    wp_policy.graph.resolve_graph, the function the launch file itself calls (unknown names, types, choices)."""
    from wp_policy.graph import get_graph, parse_launch_args, resolve_graph

    launch_file = REPO / "launch" / file_name
    if not launch_file.is_file():
        return f"launch file {file_name!r} is not in launch/"
    try:
        values = parse_launch_args(arguments)
        values.pop("policy", None)  # a file on the robot (the mounted checkpoints), read only when the graph starts
        if Path(values.get("robot_config", "")).suffix in (".yaml", ".yml"):
            values["robot_config"] = "r1lite"  # a robot YAML there too: a shipped robot stands in for it
        resolve_graph(get_graph(launch_graph_name(launch_file)), values)
    except (ValueError, FileNotFoundError) as exc:
        return f"{file_name} {' '.join(arguments)}: {exc}"
    return None


def package_names(workspace_src: Path) -> list[str]:
    """The ``<name>`` of every package.xml directly under a workspace's src/ (what colcon will build)."""
    names = []
    for xml in sorted(workspace_src.glob("*/package.xml")):
        m = re.search(r"<name>\s*([^<\s]+)\s*</name>", xml.read_text())
        assert m, f"{xml}: no <name> element"
        names.append(m.group(1))
    return names


# --------------------------------------------------------------------------------------------------------- docker
@dataclass
class Instruction:
    keyword: str  # upper case, e.g. "RUN"
    args: str  # the instruction's text with line continuations joined
    line: int  # 1-based line of the keyword


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(path: Path) -> list[Stage]:
    """Stages of a Dockerfile with their instructions (continuations joined, comments dropped)."""
    stages: list[Stage] = []
    logical, start = "", 0
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if logical and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are ignored by Docker
        start = start or lineno
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        keyword, _, args = logical.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            words = [w for w in words if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name=name, base=words[0]))
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, args, start))
        logical, start = "", 0
    return stages


def exec_form(args: str) -> list[str] | None:
    """The argv of an exec-form (JSON array) CMD/ENTRYPOINT, or None for shell form."""
    if args.startswith("["):
        return [str(a) for a in yaml.safe_load(args)]
    return None


def copy_sources(args: str) -> list[str]:
    """Source paths of a COPY/ADD instruction (options such as --chmod dropped; the last word is the destination)."""
    words = exec_form(args) or shlex.split(args)
    words = [w for w in words if not w.startswith("--")]
    return words[:-1]


def load_compose(path: Path = COMPOSE_FILE) -> dict:
    return yaml.safe_load(path.read_text())


def dockerignore_for(dockerfile: Path) -> Path:
    """BuildKit reads ``<Dockerfile>.dockerignore`` beside the Dockerfile before the context's .dockerignore."""
    return dockerfile.with_name(dockerfile.name + ".dockerignore")


# ---------------------------------------------------------------------------------------------------- shell / docs
@dataclass
class Command:
    argv: list[str]
    cwd: Path  # the directory the command runs in (``cd`` earlier in the same block or RUN moves it)
    where: str  # "docs/deploy.md:42" for messages


def fenced_shell_blocks(md: Path) -> list[tuple[int, str]]:
    """``(first line, text)`` of every ```bash / ```sh / ```shell / ```console block of a markdown file."""
    blocks: list[tuple[int, str]] = []
    inside, is_shell, start, body = False, False, 0, []
    for lineno, line in enumerate(md.read_text().splitlines(), 1):
        fence = re.match(r"^\s*```\s*(\w*)", line)
        if fence and not inside:
            inside, is_shell, start, body = True, fence.group(1) in ("bash", "sh", "shell", "console"), lineno + 1, []
        elif fence:
            if is_shell:
                blocks.append((start, "\n".join(body)))
            inside = False
        elif inside:
            body.append(line)
    return blocks


def commands_in(text: str, cwd: Path, where: str, first_line: int = 1) -> list[Command]:
    """Simple commands of a shell snippet: continuations joined, ``$ `` prompts and comments dropped, split on
    ``&&``/``;``/``|``, leading ``VAR=value`` words removed; ``cd`` moves the cwd of the commands after it."""
    out = []
    lines = text.replace("\\\n", " ").splitlines()
    for offset, line in enumerate(lines):
        line = re.sub(r"^\s*\$\s+", "", line)
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        lex = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
        lex.whitespace_split = True
        argv: list[str] = []
        for tok in list(lex) + [";"]:
            if tok not in SHELL_SEPARATORS:
                argv.append(tok)
                continue
            while argv and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", argv[0]):
                argv.pop(0)
            if argv and argv[0] == "cd" and len(argv) > 1:
                cwd = (cwd / argv[1]).resolve() if not argv[1].startswith("/") else Path(argv[1])
            elif argv:
                out.append(Command(argv, cwd, f"{where}:{first_line + offset}"))
            argv = []
    return out


def doc_commands(md: Path) -> list[Command]:
    rel = md.relative_to(REPO)
    return [cmd for start, text in fenced_shell_blocks(md) for cmd in commands_in(text, REPO, str(rel), start)]


def dockerfile_commands(stage: Stage) -> list[Command]:
    """Simple commands of a stage's RUN instructions, run from the repo root (the image's WORKDIR holds a copy of
    the repository, so repo-relative paths are checked against this checkout)."""
    out = []
    for ins in stage.all("RUN"):
        out += commands_in(ins.args, REPO, str(DOCKERFILE.relative_to(REPO)), ins.line)
    return out
