"""The one error of fine-tuning and prediction that a user can fix."""

from __future__ import annotations


class FinetuneError(ValueError):
    """A labelled file, option, checkpoint or model directory protkit cannot use; the message names
    the file, line or row, sequence id and option, and says what to do."""
