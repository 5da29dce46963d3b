"""The fleet simulator: virtual devices that speak the agent's protocol.

For demos, drills and benchmarks::

    devices = register_fleet(conn, schools=50, devices_per_school=100)
    conn.commit()
    report = Simulator(devices, SimulationConfig(mqtt_url=url)).run()

or in the background, while a demo or a drill does something else::

    simulator = Simulator(devices, SimulationConfig(mqtt_url=url))
    simulator.start()
    ...
    report = simulator.join()
"""

from .fleet import VirtualDevice, lesson_load
from .registry import load_fleet, register_fleet
from .runner import SimulationConfig, SimulationReport, Simulator

__all__ = [
    "SimulationConfig",
    "SimulationReport",
    "Simulator",
    "VirtualDevice",
    "lesson_load",
    "load_fleet",
    "register_fleet",
]
