"""wp-launch: run a graph from ``wp_policy.graph`` on a pip install, one process per node (no ``launch`` needed).

Each node runs as ``python -m <module> --ros-args -r __node:=<name> --params-file <graph yaml> --params-file
<argument overrides>``, i.e. exactly the nodes, parameters and remappings ``ros2 launch`` would start. Output lines
are prefixed with ``[node]``. Ctrl-C / SIGTERM stop every node (SIGINT, then SIGTERM, then SIGKILL after a grace
period) and exit 0. If a node exits on its own, the supervisor names it, stops the others (SIGTERM first: a node
still importing its modules ends without a KeyboardInterrupt traceback) and exits 1, unless it is the graph's
``ends_graph`` node (e.g. the LIBERO bridge after its last episode) exiting with 0: then the run is complete, the
others are stopped and wp-launch exits 0 (a non-zero exit of that node still gives 1).

A node that cannot start (a missing checkpoint, a bad parameter, no CUDA for ``device:=cuda``) logs one ``cannot
start: <reason>`` line and exits 1; wp-launch reports that as one line per node, ``[wp-launch] ERROR: node
'planner' cannot start (exited with code 1): <reason>``, stops the graph and exits 1. Such a node never commanded
the robot, so it gets no final hold.

A node that ``covers`` another (the r1lite graph's ``final_hold`` covers the filler) is not started with the graph:
it runs once, at once, when the covered node dies without a clean exit (crash, kill, non-zero code, or still
running after the stop signals), so the robot gets an explicit hold on every command topic rather than silence. A
filler that exits cleanly has sent its own final hold.

A node process found stopped (state T: SIGSTOP, Ctrl-Z) for ``FROZEN_S`` is killed: a frozen filler would leave the
robot without commands and nothing would notice; killed, it is a dead node (final hold, graph stopped, exit 1).
Hung nodes that are not stopped show up as lost heartbeats on the aggregator's /diagnostics.

    wp-launch r1lite policy:=ckpt/policy.yaml                    # every setting of the policy file
    wp-launch r1lite policy:=ckpt/policy.yaml device:=cuda:1     # arguments override the policy file's settings
    wp-launch r1lite vlm_checkpoint:=ckpt/vlm ae_checkpoint:=ckpt/ae stats:=ckpt/stats.json tokenizer:=tok.model
    wp-launch r1lite --nodes aggregator use_sim_time:=true      # just the aggregator, following /clock
    wp-launch robot robot_config:=robots/my_arm.yaml policy:=ckpt/policy.yaml   # any robot by its YAML
    wp-launch libero_sim --show-args
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import yaml

from wp_policy.cli_help import HelpFormatter
from wp_policy.graph import GRAPHS, STARTUP_FAILURE, ResolvedNode, get_graph, parse_launch_args, resolve_graph
from wp_policy.process_utils import die_with_parent

POLL_S = 0.05
COVER_TIMEOUT_S = 15.0  # a cover (final hold) waits up to a few seconds for feedback and the controllers
FROZEN_S = 2.0  # a node process stopped (state T) this long is killed


def node_command(node: ResolvedNode, overrides_file: Path, python: str = sys.executable) -> list[str]:
    """The command line that starts ``node`` (module form, so no install step is needed)."""
    cmd = [python, "-m", node.module, "--ros-args", "-r", f"__node:={node.name}"]
    for f in node.params_files:
        cmd += ["--params-file", str(f)]
    cmd += ["--params-file", str(overrides_file)]
    for src, dst in node.remaps:
        cmd += ["-r", f"{src}:={dst}"]
    return cmd


def write_overrides(node: ResolvedNode, directory: Path) -> Path:
    """The argument-derived parameters as a params YAML keyed by node name (typed, unlike ``-p name:=value``)."""
    path = directory / f"{node.name}.overrides.yaml"
    path.write_text(yaml.safe_dump({node.name: {"ros__parameters": dict(node.parameters)}}, sort_keys=True))
    return path


class Supervisor:
    """Starts resolved nodes, relays their output, and tears everything down on request or on a node's death."""

    def __init__(self, nodes: Sequence[ResolvedNode], grace_s: float = 5.0, out: TextIO = sys.stdout):
        if not nodes:
            raise ValueError("no nodes to start")
        self.nodes = list(nodes)
        self.grace_s = grace_s
        self.out = out
        self.procs: dict[str, subprocess.Popen] = {}
        self.covers = {n.covers: n for n in self.nodes if n.covers}  # covered node name -> its one-shot cover
        self._covered: set[str] = set()  # covers already run
        self._stopped_since: dict[str, float] = {}  # node -> when it was first seen stopped (state T)
        self._stop = threading.Event()
        self._readers: dict[str, threading.Thread] = {}
        self._startup_failures: dict[str, str] = {}  # node -> the reason it gave for not starting (reported once)
        self._reported: set[str] = set()
        self._out_lock = threading.Lock()
        self._tmp = Path(tempfile.mkdtemp(prefix="wp-launch-"))

    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def start(self) -> None:
        for node in self.nodes:
            if not node.covers:
                self._spawn(node)
        for name, proc in self.procs.items():  # after all forks: preexec_fn is not safe once threads exist
            self._start_relay(name, proc)

    def _spawn(self, node: ResolvedNode) -> subprocess.Popen:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        cmd = node_command(node, write_overrides(node, self._tmp))
        proc = self.procs[node.name] = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True, preexec_fn=die_with_parent,  # SIGTERM if wp-launch is killed
        )
        self._print(f"[wp-launch] started {node.name} (pid {proc.pid}): {' '.join(cmd)}")
        return proc

    def _start_relay(self, name: str, proc: subprocess.Popen) -> None:
        t = threading.Thread(target=self._relay, args=(name, proc), daemon=True)
        t.start()
        self._readers[name] = t

    def _run_cover(self, covered: str, code: int | None) -> None:
        """Run the one-shot node that covers ``covered`` (once), because it ended with ``code`` (None: still alive
        after every signal, i.e. frozen)."""
        cover = self.covers.get(covered)
        if cover is None or covered in self._covered or covered in self._startup_failures:
            return  # (a node that could not start never commanded the robot)
        self._covered.add(covered)
        why = "is not responding" if code is None else _describe_exit(code)
        self._print(f"[wp-launch] {covered} {why}: running {cover.name} so the robot gets a final hold")
        proc = self._spawn(cover)
        self._start_relay(cover.name, proc)
        try:
            proc.wait(timeout=COVER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
        self._print(f"[wp-launch] {cover.name} {_describe_exit(proc.returncode)}")

    def wait(self) -> int:
        """Block until a stop request (-> 0), the ``ends_graph`` node finishing with 0 (-> 0), or any other node
        exit (-> 1); the remaining nodes are stopped in every case."""
        ends = {n.name for n in self.nodes if n.ends_graph}
        first = signal.SIGINT
        try:
            while not self._stop.wait(POLL_S):
                self._kill_frozen()
                for name, proc in self.procs.items():
                    code = proc.poll()
                    if code == 0 and name in ends:
                        self._print(f"[wp-launch] node '{name}' finished (exit code 0); stopping the graph")
                        return 0
                    if code is not None and name not in self._covered_names:
                        self._report_exit(name, proc)
                        self._run_cover(name, code)
                        # the others may still be importing (a start-up failure comes early): SIGTERM ends such a
                        # process silently where SIGINT prints a KeyboardInterrupt traceback; a running node takes
                        # either as a clean stop (node_main)
                        first = signal.SIGTERM
                        return 1
            return 0
        finally:
            self.shutdown(first)

    def _kill_frozen(self) -> None:
        now = time.monotonic()
        for name, proc in self.procs.items():
            if proc.poll() is not None or _process_state(proc.pid) != "T":
                self._stopped_since.pop(name, None)
                continue
            since = self._stopped_since.setdefault(name, now)
            if now - since >= FROZEN_S:
                self._print(f"[wp-launch] ERROR: node '{name}' (pid {proc.pid}) has been stopped (SIGSTOP) for "
                            f"{now - since:.1f} s; killing it")
                _signal_group(proc, signal.SIGKILL)

    @property
    def _covered_names(self) -> set[str]:
        return {n.name for n in self.covers.values()}

    def shutdown(self, first: signal.Signals = signal.SIGINT) -> None:
        """``first`` (SIGINT) to every running node, then SIGTERM, then SIGKILL, each after the grace period; then the
        cover of any covered node that did not exit cleanly (0 after the first signal)."""
        frozen = set()
        steps = [(first, self.grace_s), *([(signal.SIGTERM, 2.0)] if first != signal.SIGTERM else []),
                 (signal.SIGKILL, 2.0)]
        for sig, wait_s in steps:
            alive = [p for p in self.procs.values() if p.poll() is None]
            if not alive:
                break
            if sig == signal.SIGKILL:
                frozen = {name for name, p in self.procs.items() if p.poll() is None}
            if sig != first:
                self._print(f"[wp-launch] {len(alive)} node(s) still running; sending {sig.name}")
            for p in alive:
                _signal_group(p, sig)
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and any(p.poll() is None for p in alive):
                time.sleep(POLL_S)
        for name in list(self.covers):
            proc = self.procs.get(name)
            if proc is not None and (name in frozen or proc.returncode != 0):
                self._run_cover(name, None if name in frozen else proc.returncode)
        for t in self._readers.values():
            t.join(timeout=2.0)
        for name in list(self._startup_failures):  # others that failed while the graph was stopping
            self._report_exit(name, self.procs[name])
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _report_exit(self, name: str, proc: subprocess.Popen) -> None:
        """One ERROR line for a node that ended on its own: its start-up failure reason if it gave one."""
        if name in self._reported:
            return
        self._reported.add(name)
        self._readers[name].join(timeout=2.0)  # its last lines (the reason) are read before it is reported
        reason = self._startup_failures.get(name)
        if reason is not None:
            self._print(f"[wp-launch] ERROR: node '{name}' cannot start ({_describe_exit(proc.returncode)}): {reason}")
        else:
            self._print(f"[wp-launch] ERROR: node '{name}' (pid {proc.pid}) {_describe_exit(proc.returncode)}; "
                        "stopping the graph")

    def _relay(self, name: str, proc: subprocess.Popen) -> None:
        """Print the node's output prefixed with its name; its fatal start-up failure line is kept for
        _report_exit."""
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            head, found, reason = line.partition(STARTUP_FAILURE)
            if found and "FATAL" in head and name not in self._startup_failures:
                self._startup_failures[name] = reason
                continue
            self._print(f"[{name}] {line}")
        proc.stdout.close()

    def _print(self, line: str) -> None:
        with self._out_lock:
            print(line, file=self.out, flush=True)


def _signal_group(proc: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)  # the node and anything it started (its own session)
    except ProcessLookupError:
        pass


def _process_state(pid: int) -> str:
    """The state letter of /proc/<pid>/stat (R, S, D, T, Z, ...); "" where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat[stat.rindex(")") + 2:][:1]  # the command name may contain spaces and parentheses


def _describe_exit(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def build_parser() -> argparse.ArgumentParser:
    description, examples = __doc__.split("\n\n    wp-launch r1lite policy:=", 1)
    parser = argparse.ArgumentParser(
        prog="wp-launch", description=description, formatter_class=HelpFormatter,
        epilog="examples:\n    wp-launch r1lite policy:=" + examples,
    )
    parser.add_argument("graph", choices=sorted(GRAPHS), help="graph to run (wp_policy.graph)")
    parser.add_argument("arguments", nargs="*", metavar="name:=value", help="launch arguments (see --show-args)")
    parser.add_argument("--nodes", default="", help="comma-separated subset of nodes to start (empty: all)")
    parser.add_argument("--show-args", action="store_true", help="list the graph's arguments and exit")
    parser.add_argument("--print", dest="dry_run", action="store_true", help="print the node commands and exit")
    parser.add_argument("--grace", type=float, default=5.0, help="seconds nodes get to exit after Ctrl-C")
    return parser


def _show_args(graph_name: str) -> None:
    graph = get_graph(graph_name)
    print(f"{graph.name}: {graph.description}\nnodes: {', '.join(n.name for n in graph.nodes)}\narguments:")
    for a in graph.arguments:
        choices = f" {{{', '.join(a.choices)}}}" if a.choices else ""
        print(f"  {a.name}:={a.default!r} ({a.type}{choices})\n      {a.help}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)  # options may come before or after name:=value items
    if args.show_args:
        _show_args(args.graph)
        return 0
    try:
        only = [n.strip() for n in args.nodes.split(",") if n.strip()] or None
        nodes = resolve_graph(get_graph(args.graph), parse_launch_args(args.arguments), only)
    except (ValueError, FileNotFoundError) as exc:
        print(f"wp-launch: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        for node in nodes:
            print(" ".join(node_command(node, Path(f"<{node.name}.overrides.yaml>"))))
            print(f"    overrides: {dict(node.parameters)}")
        return 0
    sup = Supervisor(nodes, grace_s=args.grace)
    signal.signal(signal.SIGINT, sup.request_stop)
    signal.signal(signal.SIGTERM, sup.request_stop)
    sup.start()
    return sup.wait()


if __name__ == "__main__":
    sys.exit(main())
