"""``protkit finetune``: read the labels, split, train, write the fine-tuned model and its scores.

The output directory is a Hugging Face model (:func:`protkit.hf.export.write_hf`: LoRA merged into the
weights) that ``AutoModelForSequenceClassification`` / ``AutoModelForTokenClassification`` load with
``trust_remote_code=True``, plus ``metrics.json`` (:mod:`protkit.finetune.summary`) and
``tensorboard/``. While the run works, its checkpoints and TensorBoard logs are in
``OUTPUT.partial/``; the output appears at once, complete, and the work directory is removed, so a
deliberate re-run trains afresh and a killed one resumes.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
import torch.nn as nn

from protkit.embed.parts import work_dir
from protkit.finetune.baselines import baseline_scores
from protkit.finetune.checkpoints import discard, open_work
from protkit.finetune.dataset import Prepared, prepare_data
from protkit.finetune.errors import FinetuneError
from protkit.finetune.inference import head_outputs
from protkit.finetune.metrics import score
from protkit.finetune.model import add_lora, build_head, context_length, final_model, weights_file
from protkit.finetune.settings import MAX_VALID_FRACTION, FinetuneSettings
from protkit.finetune.summary import metrics_document, write_model_dir
from protkit.finetune.train import Schedule, TrainingData, regression_scaling, train
from protkit.hf.export import hf_model
from protkit.io.digests import file_sha256
from protkit.io.outputs import claim_outputs
from protkit.models.device import resolve_device
from protkit.models.resolve import ModelKind, classify_model
from protkit.version import VERSION

log = logging.getLogger(__name__)


def check_settings(settings: FinetuneSettings) -> None:
    """Options no run can use, named (the command line checks most of them already)."""
    if not 0 <= settings.valid_fraction <= MAX_VALID_FRACTION:
        raise FinetuneError(f"--valid-fraction must be in [0, {MAX_VALID_FRACTION}], got {settings.valid_fraction}")
    if not 0 <= settings.test_fraction <= MAX_VALID_FRACTION:
        raise FinetuneError(f"--test-fraction must be in [0, {MAX_VALID_FRACTION}], got {settings.test_fraction}")
    if settings.test is not None and settings.test_fraction > 0:
        raise FinetuneError(f"give --test FILE or --test-fraction, not both (--test {settings.test}, --test-fraction "
                            f"{settings.test_fraction})")
    for name, value in (("--epochs", settings.epochs), ("--batch-tokens", settings.batch_tokens)):
        if value < 1:
            raise FinetuneError(f"{name} must be a positive integer, got {value}")
    if settings.lora_rank is not None and settings.lora_rank < 1:
        raise FinetuneError(f"--lora must be a positive rank, got {settings.lora_rank}")


def load_base(model: str) -> tuple[torch.nn.Module, str, Path]:
    """The base Hugging Face model to fine-tune; FinetuneError for what holds no float weights."""
    found = classify_model(model)
    if found.kind == ModelKind.INT8:
        raise FinetuneError(f"{model}: an int8 artifact cannot be fine-tuned (its weights are quantized to 8 bits); "
                            f"pass the fp32 student directory it was made from (the parent of {found.path.name}/)")
    if found.kind == ModelKind.ONNX:
        raise FinetuneError(f"{model}: an ONNX file cannot be fine-tuned; pass the student directory it was exported "
                            "from, or the teacher (esmc_300m, esmc_600m)")
    return hf_model(model)


def run_identity(settings: FinetuneSettings, source: Path, data: Prepared) -> dict:
    """Everything that decides the trained weights: a checkpoint resumes only under the same identity
    (the device and thread count are left out: they change the last bits, not what is trained)."""
    values = settings.to_dict()
    kept = ("labels", "task", "valid_fraction", "test_fraction", "lora_rank", "lr", "epochs", "batch_tokens", "seed",
            "patience")
    return {
        **{key: values[key] for key in kept},
        "model_sha256": file_sha256(weights_file(source)),
        "train_sha256": file_sha256(settings.train),
        "label_space": {"task": data.space.task, "names": list(data.space.names)},
        "max_length": data.max_length,
        "protkit_version": VERSION,
    }


def training_data(data: Prepared) -> TrainingData:
    shift, scale = regression_scaling(data.train) if data.space.task == "regression" else (0.0, 1.0)
    return TrainingData(data.train, data.valid, data.space, data.max_length, shift, scale)


def final_scores(model: nn.Module, data: Prepared, batch_tokens: int, device: torch.device) -> dict[str, dict]:
    """The written model's scores on the validation and test proteins."""
    sets = {"valid": data.valid, "test": data.test}
    return {name: score(data.space, examples, head_outputs(model, [e.sequence for e in examples],
                                                          data.space.task == "tokens", data.max_length,
                                                          batch_tokens, device))
            for name, examples in sets.items() if examples}


def finetune(settings: FinetuneSettings) -> Path:
    """Fine-tune ``settings.model`` on ``settings.train`` and write ``settings.output`` (module docstring)."""
    check_settings(settings)
    started = time.perf_counter()
    base, kind, source = load_base(settings.model)
    output, work = Path(settings.output), work_dir(settings.output)
    with claim_outputs(directories=[output, work], inputs=[settings.train, settings.test, source]):
        data = prepare_data(settings, context_length(base.config))
        device = resolve_device(settings.device)
        identity = run_identity(settings, source, data)
        open_work(work, identity, settings.resume)
        log.info("%s: %s task, %d train / %d validation / %d test proteins; labels: %s", settings.train,
                 data.space.task, len(data.train), len(data.valid), len(data.test), ", ".join(data.space.names))
        baselines = baseline_scores(base.to(device), data.space, data.train, {"valid": data.valid, "test": data.test},
                                    data.max_length, settings.batch_tokens, device, settings.seed) \
            if settings.baselines else {}
        model = build_head(base, kind, data.space, settings.seed)
        del base  # the head holds a copy of its weights
        lora = settings.lora_rank is not None
        model = (add_lora(model, settings.lora_rank) if lora else model).to(device)
        trained = training_data(data)
        schedule = Schedule(settings.epochs, settings.learning_rate, settings.batch_tokens, settings.seed,
                            settings.patience)
        progress = train(model, trained, schedule, work, identity, device)
        final = final_model(model, lora, trained.shift, trained.scale)
        document = metrics_document(settings, identity, data, final_scores(final, data, settings.batch_tokens, device),
                                    baselines, progress, {"source": settings.model, "kind": kind, "path": str(source)},
                                    time.perf_counter() - started)
        write_model_dir(final.cpu(), output, work, document, inputs=[source])
        discard(work)
    log.info("wrote %s: %s", output, document["summary"])
    return output
