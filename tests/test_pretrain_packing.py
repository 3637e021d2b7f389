"""Packing whole documents into windows: no document is ever split, padding is never trained."""

import random

import pytest
import torch

from advfusion_cli.pretrain.packing import IGNORE_INDEX, pack_documents
from advfusion_cli.pretrain.schedule import warmup_cosine_lr

PAD = 0


def _documents(n: int, seed: int, max_len: int) -> list[list[int]]:
    rng = random.Random(seed)
    # Each document's tokens spell its own index, so its span can be checked token for token.
    return [[1000 + i] * rng.randint(1, max_len) for i in range(n)]


@pytest.mark.parametrize("seq_len,max_len", [(32, 12), (64, 64), (16, 20)])
def test_every_document_lands_whole_in_exactly_one_window(seq_len, max_len):
    docs = _documents(300, seed=seq_len, max_len=max_len)
    packed = pack_documents(docs, seq_len=seq_len, pad_id=PAD, seed=3)

    too_long = [i for i, d in enumerate(docs) if len(d) > seq_len]
    assert packed.skipped_too_long == len(too_long)
    placed = [doc for spans in packed.document_spans for doc, _, _ in spans]
    assert sorted(placed) == sorted(set(range(len(docs))) - set(too_long))

    for row, spans in enumerate(packed.document_spans):
        cursor = 0
        for doc, start, end in spans:
            assert start == cursor  # documents sit back to back, no gaps inside a window
            assert packed.input_ids[row, start:end].tolist() == docs[doc]
            cursor = end
        assert packed.input_ids[row, cursor:].eq(PAD).all()
        assert packed.attention_mask[row, :cursor].eq(1).all()
        assert packed.attention_mask[row, cursor:].eq(0).all()


def test_padding_is_masked_out_of_the_loss_and_real_tokens_are_not():
    docs = _documents(50, seed=1, max_len=10)
    packed = pack_documents(docs, seq_len=24, pad_id=PAD)
    real = packed.attention_mask.bool()
    assert packed.labels[~real].eq(IGNORE_INDEX).all()
    assert torch.equal(packed.labels[real], packed.input_ids[real])
    assert packed.n_tokens == sum(len(d) for d in docs)


def test_packing_is_deterministic_by_seed_and_fills_windows():
    docs = _documents(400, seed=2, max_len=30)
    a = pack_documents(docs, seq_len=128, pad_id=PAD, seed=7)
    b = pack_documents(docs, seq_len=128, pad_id=PAD, seed=7)
    c = pack_documents(docs, seq_len=128, pad_id=PAD, seed=8)
    assert torch.equal(a.input_ids, b.input_ids)
    assert not torch.equal(a.input_ids, c.input_ids)
    # First-fit over 64 open windows wastes little: mean doc 15.5 tokens in 128-token windows.
    assert a.fill_rate() > 0.9


def test_a_document_exactly_as_long_as_the_window_fits_alone():
    packed = pack_documents([[5] * 8, [6] * 3], seq_len=8, pad_id=PAD)
    assert packed.skipped_too_long == 0
    assert sorted(len(s) for s in packed.document_spans) == [1, 1]


def test_warmup_then_cosine_reaches_the_floor():
    lrs = [warmup_cosine_lr(s, 100, 1.0, 10, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))  # monotone decay
    assert warmup_cosine_lr(100, 100, 1.0, 10, 0.1) == pytest.approx(0.1)
    assert lrs[55] == pytest.approx(0.1 + 0.9 * 0.5, abs=1e-9)  # half-way down the cosine
