"""Exact joint attention over repeated context tokens: each run of identical tokens is kept once.

An SD3 pipeline without its T5 encoder (``text_encoder_3=None``: the toy-sd3 preset, or SD3.5 loaded without T5 to
save memory) pads the prompt with ``max_sequence_length`` (256) all-zero T5 embeddings: 256 of the toy
transformer's ~400 tokens. SD3's context tokens carry no position embedding, so identical context tokens stay
identical through every block, and attending to c copies of a key is attending to it once with ``log c`` added
to its logit:

    Σ_copies exp(q·k) v = exp(q·k + log c) v.

``RepeatedContext`` keeps one token of each run and passes ``log c`` to ``RepeatedContextAttnProcessor``, which is
SD3's joint attention with that additive bias. The image tokens' output is the same up to float rounding; on the
toy-sd3 transformer a 4-step sample takes about half the time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .sampling import TransformerStandIn


class RepeatedContextAttnProcessor:
    """SD3 joint attention (image tokens then context tokens, one softmax) with an optional additive logit bias on
    the context keys, ``context_log_counts`` (L_ctx,): the log of how many identical tokens each context token
    stands for. Without it, plain joint attention."""

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, context_log_counts: torch.Tensor | None = None,
                 *args, **kwargs):
        batch, n_image = hidden_states.shape[0], hidden_states.shape[1]

        def split_heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)

        query, key, value = (split_heads(f(hidden_states)) for f in (attn.to_q, attn.to_k, attn.to_v))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        bias = None
        if encoder_hidden_states is not None:
            c_query, c_key, c_value = (split_heads(f(encoder_hidden_states))
                                       for f in (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj))
            if attn.norm_added_q is not None:
                c_query = attn.norm_added_q(c_query)
            if attn.norm_added_k is not None:
                c_key = attn.norm_added_k(c_key)
            query, key, value = (torch.cat(pair, dim=2) for pair in ((query, c_query), (key, c_key),
                                                                       (value, c_value)))
            if context_log_counts is not None:
                bias = torch.cat([context_log_counts.new_zeros(n_image), context_log_counts]).to(query.dtype)[None]
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(batch, -1, out.shape[1] * out.shape[-1]).to(query.dtype)
        context = None
        if encoder_hidden_states is not None:
            out, context = out[:, :n_image], out[:, n_image:]
            if not attn.context_pre_only:
                context = attn.to_add_out(context)
        out = attn.to_out[1](attn.to_out[0](out))
        return out if context is None else (out, context)


def repeated_runs(context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """For context (B, L, D): the index of the first token of every run of tokens identical to their predecessor
    in every batch row, and the runs' lengths; None when no token repeats."""
    same = (context[:, 1:] == context[:, :-1]).all(dim=-1).all(dim=0)  # (L-1,)
    if not bool(same.any()):
        return None
    starts = torch.cat([same.new_ones(1), ~same]).nonzero().squeeze(1)  # (R,)
    lengths = torch.diff(torch.cat([starts, starts.new_tensor([context.shape[1]])]))
    return starts, lengths


class RepeatedContext(TransformerStandIn):
    """An SD3-class transformer that attends to each run of identical context tokens once (see the module
    docstring). Same call signature and outputs; the wrapped model's attention processors are replaced by
    ``RepeatedContextAttnProcessor`` (plain joint attention when nothing repeats)."""

    def __init__(self, transformer: nn.Module):
        super().__init__()
        transformer.set_attn_processor(RepeatedContextAttnProcessor())
        self.transformer = transformer

    def forward(self, *args, encoder_hidden_states: torch.Tensor | None = None, joint_attention_kwargs=None, **kwargs):
        runs = repeated_runs(encoder_hidden_states) if encoder_hidden_states is not None else None
        if runs is not None:
            starts, lengths = runs
            encoder_hidden_states = encoder_hidden_states[:, starts]
            joint_attention_kwargs = {**(joint_attention_kwargs or {}),
                                      "context_log_counts": lengths.to(torch.float32).log()}
        return self.transformer(*args, encoder_hidden_states=encoder_hidden_states,
                                joint_attention_kwargs=joint_attention_kwargs, **kwargs)


def attend_repeats_once(pipe):
    """Wrap ``pipe.transformer`` in ``RepeatedContext`` where it pays: an SD3-class pipeline loaded without its T5
    encoder, whose prompts end in ``max_sequence_length`` identical zero tokens. Returns ``pipe``."""
    transformer = getattr(pipe, "transformer", None)
    if (transformer is not None and not isinstance(transformer, RepeatedContext)
            and "text_encoder_3" in pipe.components and pipe.text_encoder_3 is None
            and hasattr(transformer, "transformer_blocks")):
        pipe.transformer = RepeatedContext(transformer)
    return pipe
