"""ProtHash student (ProtHash 0.2.x architecture) with a key-padding mask.

token embedding -> N pre-norm blocks [RMSNorm -> grouped-query attention (rotary or learned
absolute positions) -> RMSNorm -> Linear-SiLU-Linear] -> adapter to the teacher's width.
Unlike ProtHash, padding is masked out of attention, so batches give the same vectors as
sequences embedded one at a time. Settings: :mod:`.config`; the files a model is saved in and
read from (protkit's and the ``prothash`` package's): :mod:`.checkpoint`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from protkit.models.hub import hub_fetch
from protkit.models.layers import Rotary, attention_with_weights, key_padding_mask, padding_mask
from protkit.models.memory import INFERENCE_BYTES_PER_PARAMETER, check_fits
from protkit.models.names import CONFIG_FILE, WEIGHTS_FILE
from protkit.models.prothash.checkpoint import ModelFormatError, read_checkpoint, write_checkpoint
from protkit.models.prothash.config import ProtHashConfig
from protkit.sequences.pooling import pool
from protkit.sequences.tokenize import PAD_ID


class SelfAttention(nn.Module):
    """Grouped-query self-attention through SDPA, with a key-padding mask."""

    def __init__(self, cfg: ProtHashConfig):
        super().__init__()
        d, hd = cfg.d_model, cfg.head_dim
        self.q_heads, self.kv_heads, self.head_dim = cfg.q_heads, cfg.kv_heads, hd
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, cfg.kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(d, cfg.kv_heads * hd, bias=False)
        self.out_proj = nn.Linear(d, d, bias=False)
        self.rotary = Rotary(hd, cfg.rotary_base, seq_dim=2) if cfg.positions == "rotary" else None
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None,
                weights: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``weights``: when a list, attention runs by hand (no dropout) and appends its
        probabilities (B, Hq, L, L)."""
        B, L, D = x.shape
        q = self.q_proj(x).view(B, L, self.q_heads, self.head_dim).transpose(1, 2)  # (B, Hq, L, Dh)
        k = self.k_proj(x).view(B, L, self.kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, L, Dh)
        v = self.v_proj(x).view(B, L, self.kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, L, Dh)
        if self.rotary is not None:
            q, k = self.rotary(q, k)
        if weights is not None:
            z, probs = attention_with_weights(q, k, v, attn_mask)  # (B, Hq, L, Dh)
            weights.append(probs)
            return self.out_proj(z.transpose(1, 2).reshape(B, L, D))
        z = F.scaled_dot_product_attention(
            q, k, v,
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=self.q_heads != self.kv_heads,
        )  # (B, Hq, L, Dh)
        return self.out_proj(z.transpose(1, 2).reshape(B, L, D))


class FeedForward(nn.Module):
    def __init__(self, cfg: ProtHashConfig):
        super().__init__()
        hidden = cfg.hidden_ratio * cfg.d_model
        self.linear1 = nn.Linear(cfg.d_model, hidden, bias=False)
        self.linear2 = nn.Linear(hidden, cfg.d_model, bias=False)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.linear2(F.silu(self.linear1(x))))


class EncoderBlock(nn.Module):
    def __init__(self, cfg: ProtHashConfig):
        super().__init__()
        self.norm1 = nn.RMSNorm(cfg.d_model)
        self.attention = SelfAttention(cfg)
        self.norm2 = nn.RMSNorm(cfg.d_model)
        self.feed_forward = FeedForward(cfg)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None,
                weights: list[torch.Tensor] | None = None) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), attn_mask, weights)
        return x + self.feed_forward(self.norm2(x))


