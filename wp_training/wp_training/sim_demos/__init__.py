"""Scripted demonstrations in simulation (``wp-data collect-sim``): the experts for the robosuite stand-ins and real
LIBERO, and the attempt cache that makes a long collection resumable."""
