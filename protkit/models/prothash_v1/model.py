"""ProtHash 1.0 student (the ``prothash`` 1.0 package's ``ESMCProtHash`` architecture) with a key-padding mask.

token embedding -> four stages of pre-norm blocks [RMSNorm -> self-attention (per-head RMSNorm on
queries and keys, rotary positions) -> RMSNorm -> Linear-SiLU-Linear] -> one output per stage; each
stage has an adapter (RMSNorm + Linear) to the teacher's width, and an optional MLM head
(Linear-SiLU-RMSNorm-Linear) reads the last stage. Unlike the package, padding is masked out of
attention, so batches give the same vectors as sequences embedded one at a time. Settings:
:mod:`.config`; the files a model is saved in and read from (protkit's and the package's):
:mod:`.checkpoint`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from protkit.models.hub import hub_fetch
from protkit.models.layers import Rotary, key_padding_mask, padding_mask
from protkit.models.memory import INFERENCE_BYTES_PER_PARAMETER, check_fits
from protkit.models.names import CONFIG_FILE, WEIGHTS_FILE
from protkit.models.prothash.checkpoint import ModelFormatError
from protkit.models.prothash_v1.checkpoint import read_staged_checkpoint, write_staged_checkpoint
from protkit.models.prothash_v1.config import N_STAGES, StagedConfig
from protkit.sequences.pooling import pool
from protkit.sequences.tokenize import PAD_ID


class SelfAttention(nn.Module):
    """Multi-head self-attention with QK-norm and rotary positions, through SDPA with a key-padding mask."""

    def __init__(self, cfg: StagedConfig):
        super().__init__()
        d, hd = cfg.d_model, cfg.head_dim
        self.heads, self.head_dim = cfg.heads, hd
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.out_proj = nn.Linear(d, d, bias=False)
        self.q_norm = nn.RMSNorm(hd)
        self.k_norm = nn.RMSNorm(hd)
        self.rotary = Rotary(hd, cfg.rotary_base, seq_dim=2)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        B, L, D = x.shape
        q = self.q_norm(self.q_proj(x).view(B, L, self.heads, self.head_dim).transpose(1, 2))  # (B, H, L, Dh)
        k = self.k_norm(self.k_proj(x).view(B, L, self.heads, self.head_dim).transpose(1, 2))  # (B, H, L, Dh)
        v = self.v_proj(x).view(B, L, self.heads, self.head_dim).transpose(1, 2)  # (B, H, L, Dh)
        q, k = self.rotary(q, k)
        z = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, H, L, Dh)
        return self.out_proj(z.transpose(1, 2).reshape(B, L, D))


class FeedForward(nn.Module):
    def __init__(self, cfg: StagedConfig):
        super().__init__()
        self.linear1 = nn.Linear(cfg.d_model, cfg.hidden_ratio * cfg.d_model, bias=False)
        self.linear2 = nn.Linear(cfg.hidden_ratio * cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(F.silu(self.linear1(x)))


class EncoderBlock(nn.Module):
    def __init__(self, cfg: StagedConfig):
        super().__init__()
        self.norm1 = nn.RMSNorm(cfg.d_model)
        self.attention = SelfAttention(cfg)
        self.norm2 = nn.RMSNorm(cfg.d_model)
        self.feed_forward = FeedForward(cfg)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), attn_mask)
        return x + self.feed_forward(self.norm2(x))


class Adapter(nn.Module):
    """A stage's map to the teacher's width: RMSNorm, then Linear (no bias)."""

    def __init__(self, d_model: int, teacher_dim: int):
        super().__init__()
        self.norm = nn.RMSNorm(d_model)
        self.linear = nn.Linear(d_model, teacher_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(x))


class MLMHead(nn.Module):
    """Last stage -> logits over the vocabulary: Linear, SiLU, RMSNorm, Linear (no biases)."""

    def __init__(self, cfg: StagedConfig):
        super().__init__()
        self.linear1 = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.norm = nn.RMSNorm(cfg.d_model)
        self.linear2 = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.norm(F.silu(self.linear1(x))))


class StagedProtHash(nn.Module):
    """The ProtHash 1.0 student: ``stages(input_ids, attention_mask)`` -> the four stages' native
    hidden states, ``stages_teacher`` through the adapters, ``mlm_logits``, pooled ``embed_teacher`` /
    ``embed_native`` of any stage; ``save_pretrained`` / ``from_pretrained`` for its files."""

    def __init__(self, config: StagedConfig):
        super().__init__()
        check_fits(config.parameter_count, INFERENCE_BYTES_PER_PARAMETER, "ProtHash 1.0")  # before any allocation
        self.config = config
        self.token_embeddings = nn.Embedding(config.vocab_size, config.d_model, padding_idx=PAD_ID)
        self.blocks = nn.ModuleList(
            nn.ModuleList(EncoderBlock(config) for _ in range(n)) for n in config.stage_layers
        )
        self.adapters = nn.ModuleList(
            nn.Identity() if config.teacher_dim == config.d_model else Adapter(config.d_model, config.teacher_dim)
            for _ in range(N_STAGES)
        )
        self.mlm_head = MLMHead(config) if config.mlm_head else None

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The last stage's native hidden states.  # (B, L, d_model)"""
        return self.stages(input_ids, attention_mask)[-1]

    def stages(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               upto: int = N_STAGES) -> tuple[torch.Tensor, ...]:
        """Native hidden states of stages 1..``upto`` (later stages are not computed).  # each (B, L, d_model)"""
        B, L = input_ids.shape
        if L > self.config.context_length:
            raise ValueError(f"sequence of {L} tokens exceeds the context length {self.config.context_length}")
        check_stage(upto)
        attn_mask = key_padding_mask(padding_mask(input_ids, attention_mask))  # (B, 1, 1, L) or None
        x = self.token_embeddings(input_ids)  # (B, L, D)
        outputs = []
        for blocks in list(self.blocks)[:upto]:
            for block in blocks:
                x = block(x, attn_mask)
            outputs.append(x)
        return tuple(outputs)

    def stages_teacher(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                       upto: int = N_STAGES) -> tuple[torch.Tensor, ...]:
        """Stages 1..``upto`` through their adapters (the package's ``embed``).  # each (B, L, teacher_dim)"""
        native = self.stages(input_ids, attention_mask, upto)
        return tuple(adapter(z) for adapter, z in zip(self.adapters, native))

    def stage_output(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                     stage: int = N_STAGES, teacher: bool = True) -> torch.Tensor:
        """One stage's hidden states, through its adapter when ``teacher``.  # (B, L, teacher_dim or d_model)"""
        z = self.stages(input_ids, attention_mask, upto=stage)[-1]
        return self.adapters[stage - 1](z) if teacher else z

    def mlm_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of the MLM head over the last stage.  # (B, L, vocab_size)"""
        if self.mlm_head is None:
            raise ValueError("this model has no MLM head (mlm_head: false)")
        return self.mlm_head(self.stages(input_ids, attention_mask)[-1])

    def embed_native(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                     pooling: str = "mean", stage: int = N_STAGES) -> torch.Tensor | list[torch.Tensor]:
        """Pooled (B, d_model) vectors of ``stage``, or per-residue (L_i, d_model) tensors for ``tokens``."""
        return self._embed(input_ids, attention_mask, pooling, stage, teacher=False)

    def embed_teacher(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      pooling: str = "mean", stage: int = N_STAGES) -> torch.Tensor | list[torch.Tensor]:
        """Like :meth:`embed_native`, in the teacher's width (through the stage's adapter)."""
        return self._embed(input_ids, attention_mask, pooling, stage, teacher=True)

    def _embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, pooling: str, stage: int,
               teacher: bool) -> torch.Tensor | list[torch.Tensor]:
        attention_mask = padding_mask(input_ids, attention_mask)
        hidden = self.stage_output(input_ids, attention_mask, stage, teacher)  # (B, L, D)
        return pool(hidden, input_ids, attention_mask, pooling)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``config.json`` (with ``"family": "v1"``) and ``model.safetensors``, each atomically."""
        write_staged_checkpoint(directory, self.config, self.state_dict())

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, device: str | torch.device = "cpu") -> "StagedProtHash":
        """Load from a directory or a Hugging Face Hub repo id, in protkit's format (:meth:`save_pretrained`)
        or the prothash 1.0 package's; bad files raise ``ModelFormatError`` naming the file."""
        directory = Path(name_or_path)
        if not directory.is_dir():
            from huggingface_hub import snapshot_download

            directory = hub_fetch(snapshot_download, repo_id=str(name_or_path),
                                  allow_patterns=[CONFIG_FILE, WEIGHTS_FILE])
        return load_staged_dir(directory, device)


def check_stage(stage: int) -> None:
    """ValueError unless ``stage`` is 1..4."""
    if isinstance(stage, bool) or not isinstance(stage, int) or not 1 <= stage <= N_STAGES:
        raise ValueError(f"stage must be 1 to {N_STAGES}, got {stage!r}")


def expected_shapes(config: StagedConfig) -> dict[str, torch.Size]:
    """Tensor name -> shape of a model of ``config`` (built on the meta device)."""
    with torch.device("meta"):
        return {name: t.shape for name, t in StagedProtHash(config).state_dict().items()}


def load_staged_dir(directory: str | Path, device: str | torch.device = "cpu") -> StagedProtHash:
    """Load a local ProtHash 1.0 checkpoint directory (protkit-v1 or prothash-1.0 format), in eval mode."""
    found = read_staged_checkpoint(directory)
    try:
        shapes = expected_shapes(found.config)  # refuses a model larger than memory before allocating it
    except ValueError as err:
        raise ModelFormatError(f"{Path(directory) / CONFIG_FILE}: {err}") from None
    model = StagedProtHash(found.config)
    model.load_state_dict(found.state_dict(shapes), strict=True)
    return model.to(device).eval()
