"""Fine-tuning a student or the ESMC teacher on a user's own labels (``protkit finetune``) and
predicting with the result (``protkit predict``).

Public API: :func:`finetune` (:class:`FinetuneSettings`, :class:`LabelOptions`), :func:`predict_fasta`,
:func:`load_finetuned`, :func:`read_labelled`, :data:`TASKS`, :class:`FinetuneError`. The names are
imported when first used, so that the command line's start-up does not load torch and peft.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TASKS", "FinetuneError", "FinetuneSettings", "LabelOptions", "finetune", "load_finetuned",
           "predict_fasta", "read_labelled"]


def __getattr__(name: str) -> Any:
    if name in ("TASKS", "FinetuneSettings", "LabelOptions"):
        from protkit.finetune import settings as module
    elif name == "FinetuneError":
        from protkit.finetune import errors as module
    elif name == "finetune":
        from protkit.finetune import run as module
    elif name == "predict_fasta":
        from protkit.finetune import predict as module
    elif name == "load_finetuned":
        from protkit.finetune import model as module
    elif name == "read_labelled":
        from protkit.finetune import labels as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(module, name)
