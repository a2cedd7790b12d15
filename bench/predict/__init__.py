"""Predict a method's step time on N devices from one-device measurements (issue #18; docs/PREDICT.md).

A discrete-event simulation of each method's schedule (`schedules.py`, run by
`simulator.py`) over per-stage costs measured on one device (`costs.py`,
`inputs.py`) and a link profile (`links.py`):

    python -m bench.predict results/<grid> --devices 2 4 8 [--link NAME|FILE]
"""
