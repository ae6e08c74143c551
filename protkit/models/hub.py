"""Fetching from the Hugging Face Hub without the long wait of an offline machine.

huggingface_hub retries a failed connection five times with back-off (about 25 s and a dozen
warning lines) before it says the Hub cannot be reached. :func:`hub_fetch` first asks the local
cache only; when the file is not there it fails at once under ``HF_HUB_OFFLINE=1``, and otherwise
opens one TCP connection to the Hub (or to the HTTPS proxy) with a short timeout before it lets
huggingface_hub download.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

PROBE_TIMEOUT = 3.0  # seconds to open a connection to the Hub (or the proxy) before giving up
DEFAULT_ENDPOINT = "https://huggingface.co"


class HubUnreachable(OSError):
    """The Hub is needed (the file is not cached) but cannot be reached, or HF_HUB_OFFLINE is set;
    the message says which."""


def offline() -> bool:
    """``HF_HUB_OFFLINE`` as huggingface_hub reads it."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def probe_address() -> tuple[str, int]:
    """Host and port a download connects to first: the HTTPS proxy when one is set, else the Hub."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlparse(proxy if proxy else os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT))
    return url.hostname or "", url.port or (443 if url.scheme == "https" else 80)


def reachable(timeout: float = PROBE_TIMEOUT) -> bool:
    host, port = probe_address()
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def hub_fetch(download: Callable[..., str], **arguments) -> Path:
    """``download(**arguments)`` (``hf_hub_download`` or ``snapshot_download``): from the cache when
    it holds the files, else from the Hub; HubUnreachable at once when the Hub cannot be used."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(download(**arguments, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    if offline():
        raise HubUnreachable("HF_HUB_OFFLINE is set")
    if not reachable():
        host, port = probe_address()
        raise HubUnreachable(f"{host}:{port} cannot be reached")
    return Path(download(**arguments))
