"""Download the checkpoints and datasets that the experiments in experiments/paper/ load from the hub.

Files go to the Hugging Face cache that HF_HOME names (default ~/.cache/huggingface), where
transformers and datasets find them later, also with HF_HUB_OFFLINE=1. The Docker image runs
this script when it is built with PREFETCH_PAPER=1. Experiments that read a local model folder
or local data files need nothing from the hub and add nothing to the list.

    python scripts/prefetch_paper_assets.py              # download everything
    python scripts/prefetch_paper_assets.py --dry-run    # only list what would be downloaded
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from bertprune.config import GLUE_TASK_NAMES, ConfigError, load_config
from bertprune.data.glue import HUB_DATASET as GLUE_HUB_DATASET
from bertprune.data.glue import get_glue_task
from bertprune.models import resolve_source

logger = logging.getLogger("prefetch_paper_assets")

DEFAULT_EXPERIMENTS_DIR = Path(__file__).resolve().parent.parent / "experiments" / "paper"

# The hub datasets that bertprune.data.squad.load_squad_examples_from_hub reads.
SQUAD_HUB_DATASETS = {"squad": "rajpurkar/squad", "squad_v2": "rajpurkar/squad_v2"}

# Weights for other frameworks and runtimes, which the PyTorch loader of transformers never reads.
OTHER_FRAMEWORK_FILES = ["*.h5", "*.msgpack", "*.ot", "*.tflite", "*.mlmodel", "onnx/*", "coreml/*", "openvino/*"]


@dataclass(frozen=True, order=True)
class HubModel:
    repo_id: str
    revision: str | None


@dataclass(frozen=True, order=True)
class HubDataset:
    path: str
    config_name: str | None


def collect_assets(experiment_files: list[Path]) -> tuple[list[HubModel], list[HubDataset]]:
    """Return the hub models and hub datasets that the experiment files load, sorted and without repeats."""
    models: set[HubModel] = set()
    datasets: set[HubDataset] = set()
    for path in experiment_files:
        config = load_config(path)
        location, is_local = resolve_source(config.model.source)
        if not is_local:
            models.add(HubModel(location, config.model.revision))

        task = config.task
        if task.name in GLUE_TASK_NAMES and task.data_dir is None:
            datasets.add(HubDataset(GLUE_HUB_DATASET, get_glue_task(task.name).hub_config))
        elif task.name in SQUAD_HUB_DATASETS and (task.train_file is None or task.dev_file is None):
            datasets.add(HubDataset(SQUAD_HUB_DATASETS[task.name], None))
    return sorted(models), sorted(datasets)


def download_model(model: HubModel) -> None:
    """Download one model repository; skip .bin weights when the repository also has safetensors."""
    from huggingface_hub import list_repo_files, snapshot_download

    ignore = list(OTHER_FRAMEWORK_FILES)
    files = list_repo_files(model.repo_id, revision=model.revision)
    if any(name.endswith(".safetensors") for name in files):
        ignore.append("*.bin")
    folder = snapshot_download(model.repo_id, revision=model.revision, ignore_patterns=ignore)
    logger.info("model %s is in %s", model.repo_id, folder)


def download_dataset(dataset: HubDataset) -> None:
    """Download and prepare every split of one dataset configuration, as load_dataset caches it."""
    import datasets

    splits = datasets.load_dataset(dataset.path, dataset.config_name)
    sizes = ", ".join(f"{name} {len(split)}" for name, split in splits.items())
    logger.info("dataset %s %s: %s rows", dataset.path, dataset.config_name or "", sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--experiments-dir",
        type=Path,
        default=DEFAULT_EXPERIMENTS_DIR,
        help="folder whose *.yaml experiment files name the assets (default: experiments/paper)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list the assets without downloading them")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    experiment_files = sorted(arguments.experiments_dir.glob("*.yaml"))
    if not experiment_files:
        print(f"error: no *.yaml experiment files in {arguments.experiments_dir}; pass --experiments-dir", file=sys.stderr)
        sys.exit(2)
    try:
        models, datasets = collect_assets(experiment_files)
    except (ConfigError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)

    logger.info("%d experiment files name %d hub models and %d hub datasets", len(experiment_files), len(models), len(datasets))
    for model in models:
        print(f"model {model.repo_id}" + (f"@{model.revision}" if model.revision else ""))
    for dataset in datasets:
        print(f"dataset {dataset.path}" + (f" {dataset.config_name}" if dataset.config_name else ""))
    if arguments.dry_run:
        return

    for model in models:
        download_model(model)
    for dataset in datasets:
        download_dataset(dataset)


if __name__ == "__main__":
    main()
