#!/usr/bin/env bash
# Launch prefix of the robot image: `ros2 launch --launch-prefix docker/run_in_venv.sh ...` puts it before every
# process a launch file starts.
# `ros2 launch` runs on the image's ROS 2 Humble (Python 3.10) and passes its environment on. The wp_policy nodes run
# on the project venv (Python 3.11 with the ROS 2 client libraries from PyPI wheels), which must not import Humble's
# Python packages or load its shared libraries. For executables inside the project ($WP_ROOT: the venv and the colcon
# install), this drops every PYTHONPATH, LD_LIBRARY_PATH and AMENT_PREFIX_PATH entry under the base image's ROS
# ($WP_BASE_ROS_ROOT) and maps Humble's ROS_LOCALHOST_ONLY=1 to ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST. Anything
# else (e.g. a Humble tool) runs unchanged.
#   docker/run_in_venv.sh /opt/wp-vla/ros2_ws/install/wp_policy/lib/wp_policy/<node> --ros-args ...
set -euo pipefail
WP_ROOT=${WP_ROOT:-/opt/wp-vla}
WP_BASE_ROS_ROOT=${WP_BASE_ROS_ROOT:-/opt/ros/${ROS_DISTRO:-humble}}

without_base_ros() {  # the ':'-separated list $1 minus entries under $WP_BASE_ROS_ROOT
  local entry kept=""
  local -a parts
  IFS=: read -r -a parts <<< "$1"
  for entry in "${parts[@]}"; do
    case "$entry" in
      "" | "$WP_BASE_ROS_ROOT" | "$WP_BASE_ROS_ROOT"/*) ;;
      *) kept="${kept:+$kept:}$entry" ;;
    esac
  done
  printf '%s' "$kept"
}

[ $# -gt 0 ] || { echo "usage: run_in_venv.sh <executable> [args ...]" >&2; exit 2; }
case "$1" in
  "$WP_ROOT"/*)
    for var in PYTHONPATH LD_LIBRARY_PATH AMENT_PREFIX_PATH; do
      value=$(without_base_ros "${!var:-}")
      if [ -n "$value" ]; then export "$var=$value"; else unset "$var"; fi
    done
    unset _ROS_WHEELS_BOOTSTRAP_COMPLETE  # let the venv's ROS wheels set their own library path
    if [ "${ROS_LOCALHOST_ONLY:-0}" = 1 ] && [ -z "${ROS_AUTOMATIC_DISCOVERY_RANGE:-}" ]; then
      export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
    fi
    ;;
esac
exec "$@"
