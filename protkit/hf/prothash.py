"""The ProtHash student as Hugging Face models (``AutoModel``, ``AutoModelForSequenceClassification``,
``AutoModelForTokenClassification``), keeping ProtHash's own API (``embed_native``, ``embed_teacher``).

The math is protkit's :class:`~protkit.models.prothash.model.ProtHashEncoder`; an export bundles this
module with that code into a ``modeling_prothash.py`` that needs only torch and transformers.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from transformers import PretrainedConfig
from transformers.modeling_outputs import BaseModelOutput

from protkit.hf.base import ProtkitPreTrainedModel, SequenceClassifier, TokenClassifier
from protkit.models.names import TEACHER_WIDTHS
from protkit.models.prothash.config import ProtHashConfig
from protkit.models.prothash.model import ProtHashEncoder
from protkit.sequences.tokenize import CLS_ID, EOS_ID, MASK_ID, PAD_ID, VOCAB_SIZE

SETTINGS = ("d_model", "q_heads", "kv_heads", "n_layers", "hidden_ratio", "context_length", "positions", "teacher_dim",
            "teacher", "vocab_size", "dropout", "adapter_bias")  # ProtHashConfig's fields a Hugging Face config keeps


class ProtHashHFConfig(PretrainedConfig):
    """ProtHash's settings (:class:`ProtHashConfig`) plus what the task heads need."""

    model_type = "protkit_prothash"
    attribute_map = {"hidden_size": "d_model", "num_hidden_layers": "n_layers", "num_attention_heads": "q_heads"}

    def __init__(self, d_model: int = 384, q_heads: int = 16, kv_heads: int = 4, n_layers: int = 4,
                 hidden_ratio: int = 2, context_length: int = 2048, positions: str = "rotary",
                 teacher_dim: int = TEACHER_WIDTHS["esmc_300m"], teacher: str = "esmc_300m",
                 vocab_size: int = VOCAB_SIZE, dropout: float = 0.0, adapter_bias: bool = False,
                 classifier_dropout: float = 0.0, **kwargs) -> None:
        self.d_model, self.q_heads, self.kv_heads, self.n_layers = d_model, q_heads, kv_heads, n_layers
        self.hidden_ratio, self.context_length, self.positions = hidden_ratio, context_length, positions
        self.teacher_dim, self.teacher, self.vocab_size, self.dropout = teacher_dim, teacher, vocab_size, dropout
        self.adapter_bias, self.classifier_dropout = adapter_bias, classifier_dropout
        for name, token in (("pad_token_id", PAD_ID), ("bos_token_id", CLS_ID), ("eos_token_id", EOS_ID),
                            ("mask_token_id", MASK_ID)):
            kwargs.setdefault(name, token)
        super().__init__(**kwargs)

    def settings(self) -> ProtHashConfig:
        return ProtHashConfig(**{name: getattr(self, name) for name in SETTINGS})


class ProtHashPreTrainedModel(ProtkitPreTrainedModel):
    config_class = ProtHashHFConfig
    base_model_prefix = "prothash"
    _no_split_modules = ["EncoderBlock"]


class ProtHashModel(ProtHashPreTrainedModel):
    """The student: ``last_hidden_state`` (native width), ``hidden_states`` (the embeddings and each
    block's output), ``attentions``; ``embed_native`` / ``embed_teacher`` give ProtHash's vectors."""

    def __init__(self, config: ProtHashHFConfig, *args, **kwargs) -> None:
        super().__init__(config, *args, **kwargs)
        self.encoder = ProtHashEncoder(config.settings())
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.token_embeddings

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, output_attentions: bool | None = None,
                return_dict: bool | None = None, **kwargs) -> BaseModelOutput | tuple:
        hidden: list[torch.Tensor] | None = [] if output_hidden_states else None
        attentions: list[torch.Tensor] | None = [] if output_attentions else None
        last = self.encoder.encode(input_ids, attention_mask, hidden, attentions)  # (B, L, d_model)
        result = BaseModelOutput(last_hidden_state=last, hidden_states=tuple(hidden) if hidden is not None else None,
                                 attentions=tuple(attentions) if attentions is not None else None)
        return result if return_dict is not False else result.to_tuple()

    def embed_native(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                     pooling: str = "mean") -> torch.Tensor | list[torch.Tensor]:
        """Pooled ``(B, d_model)`` vectors (``tokens``: one ``(L_i, d_model)`` per protein)."""
        return self.encoder.embed_native(input_ids, attention_mask, pooling)

    def embed_teacher(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      pooling: str = "mean") -> torch.Tensor | list[torch.Tensor]:
        """Like :meth:`embed_native`, in the teacher's width: the vectors ``protkit embed`` writes."""
        return self.encoder.embed_teacher(input_ids, attention_mask, pooling)


class ProtHashForSequenceClassification(SequenceClassifier, ProtHashPreTrainedModel):
    """A per-protein head (``num_labels``) on the mean of the residues' native hidden states."""

    base_class = ProtHashModel


class ProtHashForTokenClassification(TokenClassifier, ProtHashPreTrainedModel):
    """A per-token head (``num_labels``)."""

    base_class = ProtHashModel


AUTO_MAP = {
    "AutoConfig": "ProtHashHFConfig",
    "AutoModel": "ProtHashModel",
    "AutoModelForSequenceClassification": "ProtHashForSequenceClassification",
    "AutoModelForTokenClassification": "ProtHashForTokenClassification",
}
