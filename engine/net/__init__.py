"""Playbooks compiled into nets (steps as transitions, arcs, joins) and the static checks of spec 14."""
