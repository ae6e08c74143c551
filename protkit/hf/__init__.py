"""protkit's models as Hugging Face models: the teacher and the students with transformers' outputs,
task heads and LoRA-ready modules (:mod:`.esmc`, :mod:`.prothash`), and the self-contained export
(:mod:`.export`) that loads with only torch and transformers."""

from protkit.hf.export import HEADS, export_hf, hf_model, model_kind, write_hf

__all__ = ["HEADS", "export_hf", "hf_model", "model_kind", "write_hf"]
