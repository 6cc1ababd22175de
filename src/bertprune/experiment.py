"""Output paths of an experiment, and the rule for skipping a finished stage.

Each stage writes a JSON record whose `stage_key` hashes the configuration sections it depends
on and the keys of the stages before it. A rerun skips a stage whose record exists with the same
key, so `make` targets are idempotent, and reruns it when an input changed. Records are written
last and atomically, so an interrupted stage leaves no record and is run again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from bertprune import __version__
from bertprune.config import ExperimentConfig
from bertprune.provenance import atomic_write_text, sha256_json

logger = logging.getLogger(__name__)

DEFAULT_RESULTS_ROOT = Path("results")


class ExperimentPaths:
    """The files of one experiment below `results/<experiment name>/`."""

    def __init__(self, config: ExperimentConfig, results_root: str | Path = DEFAULT_RESULTS_ROOT):
        self.root = Path(results_root) / config.name
        self.config_file = self.root / "config.yaml"
        self.finetuned_model = self.root / "finetuned"
        self.finetune_checkpoint = self.root / "finetune-checkpoint"
        self.finetune_record = self.root / "finetune.json"
        self.pruned_model = self.root / "pruned"
        self.masks = self.root / "masks.safetensors"
        self.prune_record = self.root / "prune.json"
        self.metrics = self.root / "metrics.json"
        self.mlperf = self.root / "mlperf"
        self.mlperf_summary = self.mlperf / "summary.json"
        self.compare_record = self.root / "compare.json"
        self.compare_report = self.root / "compare.md"

    def downstream_records(self, stage: str) -> list[Path]:
        """Return the records of the stages that consume `stage`'s outputs, nearest first."""
        order = [
            ("finetune", self.finetune_record),
            ("prune", self.prune_record),
            ("eval", self.metrics),
            ("mlperf", self.mlperf_summary),
        ]
        names = [name for name, _ in order]
        # The comparison reads every stage's outputs, so any new output makes it stale.
        return [path for _, path in order[names.index(stage) + 1 :]] + [self.compare_record, self.compare_report]


def dense_model_source(config: ExperimentConfig, paths: ExperimentPaths) -> str:
    """Return the task model to prune: the fine-tuned folder when the experiment fine-tunes, else model.source."""
    return str(paths.finetuned_model) if config.finetune.enabled else config.model.source


def stage_key(config: ExperimentConfig, sections: tuple[str, ...], upstream: list[str | None]) -> str:
    data = {}
    for name in sections:
        value = getattr(config, name)
        data[name] = asdict(value) if is_dataclass(value) else value
    return sha256_json({"bertprune": __version__, "sections": data, "upstream": upstream})


def finetune_key(config: ExperimentConfig) -> str | None:
    if not config.finetune.enabled:
        return None
    return stage_key(config, ("seed", "model", "task", "finetune"), [])


def prune_key(config: ExperimentConfig) -> str:
    return stage_key(config, ("seed", "model", "task", "prune"), [finetune_key(config)])


def eval_key(config: ExperimentConfig) -> str:
    return stage_key(config, ("eval",), [prune_key(config)])


def read_record(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        logger.warning("%s is not valid JSON; the stage that writes it will run again", path)
        return None


def is_up_to_date(record_path: Path, key: str, outputs: list[Path]) -> bool:
    """Return True when the stage's record has this key and all its outputs exist."""
    record = read_record(record_path)
    if record is None or record.get("stage_key") != key:
        return False
    missing = [str(path) for path in outputs if not path.exists()]
    if missing:
        logger.warning("%s exists but %s is missing; running the stage again", record_path, ", ".join(missing))
        return False
    return True


def invalidate_downstream(paths: ExperimentPaths, stage: str) -> None:
    """Delete the records of later stages before `stage` writes new outputs.

    Stage keys hash configuration, not the upstream outputs themselves, so a forced rerun would
    otherwise leave later stages looking up to date while they describe the old model.
    """
    for record in paths.downstream_records(stage):
        if record.is_file():
            record.unlink()
            logger.info("removed %s: it describes outputs that %s is about to replace", record, stage)


def require_record(path: Path, key: str, make_target: str) -> dict[str, Any]:
    """Return an upstream stage's record, or raise FileNotFoundError naming the target that makes it."""
    record = read_record(path)
    if record is None:
        raise FileNotFoundError(f"{path} not found; run `make {make_target}` for this experiment first")
    if record.get("stage_key") != key:
        raise FileNotFoundError(
            f"{path} was made from other inputs than the current experiment file; run `make {make_target}` again"
        )
    return record


def save_resolved_config(config: ExperimentConfig, paths: ExperimentPaths) -> None:
    atomic_write_text(paths.config_file, yaml.safe_dump(config.to_dict(), sort_keys=False))
