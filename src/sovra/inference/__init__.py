"""Engines as supervised processes: drivers build argv, the supervisor runs replicas, pools pick one."""
