"""The pipeline: one TOML config from raw scans (CXI ptychographic series, Data Exchange TXTM) to answers.

``run(config)`` runs the stages ``ptycho, pxct, txtm, fsc, register, fuse, segment, particles,
coverage, echem, report`` into a run directory (one folder and one ``manifest.json`` per stage,
the resolved config, ``run.log``), resuming where an earlier run stopped; ``check(config)``
validates the config and its inputs and estimates each stage's memory; ``template(name)`` is a
commented config; ``simulate_raw`` writes raw files of a phantom and their config; ``demo`` runs
the paper's study on a pristine and a cycled phantom and writes one report beside the truth.  The
command line is ``tomofuse run / check / config / demo / <stage>`` (``tomofuse.cli``).
"""

from ._check import CheckReport, check
from ._config import SCHEMA, STAGES, TEMPLATES, Config, ConfigError, Key, load_config, template
from ._run import RunResult, StageError, parameter_hash, run, run_stage
from ._simulate import SimulatedScan, simulate_raw
from ._demo import DemoResult, demo
from ._stages import STAGE_HELP, plan

__all__ = ["CheckReport", "Config", "ConfigError", "DemoResult", "Key", "RunResult", "SCHEMA", "STAGES", "STAGE_HELP", "SimulatedScan",
           "StageError", "TEMPLATES", "check", "demo", "load_config", "parameter_hash", "plan", "run", "run_stage",
           "simulate_raw", "template"]
