#!/usr/bin/env bash
# Entry point of the robot image. A launch file as first argument (the image's default: r1lite.launch.py) runs
#   ros2 launch --launch-prefix docker/run_in_venv.sh wp_policy <launch file> [name:=value ...]
# on the image's ROS 2 Humble with the colcon workspace sourced; any other command runs in that environment:
#   docker compose -f docker/compose.yaml run --rm robot ros2 topic list
set -eo pipefail  # no -u: the ROS setup scripts read unset variables
export WP_ROOT=${WP_ROOT:-/opt/wp-vla}
export WP_BASE_ROS_ROOT=${WP_BASE_ROS_ROOT:-/opt/ros/${ROS_DISTRO:-humble}}
WP_WS_INSTALL=${WP_WS_INSTALL:-$WP_ROOT/ros2_ws/install}

# shellcheck source=/dev/null
source "$WP_BASE_ROS_ROOT/setup.bash"
# shellcheck source=/dev/null
source "$WP_WS_INSTALL/local_setup.bash"

case "${1:-}" in
  "") echo "usage: ros_entrypoint.sh <launch file> [name:=value ...] | <command> [args ...]" >&2; exit 2 ;;
  *.launch.py | *.launch.xml | *.launch.yaml)
    exec ros2 launch --launch-prefix "$WP_ROOT/docker/run_in_venv.sh" wp_policy "$@" ;;
  *) exec "$@" ;;
esac
