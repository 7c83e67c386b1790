"""DP-SGD's clipped gradient sum in one backward pass: opacus's ghost-clipping hooks measure each
example's gradient norm, then book-keeping (Bu et al. 2023, "Differentially private optimization on
large model at small cost") turns the activations and output gradients those hooks already hold
into Σ_b clip_b·g_b, one weighted weight-gradient per layer.

Why not opacus's own paths: its ``hooks`` mode materialises every per-example gradient (a copy of
the model per example, zero-filled and copied again before clipping), and its fast-gradient-clipping
mode runs a second full backward pass, whose input-gradient half costs three to four forwards per
convolution on a CPU. In one interleaved benchmark at the suites' 8x8 (batch 64) a step cost 2.55x
a plain one in ``hooks`` mode, 2.54x in fast-gradient-clipping mode with the norm samplers below,
and 2.37x here. The first pass asks autograd only for the 1-D parameters (biases, norm scales), so no
convolution computes a weight gradient twice.

Each example's loss may average K (timestep, noise) draws laid out example-major (DPDM's noise
multiplicity): the norm samplers fold the K rows of an example into one gradient before measuring.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from opacus.grad_sample import GradSampleModuleFastGradientClipping
from opacus.grad_sample.conv import compute_conv_grad_sample
from opacus.grad_sample.group_norm import compute_group_norm_grad_sample
from opacus.grad_sample.linear import compute_linear_norm_sample
from torch.nn.grad import conv2d_weight

from benchmark.api import BenchmarkError

SUPPORTED_LAYERS = (nn.Conv2d, nn.Linear, nn.GroupNorm)
PerParameter = dict[nn.Parameter, torch.Tensor]  # norms, or per-row gradients


def conv_weight_norms_ghost(layer: nn.Conv2d, x: torch.Tensor, backprops: torch.Tensor, draws: int) -> torch.Tensor:
    """‖Σ_k G_k X_kᵀ‖ per example without unfolding X: the Gram of the unfolded input is the sum of
    kernel-offset blocks of the padded input's Gram, which costs (H·W)² instead of (H·W)²·k²."""
    n, channels = x.shape[0] // draws, x.shape[1]
    (kh, kw), (sh, sw), (dh, dw), (ph, pw) = layer.kernel_size, layer.stride, layer.dilation, layer.padding
    ho, wo = backprops.shape[2:]
    hp, wp = x.shape[2] + 2 * ph, x.shape[3] + 2 * pw
    padded = F.pad(x, (pw, pw, ph, ph)).reshape(n, draws, channels, hp * wp).transpose(1, 2).reshape(n, channels, -1)
    gram = torch.bmm(padded.transpose(1, 2), padded).view(n, draws, hp, wp, draws, hp, wp)
    # the kernel offset as one more strided dimension, moving both positions of a pair at once
    rows = _offset_sum(gram, axis_dims=(2, 5), size=(ho, kh), step=(sh, dh))
    unfolded_gram = _offset_sum(rows, axis_dims=(3, 6), size=(wo, kw), step=(sw, dw))
    g = _fold_draws(backprops.flatten(2), draws)
    squared = (unfolded_gram.view(n, g.shape[2], g.shape[2]) * torch.bmm(g.transpose(1, 2), g)).sum(dim=(1, 2))
    return squared.clamp(min=0).sqrt() / draws


def _offset_sum(
    gram: torch.Tensor, axis_dims: tuple[int, int], size: tuple[int, int], step: tuple[int, int]
) -> torch.Tensor:
    """Σ_i gram[..., s·a + d·i, ..., s·b + d·i, ...] over the kernel offsets i along one spatial axis,
    whose two copies are ``axis_dims``: a strided view and one reduction instead of k slice adds."""
    (first, second), (positions, offsets), (stride, dilation) = axis_dims, size, step
    shape, strides = list(gram.shape), list(gram.stride())
    shape[first] = shape[second] = positions
    strides[first], strides[second] = strides[first] * stride, strides[second] * stride
    offset_stride = dilation * (gram.stride(first) + gram.stride(second))
    return gram.as_strided([*shape, offsets], [*strides, offset_stride], gram.storage_offset()).sum(dim=-1)