class ProtHashEncoder(nn.Module):
    """The student's math: ``model(input_ids, attention_mask)`` -> native hidden states
    ``(B, L, d_model)``; :class:`ProtHash` adds its files."""

    def __init__(self, config: ProtHashConfig):
        super().__init__()
        check_fits(config.parameter_count, INFERENCE_BYTES_PER_PARAMETER, "ProtHash")  # before any allocation
        self.config = config
        self.token_embeddings = nn.Embedding(config.vocab_size, config.d_model, padding_idx=PAD_ID)
        self.position_embeddings = (
            nn.Embedding(config.context_length, config.d_model) if config.positions == "absolute" else None
        )
        self.blocks = nn.ModuleList([EncoderBlock(config) for _ in range(config.n_layers)])
        self.adapter = (
            nn.Identity()
            if config.teacher_dim == config.d_model
            else nn.Linear(config.d_model, config.teacher_dim, bias=config.adapter_bias)
        )

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.encode(input_ids, attention_mask)  # (B, L, D)

    def encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
        hidden_states: list[torch.Tensor] | None = None, attentions: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Native hidden states ``(B, L, d_model)``; appends the embeddings and each block's output to
        ``hidden_states`` and each block's attention probabilities to ``attentions`` when given."""
        B, L = input_ids.shape
        if L > self.config.context_length:
            raise ValueError(f"sequence of {L} tokens exceeds the context length {self.config.context_length}")
        attention_mask = padding_mask(input_ids, attention_mask)
        attn_mask = key_padding_mask(attention_mask)  # (B, 1, 1, L) or None
        x = self.token_embeddings(input_ids)  # (B, L, D)
        if self.position_embeddings is not None:
            x = x + self.position_embeddings.weight[:L]
        for block in self.blocks:
            if hidden_states is not None:
                hidden_states.append(x)
            if self.config.activation_checkpointing and self.training and attentions is None:
                x = checkpoint(block, x, attn_mask, use_reentrant=False)
            else:
                x = block(x, attn_mask, attentions)
        if hidden_states is not None:
            hidden_states.append(x)
        return x  # (B, L, D)

    def embed_native(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, pooling: str = "mean"
    ) -> torch.Tensor | list[torch.Tensor]:
        """Pooled (B, d_model) vectors, or per-residue (L_i, d_model) tensors for ``tokens``."""
        return self._embed(input_ids, attention_mask, pooling, to_teacher=False)

    def embed_teacher(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, pooling: str = "mean"
    ) -> torch.Tensor | list[torch.Tensor]:
        """Like :meth:`embed_native`, in the teacher's width (through the adapter)."""
        return self._embed(input_ids, attention_mask, pooling, to_teacher=True)

    def _embed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, pooling: str, to_teacher: bool
    ) -> torch.Tensor | list[torch.Tensor]:
        attention_mask = padding_mask(input_ids, attention_mask)
        hidden = self(input_ids, attention_mask)  # (B, L, d_model)
        if to_teacher:
            hidden = self.adapter(hidden)  # (B, L, teacher_dim)
        return pool(hidden, input_ids, attention_mask, pooling)



class ProtHash(ProtHashEncoder):
    """The ProtHash student (:class:`ProtHashEncoder`) with its files: ``save_pretrained`` and
    ``from_pretrained`` (protkit's format, or the ``prothash`` package's)."""

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` (each atomically)."""
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        write_checkpoint(directory, self.config.to_dict(), state)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, device: str | torch.device = "cpu") -> "ProtHash":
        """Load from a directory or a Hugging Face Hub repo id, in protkit's format
        (:meth:`save_pretrained`) or the ``prothash`` package's (0.1.x / 0.2.x); see
        :mod:`protkit.models.prothash.checkpoint`. Bad files raise ``ModelFormatError`` naming the file."""
        directory = Path(name_or_path)
        if not directory.is_dir():
            from huggingface_hub import snapshot_download

            directory = hub_fetch(snapshot_download, repo_id=str(name_or_path),
                                  allow_patterns=[CONFIG_FILE, WEIGHTS_FILE])
        return load_pretrained_dir(directory, device)


def expected_shapes(config: ProtHashConfig) -> dict[str, torch.Size]:
    """Tensor name -> shape of a model of ``config`` (built on the meta device)."""
    with torch.device("meta"):
        return {name: t.shape for name, t in ProtHash(config).state_dict().items()}


def load_pretrained_dir(directory: str | Path, device: str | torch.device = "cpu") -> ProtHash:
    """Load a local checkpoint directory in protkit's or the prothash package's format (eval mode).

    The weights file itself (``model.safetensors``) is left as it is, so its sha256 fingerprints
    the model in either format."""
    found = read_checkpoint(directory)
    try:
        shapes = expected_shapes(found.config)  # refuses a model larger than memory before allocating it
    except ValueError as err:
        raise ModelFormatError(f"{Path(directory) / CONFIG_FILE}: {err}") from None
    model = ProtHash(found.config)
    model.load_state_dict(found.state_dict(shapes), strict=True)
    return model.to(device).eval()
