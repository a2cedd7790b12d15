"""One cell inside its own process: prepare data, build, place, train, time, evaluate, profile.

`python -m bench.cell.run CELL.json ROW.json` is what the runner starts per cell.
"""