def conv_weight_norms_direct(layer: nn.Conv2d, x: torch.Tensor, backprops: torch.Tensor, draws: int) -> torch.Tensor:
    """Per-example norms from opacus's per-row conv gradients (contiguous input: its unfold assumes it)."""
    rows = compute_conv_grad_sample(layer, [x.contiguous()], backprops)[layer.weight]
    return rows.view(x.shape[0] // draws, draws, -1).mean(dim=1).norm(dim=1)


def _fold_draws(rows: torch.Tensor, draws: int) -> torch.Tensor:
    """(examples·K, C, L) -> (examples, C, K·L): an example's draws become more positions."""
    n, channels = rows.shape[0] // draws, rows.shape[1]
    return rows.reshape(n, draws, channels, -1).transpose(1, 2).reshape(n, channels, -1)


def _uses_ghost(layer: nn.Conv2d, x: torch.Tensor, backprops: torch.Tensor, draws: int) -> bool:
    """Ghost norms cost (K·positions)²·channels; unfolded per-row gradients cost positions·weights.
    Small maps (these digits, a UNet's inner levels) favour the first, large maps and 1x1 convs the second."""
    padded_positions = (x.shape[2] + 2 * layer.padding[0]) * (x.shape[3] + 2 * layer.padding[1])
    positions = backprops.shape[2] * backprops.shape[3]
    ghost = (draws * padded_positions) ** 2 * layer.in_channels + (draws * positions) ** 2 * layer.out_channels
    return ghost < draws * positions * layer.weight.numel()


def _row_weights(rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return rows * weights.view(-1, *[1] * (rows.dim() - 1))


def _write_conv(layer: nn.Conv2d, x: torch.Tensor, backprops: torch.Tensor, weights: torch.Tensor) -> None:
    weighted = _row_weights(backprops, weights)
    layer.weight.grad = conv2d_weight(x, layer.weight.shape, weighted, layer.stride, layer.padding, layer.dilation)
    if layer.bias is not None:
        layer.bias.grad = weighted.sum(dim=(0, 2, 3))


def _write_linear(layer: nn.Linear, x: torch.Tensor, backprops: torch.Tensor, weights: torch.Tensor) -> None:
    weighted = _row_weights(backprops, weights)
    layer.weight.grad = torch.einsum("n...o,n...i->oi", weighted, x)
    if layer.bias is not None:
        layer.bias.grad = weighted.reshape(-1, weighted.shape[-1]).sum(dim=0)


def _write_rows(rows: PerParameter, weights: torch.Tensor) -> None:
    for p, per_row in rows.items():
        p.grad = torch.einsum("n,n...->...", weights, per_row)


class BookKeeping:
    """Norm samplers for opacus's ghost-clipping hooks that also keep, per layer, how to write its
    clipped gradient once the clipping factors are known: the activations and output gradients of
    convolutions and linear layers, the (small) per-row gradients of group norms."""

    def __init__(self, draws: int) -> None:
        self.draws = draws
        self.writers: dict[nn.Module, Callable[[torch.Tensor], None]] = {}

    def norm_samplers(self) -> dict[type, Callable[..., PerParameter]]:
        return {nn.Conv2d: self._conv, nn.Linear: self._linear, nn.GroupNorm: self._group_norm}

    def _conv(self, layer: nn.Conv2d, activations: list[torch.Tensor], backprops: torch.Tensor) -> PerParameter:
        x = activations[0]
        self.writers[layer] = partial(_write_conv, layer, x, backprops)
        measure = conv_weight_norms_ghost if _uses_ghost(layer, x, backprops, self.draws) else conv_weight_norms_direct
        norms = {layer.weight: measure(layer, x, backprops, self.draws)}
        if layer.bias is not None:
            norms[layer.bias] = _fold_draws(backprops.flatten(2), self.draws).sum(dim=2).norm(dim=1) / self.draws
        return norms

    def _linear(self, layer: nn.Linear, activations: list[torch.Tensor], backprops: torch.Tensor) -> PerParameter:
        x = activations[0]
        self.writers[layer] = partial(_write_linear, layer, x, backprops)
        n = x.shape[0] // self.draws  # an example's draws (and sequence positions) become one sequence
        as_sequences = [x.reshape(n, -1, x.shape[-1])], backprops.reshape(n, -1, backprops.shape[-1])
        norms = compute_linear_norm_sample(layer, *as_sequences)
        return {p: norm / self.draws for p, norm in norms.items()}

    def _group_norm(
        self, layer: nn.GroupNorm, activations: list[torch.Tensor], backprops: torch.Tensor
    ) -> PerParameter:
        rows = compute_group_norm_grad_sample(layer, activations, backprops)
        self.writers[layer] = partial(_write_rows, rows)
        return {p: g.view(-1, self.draws, g.shape[1]).mean(dim=1).norm(dim=1) for p, g in rows.items()}

    def write_clipped_sum(self, factors: torch.Tensor) -> None:
        """p.grad = Σ_b factors_b · (example b's gradient) for every layer the first pass reached."""
        weights = factors.repeat_interleave(self.draws) / self.draws
        for write in self.writers.values():
            write(weights)
        self.writers.clear()


def check_supported(unet: nn.Module) -> None:
    """The norm samplers cover what UNet2DModel is built of; anything else would be clipped wrongly."""
    for name, module in unet.named_modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if own and not isinstance(module, SUPPORTED_LAYERS):
            raise BenchmarkError(f"dpsgd clips Conv2d, Linear and GroupNorm layers; `{name}` is a "
                                 f"{type(module).__name__}: freeze it or train this model without dpsgd")  # fmt: skip
        if isinstance(module, nn.Conv2d) and (module.groups != 1 or isinstance(module.padding, str)
                                              or module.padding_mode != "zeros"):  # fmt: skip
            raise BenchmarkError(f"dpsgd clips ungrouped, zero-padded convolutions with numeric padding; `{name}` "
                                 "is not one: train this model without dpsgd")  # fmt: skip


class ClippedGradients:
    """opacus's ghost-clipping module around the UNet, with book-keeping norm samplers."""

    def __init__(self, unet: nn.Module, max_grad_norm: float, draws: int) -> None:
        check_supported(unet)
        self.book = BookKeeping(draws)
        self.module = GradSampleModuleFastGradientClipping(unet, max_grad_norm=max_grad_norm, loss_reduction="mean")
        self.module.NORM_SAMPLERS = self.book.norm_samplers()  # this module's own table, not opacus's global one
        self.layers = {m for m in unet.modules() if any(p.requires_grad for p in m.parameters(recurse=False))}
        self.first_pass_inputs = [p for p in unet.parameters() if p.requires_grad and p.dim() == 1]

    def backward(self, per_example_loss: torch.Tensor) -> None:
        """Write Σ_b clip_b·∇loss_b into every parameter's ``grad``; ``per_example_loss`` is one value
        per example, each the mean over its draws."""
        with warnings.catch_warnings():  # the first layers' hooks fire on outputs: their inputs need no grad
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            torch.autograd.grad(per_example_loss.mean(), self.first_pass_inputs)  # no conv computes a weight grad
        if set(self.book.writers) != self.layers:
            raise BenchmarkError("dpsgd: a layer's gradient hook did not fire in the first pass; a layer without "
                                 "bias or norm scale is the first the input reaches: give it a bias")  # fmt: skip
        self.book.write_clipped_sum(self.module.get_clipping_coef())

    def close(self) -> None:
        self.module._close()
