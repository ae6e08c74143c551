"""The model a run fine-tunes and the one it writes: a task head (:data:`protkit.hf.export.HEADS`)
on the base model's weights, LoRA adapters (peft) or every weight trainable, the trainable
tensors a checkpoint keeps, the merged result, and reading a fine-tuned directory back."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
import torch.nn as nn
from transformers import PreTrainedModel

from protkit.finetune.errors import FinetuneError
from protkit.finetune.tasks import PROBLEM_TYPES, LabelSpace
from protkit.hf.export import HEADS
from protkit.models.esmc.model import CONTEXT_LENGTH as ESMC_CONTEXT
from protkit.models.names import CONFIG_FILE, WEIGHTS_FILE

HEAD_CLASSES = {cls.__name__: key for key, cls in HEADS.items()}  # class name -> (kind, head)
TASK_HEADS = ("sequence", "tokens")  # HEADS' per-protein and per-residue heads
CLASSIFIER = "classifier"  # the head's last layer (LoRA's modules_to_save)


def head_of(task: str) -> str:
    """``tokens`` for per-residue tasks, else ``sequence``."""
    return "tokens" if task == "tokens" else "sequence"


def context_length(config) -> int:
    """Tokens (CLS and EOS included) the model was made for: a student's ``context_length``, ESMC's 2048."""
    return getattr(config, "context_length", None) or ESMC_CONTEXT


def weights_file(source: Path) -> Path:
    """The weights file of a model source (a student directory or a teacher weights file)."""
    return source / WEIGHTS_FILE if source.is_dir() else source


def build_head(base: PreTrainedModel, kind: str, space: LabelSpace, seed: int) -> PreTrainedModel:
    """A task head for ``space`` on a copy of ``base``'s weights (the new classifier drawn from ``seed``)."""
    config = copy.deepcopy(base.config)
    config.num_labels = space.num_labels
    config.problem_type = space.problem_type
    config.finetuning_task = space.task
    config.id2label = space.id2label()
    config.label2id = {name: i for i, name in space.id2label().items()}
    torch.manual_seed(seed)
    head = HEADS[(kind, head_of(space.task))](config)
    getattr(head, head.base_model_prefix).load_state_dict(base.state_dict())
    return head


def add_lora(head: PreTrainedModel, rank: int) -> nn.Module:
    """LoRA adapters of rank ``rank`` (scale 1: alpha = rank) on every linear layer; the classifier
    trained whole."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules="all-linear",
                        modules_to_save=[CLASSIFIER])
    return get_peft_model(head, config)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the trainable tensors (what a checkpoint keeps of the model)."""
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Put a :func:`trainable_state` back; ValueError when its tensors are not the model's."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if set(params) != set(state) or any(params[k].shape != v.shape for k, v in state.items()):
        raise ValueError("the checkpoint's trainable tensors do not fit this model")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def final_model(model: nn.Module, lora: bool, shift: float = 0.0, scale: float = 1.0) -> PreTrainedModel:
    """The model to write: LoRA merged into the weights (``merge_and_unload``); for regression the
    target standardisation folded into the classifier, so it predicts in the labels' units."""
    merged = model.merge_and_unload() if lora else model
    if merged.config.problem_type == PROBLEM_TYPES["regression"]:
        classifier = getattr(merged, CLASSIFIER)
        with torch.no_grad():
            classifier.weight.mul_(scale)
            classifier.bias.mul_(scale).add_(shift)
    return merged.eval()


def read_config(directory: Path) -> dict:
    path = directory / CONFIG_FILE
    if not directory.is_dir():
        raise FileNotFoundError(f"model directory {directory}: no such directory; give the --output directory of "
                                "protkit finetune")
    if not path.is_file():
        raise FileNotFoundError(f"model directory {directory}: no {CONFIG_FILE}; give the --output directory of "
                                "protkit finetune")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FinetuneError(f"{path}: not valid JSON ({err})") from None


def task_of(config: dict, head: str) -> str:
    """The task a fine-tuned model's configuration says (``finetuning_task``, else its head and problem)."""
    task = config.get("finetuning_task")
    if task in PROBLEM_TYPES:
        return task
    if head == "tokens":
        return "tokens"
    problems = {p: t for t, p in PROBLEM_TYPES.items() if t != "tokens"}
    return problems.get(config.get("problem_type"), "classification")


def load_finetuned(directory: str | Path) -> tuple[PreTrainedModel, LabelSpace]:
    """A fine-tuned directory (``protkit finetune``'s output) as protkit's Hugging Face class named by
    its ``architectures``, weights from its ``model.safetensors``; eval mode."""
    directory = Path(directory)
    config = read_config(directory)
    name = (config.get("architectures") or ["(none)"])[0]
    kind, head = HEAD_CLASSES.get(name, (None, None))
    if head not in TASK_HEADS:
        raise FinetuneError(f"{directory}: holds {name}, not a model with a task head; fine-tune it first "
                            "(protkit finetune --model ... --output DIR) and predict with DIR")
    try:
        model, info = HEADS[(kind, head)].from_pretrained(directory, output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as err:
        raise FinetuneError(f"{directory / WEIGHTS_FILE}: cannot load the weights ({type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else ''})") from None
    if info["missing_keys"] or info["unexpected_keys"]:
        raise FinetuneError(f"{directory / WEIGHTS_FILE}: tensors do not fit {name} (missing: "
                            f"{info['missing_keys'][:3]}, unexpected: {info['unexpected_keys'][:3]})")
    task = task_of(config, head)
    labels = model.config.id2label
    return model.eval(), LabelSpace(task, tuple(labels[i] for i in range(len(labels))))
