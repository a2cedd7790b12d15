"""Where and when stages run: devices, placement, and the executors."""
from .devices import DeviceSet, available_cores, resolve_devices, synchronize
from .pipeline import run_pipelined
from .placement import choose_balance, measure_stage_costs, stage_devices
from .record import NonFiniteLossError, RunRecord
from .sequential import run_sequential

__all__ = [
    "DeviceSet", "available_cores", "resolve_devices", "synchronize", "run_pipelined",
    "choose_balance", "measure_stage_costs", "stage_devices", "NonFiniteLossError",
    "RunRecord", "run_sequential",
]
