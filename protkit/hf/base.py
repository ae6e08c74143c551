"""What protkit's Hugging Face models share: weight initialisation (rotary buffers included), the
``dtype=`` argument on transformers 4 as on 5, and the per-protein and per-token task heads."""

from __future__ import annotations

import torch
import torch.nn as nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, SequenceClassifierOutput, TokenClassifierOutput

from protkit.hf.heads import head_loss, problem_type, protein_vectors
from protkit.models.layers import Rotary, padding_mask


class ProtkitPreTrainedModel(PreTrainedModel):
    """The base of every exported model class."""

    def __init__(self, config, *args, dtype: torch.dtype | None = None, **kwargs) -> None:
        super().__init__(config, *args, **kwargs)
        self.load_dtype = dtype  # transformers 4 hands from_pretrained(dtype=...) to the model

    def post_init(self) -> None:
        super().post_init()
        if self.load_dtype is not None:
            self.to(self.load_dtype)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, Rotary):  # a buffer, not in the weights file: recomputed (transformers 5 empties it)
            with torch.no_grad():
                module.inv_freq.copy_(module.frequencies())
        elif isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=0.02)
            if getattr(module, "bias", None) is not None:
                module.bias.data.zero_()
        elif isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
            module.weight.data.fill_(1.0)
            if getattr(module, "bias", None) is not None:
                module.bias.data.zero_()


class TaskHead:
    """A head (mixed into a model class) on the model named by ``base_model_prefix``, built from
    ``base_class``: dropout, then ``classifier = nn.Linear(hidden_size, num_labels)`` (the module
    LoRA's ``modules_to_save`` names)."""

    base_class: type[nn.Module]

    def __init__(self, config, *args, **kwargs) -> None:
        super().__init__(config, *args, **kwargs)
        self.num_labels = config.num_labels
        setattr(self, self.base_model_prefix, self.base_class(config))
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def encoded(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, output_hidden_states: bool | None,
                output_attentions: bool | None) -> BaseModelOutput:
        return getattr(self, self.base_model_prefix)(input_ids, attention_mask, output_hidden_states, output_attentions)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
        """The loss for ``labels`` (``problem_type`` inferred on the first labels, as transformers does)."""
        if labels is None:
            return None
        self.config.problem_type = problem_type(self.config.problem_type, self.num_labels, labels)
        return head_loss(logits, labels, self.config.problem_type)


class SequenceClassifier(TaskHead):
    """One prediction per protein, from the mean of its residues' last hidden states."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_hidden_states: bool | None = None,
                output_attentions: bool | None = None, return_dict: bool | None = None,
                **kwargs) -> SequenceClassifierOutput | tuple:
        mask = padding_mask(input_ids, attention_mask)
        base = self.encoded(input_ids, mask, output_hidden_states, output_attentions)
        logits = self.classifier(self.dropout(protein_vectors(base.last_hidden_state, input_ids, mask)))  # (B, C)
        result = SequenceClassifierOutput(loss=self.loss(logits, labels), logits=logits,
                                          hidden_states=base.hidden_states, attentions=base.attentions)
        return result if return_dict is not False else result.to_tuple()


class TokenClassifier(TaskHead):
    """One prediction per token; label CLS, EOS and padding -100."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_hidden_states: bool | None = None,
                output_attentions: bool | None = None, return_dict: bool | None = None,
                **kwargs) -> TokenClassifierOutput | tuple:
        base = self.encoded(input_ids, attention_mask, output_hidden_states, output_attentions)
        logits = self.classifier(self.dropout(base.last_hidden_state))  # (B, L, C)
        result = TokenClassifierOutput(loss=self.loss(logits, labels), logits=logits,
                                       hidden_states=base.hidden_states, attentions=base.attentions)
        return result if return_dict is not False else result.to_tuple()
