"""Tiny random BERT, RoBERTa and DistilBERT models and padded batches for fast stage tests."""

import torch
from transformers import (
    BertConfig,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
)

VOCAB_SIZE = 120

# Shared by the BERT and RoBERTa configs: 3 layers of 4 heads of size 8 and 48 FFN neurons, no
# dropout, and a wide initialisation so that masking changes the logits noticeably.
BERT_LIKE = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    intermediate_size=48,
    max_position_embeddings=64,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    initializer_range=0.2,
)


def tiny_bert(num_labels: int = 2, seed: int = 0, attn_implementation: str = "sdpa", question_answering=False):
    torch.manual_seed(seed)
    config = BertConfig(**BERT_LIKE, num_labels=num_labels, attn_implementation=attn_implementation)
    model_class = BertForQuestionAnswering if question_answering else BertForSequenceClassification
    return model_class(config).eval()


# The same sizes in DistilBERT's config names.
DISTILBERT_LIKE = dict(
    vocab_size=VOCAB_SIZE,
    dim=32,
    n_layers=3,
    n_heads=4,
    hidden_dim=48,
    max_position_embeddings=64,
    dropout=0.0,
    attention_dropout=0.0,
    initializer_range=0.2,
)


def tiny_distilbert(num_labels: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    config = DistilBertConfig(**DISTILBERT_LIKE, num_labels=num_labels)
    return DistilBertForSequenceClassification(config).eval()


def padded_batches(num_batches=4, batch_size=6, max_len=20, num_labels=2, seed=0, token_type_ids=True):
    """Batches of random token ids with right padding of varying length and random labels."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(num_batches):
        lengths = torch.randint(4, max_len + 1, (batch_size,), generator=generator)
        lengths[0] = max_len
        input_ids = torch.randint(1, VOCAB_SIZE, (batch_size, max_len), generator=generator)
        attention_mask = (torch.arange(max_len)[None, :] < lengths[:, None]).long()
        input_ids = input_ids * attention_mask
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids:
            batch["token_type_ids"] = torch.zeros_like(input_ids)
        if num_labels == 1:
            batch["labels"] = torch.randn(batch_size, generator=generator)
        else:
            batch["labels"] = torch.randint(0, num_labels, (batch_size,), generator=generator)
        batches.append(batch)
    return batches


def tiny_roberta(num_labels: int = 2, seed: int = 0):
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(seed)
    # Padding id 0 as in the BERT batches, so that RoBERTa's position ids skip the same tokens.
    config = RobertaConfig(**BERT_LIKE, num_labels=num_labels, pad_token_id=0)
    return RobertaForSequenceClassification(config).eval()
