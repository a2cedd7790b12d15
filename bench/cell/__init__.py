"""One cell inside its own process, as a pipeline of phases (bench/cell/phases.py).

    phases.py        prepare data -> build -> place (balance) -> train or sample -> evaluate -> profile -> row
    training_run.py  the training-run mode of the train-or-sample phase (whole epochs, resumable)
    rows.py          the row's common columns and failed rows (torch-free: the runner uses it)
    __main__.py      `python -m bench.cell CELL.json ROW.json`: what the runner's supervisor starts per cell
"""
