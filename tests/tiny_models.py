"""Settings of the tiny random models the tests share (``tests/conftest.py``'s ``model_dir``): one
home, imported by name (``from tiny_models import TINY_STUDENT``), since several test folders have a
``conftest.py`` of their own."""

TINY_STUDENT = {"d_model": 32, "q_heads": 4, "kv_heads": 2, "n_layers": 2, "teacher_dim": 64, "context_length": 512}
