"""isoroll benchmarks (issue 2): `python -m bench` runs them all in quick mode.

See docs/benchmarks.md for the figures, the machine and the commands.
"""
