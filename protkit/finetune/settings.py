"""The settings of one fine-tuning run (``protkit finetune``'s options) and their defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

TASKS = ("auto", "classification", "multilabel", "regression", "tokens")
DEFAULT_LORA_RANK = 8
DEFAULT_LR_LORA = 1e-3
DEFAULT_LR_FULL = 1e-4
DEFAULT_EPOCHS = 10
DEFAULT_BATCH_TOKENS = 4096  # padded tokens per training batch
DEFAULT_PATIENCE = 3  # epochs without a better validation metric before stopping (0: never stop early)
DEFAULT_VALID_FRACTION = 0.1
MAX_VALID_FRACTION = 0.9
WARMUP_FRACTION = 0.1  # share of the optimizer steps with a linearly rising learning rate
CLIP_NORM = 1.0  # gradient norm clipping
WEIGHT_DECAY = 0.01
VALID_SALT = "protkit-finetune-valid-v1"  # the validation split's hash salt
TEST_SALT = "protkit-finetune-test-v1"  # the salt of the test split taken off --train (--test-fraction)


@dataclass(frozen=True)
class LabelOptions:
    """Where the labels of a file are: a FASTA header regex, or table columns."""

    label_regex: str | None = None
    sequence_column: str = "sequence"
    id_column: str = "id"
    label_columns: tuple[str, ...] = ()
    alphabet: str = "reject"


@dataclass(frozen=True)
class FinetuneSettings:
    """Everything ``protkit finetune`` is told. ``lora_rank`` None: full fine-tuning; ``lr`` None:
    the default of the mode; ``max_length`` None: the model's context length."""

    model: str
    train: Path
    output: Path
    test: Path | None = None
    labels: LabelOptions = field(default_factory=LabelOptions)
    task: str = "auto"
    valid_fraction: float = DEFAULT_VALID_FRACTION
    test_fraction: float = 0.0  # without --test: the share of --train held out as the test set
    lora_rank: int | None = DEFAULT_LORA_RANK
    lr: float | None = None
    epochs: int = DEFAULT_EPOCHS
    batch_tokens: int = DEFAULT_BATCH_TOKENS
    max_length: int | None = None
    seed: int = 0
    patience: int = DEFAULT_PATIENCE
    device: str = "auto"
    baselines: bool = True
    resume: bool = True

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return DEFAULT_LR_LORA if self.lora_rank is not None else DEFAULT_LR_FULL

    @property
    def mode(self) -> str:
        return f"lora-{self.lora_rank}" if self.lora_rank is not None else "full"

    def to_dict(self) -> dict:
        """JSON-ready settings (paths as strings; the learning rate resolved)."""
        values = asdict(self)
        values.update(train=str(self.train), output=str(self.output), test=str(self.test) if self.test else None,
                      lr=self.learning_rate)
        values["labels"]["label_columns"] = list(self.labels.label_columns)
        return values
