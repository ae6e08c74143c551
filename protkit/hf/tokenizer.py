"""protkit's tokenizer as a standard Hugging Face fast tokenizer (``tokenizer.json``), so that
``AutoTokenizer.from_pretrained(export)`` gives protkit's (and esm's) token ids with no remote code:
one token per character, ``<cls> ... <eos>`` around each sequence, right padding with ``<pad>``."""

from __future__ import annotations

from transformers import PreTrainedTokenizerFast

from protkit.sequences.tokenize import CLS_ID, EOS_ID, VOCAB

SPECIAL_TOKENS = {"cls_token": "<cls>", "bos_token": "<cls>", "eos_token": "<eos>", "pad_token": "<pad>",
                  "unk_token": "<unk>", "mask_token": "<mask>"}


def protein_tokenizer(context_length: int) -> PreTrainedTokenizerFast:
    """A fast tokenizer with protkit's vocabulary (``model_max_length``: ``context_length`` tokens)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors

    core = Tokenizer(models.WordLevel({token: i for i, token in enumerate(VOCAB)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")  # every character a token
    core.post_processor = processors.TemplateProcessing(
        single="<cls> $A <eos>", pair="<cls> $A <eos> $B <eos>",
        special_tokens=[("<cls>", CLS_ID), ("<eos>", EOS_ID)],
    )
    core.add_special_tokens(sorted(set(SPECIAL_TOKENS.values())))
    return PreTrainedTokenizerFast(tokenizer_object=core, model_max_length=context_length, padding_side="right",
                                   **SPECIAL_TOKENS)
