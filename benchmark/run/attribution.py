"""How much cross-attention each word of a caption receives: DAAM-style attribution for CLiD.

CLiD (arXiv 2405.14800, App. D.2) ranks a caption's words by importance with attention
attribution (PromptCharm, built on DAAM: Tang et al. 2023) before padding out the most important
ones. DAAM aggregates the text-to-image cross-attention maps over layers, heads and pixels; here
the same sum is taken in one forward pass: every cross-attention layer runs diffusers' classic
``AttnProcessor`` (which materialises the attention probabilities) with its
``get_attention_scores`` wrapped to add them up, and the original processors come back after.
A word's importance is the attention mass of its tokens (the tokenizer splits the caption word by
word), normalised over the caption's words.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor


def word_token_counts(tokenizer, caption: str) -> list[int]:
    """How many tokens each whitespace-separated word of ``caption`` becomes (no special tokens)."""
    return [len(tokenizer(word, add_special_tokens=False).input_ids) for word in caption.split()]


@contextmanager
def recorded_cross_attention(unet: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Inside the block, every forward of ``unet`` appends one (batch, text tokens) tensor per
    cross-attention layer: the attention each text token received, summed over heads and pixels."""
    records: list[torch.Tensor] = []
    layers = {name: module for name, module in unet.named_modules()
              if isinstance(module, Attention) and module.is_cross_attention}  # fmt: skip
    processors = {name: module.processor for name, module in layers.items()}
    for module in layers.values():

        def scores(query, key, attention_mask=None, module=module, original=module.get_attention_scores):
            probabilities = original(query, key, attention_mask)
            heads = module.heads
            per_image = probabilities.view(-1, heads, *probabilities.shape[1:])  # (batch, heads, pixels, tokens)
            records.append(per_image.sum(dim=(1, 2)).detach().float().cpu())
            return probabilities

        module.set_processor(AttnProcessor())
        module.get_attention_scores = scores
    try:
        yield records
    finally:
        for name, module in layers.items():
            del module.get_attention_scores
            module.set_processor(processors[name])


def word_importance(records: list[torch.Tensor], tokenizer, captions: Sequence[str]) -> list[np.ndarray]:
    """Per caption, each word's share of the cross-attention its tokens received (summed over the
    recorded layers and passes); token 0 is the start token, so word tokens begin at position 1."""
    mass = torch.stack(records).sum(0)  # (batch, tokens)
    limit = mass.shape[1] - 1  # the text encoder's window; later words got no attention at all
    shares = []
    for row, caption in zip(mass, captions, strict=True):
        position, values = 1, []
        for count in word_token_counts(tokenizer, caption):
            values.append(float(row[min(position, limit) : min(position + count, limit)].sum()))
            position += count
        total = sum(values)
        shares.append(np.asarray(values) / total if total > 0 else np.zeros(len(values)))
    return shares
