"""ESMC, the teacher, as Hugging Face models (``AutoModel``, ``AutoModelForMaskedLM``,
``AutoModelForSequenceClassification``, ``AutoModelForTokenClassification``).

The math is protkit's :class:`~protkit.models.esmc.model.ESMC` (esm's parameter names, a key-padding
mask); these classes add the configuration, Hugging Face's outputs, the masked-LM loss and task
heads (:mod:`protkit.hf.base`). An export bundles this module with that code into a
``modeling_esmc.py`` that needs only torch and transformers.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import PretrainedConfig
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput

from protkit.hf.base import ProtkitPreTrainedModel, SequenceClassifier, TokenClassifier
from protkit.hf.heads import IGNORE
from protkit.models.esmc.model import ESMC, ESMCConfig, ESMCOutput
from protkit.models.names import TEACHER_WIDTHS
from protkit.sequences.tokenize import CLS_ID, EOS_ID, MASK_ID, PAD_ID


class ESMCHFConfig(PretrainedConfig):
    """ESMC's settings (:class:`ESMCConfig`) plus what the task heads need."""

    model_type = "protkit_esmc"
    attribute_map = {"hidden_size": "d_model", "num_hidden_layers": "n_layers", "num_attention_heads": "n_heads"}

    def __init__(self, d_model: int = TEACHER_WIDTHS["esmc_300m"], n_heads: int = 15, n_layers: int = 30,
                 vocab_size: int = 64, expansion_ratio: float = 8 / 3, rotary_base: float = 10000.0,
                 classifier_dropout: float = 0.0, **kwargs) -> None:
        self.d_model, self.n_heads, self.n_layers, self.vocab_size = d_model, n_heads, n_layers, vocab_size
        self.expansion_ratio, self.rotary_base = expansion_ratio, rotary_base
        self.classifier_dropout = classifier_dropout
        for name, token in (("pad_token_id", PAD_ID), ("bos_token_id", CLS_ID), ("eos_token_id", EOS_ID),
                            ("mask_token_id", MASK_ID)):
            kwargs.setdefault(name, token)
        super().__init__(**kwargs)

    def settings(self) -> ESMCConfig:
        return ESMCConfig(d_model=self.d_model, n_heads=self.n_heads, n_layers=self.n_layers,
                          vocab_size=self.vocab_size, expansion_ratio=self.expansion_ratio,
                          rotary_base=self.rotary_base)


class ESMCPreTrainedModel(ProtkitPreTrainedModel):
    config_class = ESMCHFConfig
    base_model_prefix = "esmc"
    _no_split_modules = ["Block"]


class ESMCModel(ESMCPreTrainedModel):
    """The ESMC encoder: ``last_hidden_state`` (after the final norm), ``hidden_states`` (the
    embeddings and each block's output, before the final norm), ``attentions`` (each block's)."""

    def __init__(self, config: ESMCHFConfig, *args, **kwargs) -> None:
        super().__init__(config, *args, **kwargs)
        self.encoder = ESMC(config.settings())
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.embed

    def run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, output_hidden_states: bool,
            output_attentions: bool) -> tuple[ESMCOutput, tuple[torch.Tensor, ...] | None]:
        """protkit's output and the hidden states in Hugging Face's order (embeddings first)."""
        out = self.encoder(input_ids, attention_mask, output_hidden_states=output_hidden_states,
                           output_attentions=output_attentions)
        hidden = (self.encoder.embed(input_ids), *out.hidden_states) if output_hidden_states else None
        return out, hidden

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, output_attentions: bool | None = None,
                return_dict: bool | None = None, **kwargs) -> BaseModelOutput | tuple:
        out, hidden = self.run(input_ids, attention_mask, bool(output_hidden_states), bool(output_attentions))
        result = BaseModelOutput(last_hidden_state=out.last_hidden_state, hidden_states=hidden,
                                 attentions=out.attentions)
        return result if return_dict is not False else result.to_tuple()


class ESMCForMaskedLM(ESMCPreTrainedModel):
    """ESMC with its sequence head: ``logits (B, L, vocab_size)``; ``labels`` (-100: ignored) give a loss."""

    def __init__(self, config: ESMCHFConfig, *args, **kwargs) -> None:
        super().__init__(config, *args, **kwargs)
        self.esmc = ESMCModel(config)
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_hidden_states: bool | None = None,
                output_attentions: bool | None = None, return_dict: bool | None = None,
                **kwargs) -> MaskedLMOutput | tuple:
        out, hidden = self.esmc.run(input_ids, attention_mask, bool(output_hidden_states), bool(output_attentions))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]).float(), labels.reshape(-1),
                                   ignore_index=IGNORE)
        result = MaskedLMOutput(loss=loss, logits=out.logits, hidden_states=hidden, attentions=out.attentions)
        return result if return_dict is not False else result.to_tuple()


class ESMCForSequenceClassification(SequenceClassifier, ESMCPreTrainedModel):
    """A per-protein head (``num_labels``) on the mean of the residues' last hidden states."""

    base_class = ESMCModel


class ESMCForTokenClassification(TokenClassifier, ESMCPreTrainedModel):
    """A per-token head (``num_labels``)."""

    base_class = ESMCModel


AUTO_MAP = {
    "AutoConfig": "ESMCHFConfig",
    "AutoModel": "ESMCModel",
    "AutoModelForMaskedLM": "ESMCForMaskedLM",
    "AutoModelForSequenceClassification": "ESMCForSequenceClassification",
    "AutoModelForTokenClassification": "ESMCForTokenClassification",
}
