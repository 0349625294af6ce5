"""Outside services a run will talk to: the wandb login and the hub token.

Checked from files and the environment only (no wandb or huggingface_hub import), so a
missing login fails `fluxtui validate` in milliseconds instead of after the models load.
Whether a hub token may write is asked of the hub only when it answers within a second;
offline, an unverified token is a warning.
"""

from __future__ import annotations

import json
import netrc
import os
import threading
from pathlib import Path

from ..config import Project
from ..problems import Problem
from .base import problem_at, rule

WANDB_HOST = "api.wandb.ai"
HUB_ENDPOINT = "https://huggingface.co"
WHOAMI_TIMEOUT = 1.0  # seconds; a slower hub counts as unreachable


# -- wandb -------------------------------------------------------------------------------------


def wandb_logged_in() -> bool:
    """WANDB_API_KEY, or an entry for the wandb host in the netrc file (`wandb login` writes it);
    WANDB_MODE offline/disabled needs no login."""
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return True
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "").split("://")[-1].split("/")[0] or WANDB_HOST
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        return netrc.netrc(str(path)).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


@rule
def _wandb(p: Project) -> list[Problem]:
    if p.logging.report_to != "wandb" or wandb_logged_in():
        return []
    return [
        problem_at(
            p,
            'report_to = "wandb" but this machine is not logged in to wandb (no WANDB_API_KEY, no netrc entry)',
            "logging.report_to",
            fix='run `wandb login`, or set WANDB_MODE=offline, or report_to = "tensorboard"',
        )
    ]


# -- the hub -----------------------------------------------------------------------------------


def hub_token() -> str | None:
    """The token huggingface_hub would use: HF_TOKEN, then the file `hf auth login` writes."""
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if os.environ.get(var, "").strip():
            return os.environ[var].strip()
    hf_home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    path = Path(os.environ.get("HF_TOKEN_PATH") or hf_home / "token")
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return token or None


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def whoami(token: str, timeout: float = WHOAMI_TIMEOUT) -> tuple[str, str | None]:
    """Ask the hub about a token: ("ok", role), ("invalid", None) or ("unreachable", None).
    The request runs in a thread that is abandoned after `timeout` (a DNS lookup cannot be
    timed out otherwise)."""
    import urllib.error
    import urllib.request

    endpoint = os.environ.get("HF_ENDPOINT", HUB_ENDPOINT).rstrip("/")
    result: list[tuple[str, str | None]] = []

    def ask() -> None:
        request = urllib.request.Request(f"{endpoint}/api/whoami-v2", headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                data = json.loads(reply.read().decode("utf-8") or "{}")
            role = ((data.get("auth") or {}).get("accessToken") or {}).get("role")
            result.append(("ok", role))
        except urllib.error.HTTPError as exc:
            result.append(("invalid", None) if exc.code in (401, 403) else ("unreachable", None))
        except (OSError, ValueError):
            result.append(("unreachable", None))

    worker = threading.Thread(target=ask, daemon=True)
    worker.start()
    worker.join(timeout)
    return result[0] if result else ("unreachable", None)


@rule
def _hub_token(p: Project) -> list[Problem]:
    h = p.hub
    wants = [k for k in ("push_to_hub", "push_checkpoints_to_hub") if getattr(h, k)]
    if not wants or not h.hub_model_id:
        return []  # outputs._hub names the missing hub_model_id
    key = f"hub.{wants[0]}"
    token = hub_token()
    if token is None:
        return [
            problem_at(
                p,
                f"{wants[0]} is on but there is no hub token (HF_TOKEN, or `hf auth login`)",
                key,
                fix=f"run `hf auth login` with a write token, or set {wants[0]} = false",
            )
        ]
    if hub_offline():
        state, role = "unreachable", None
    else:
        state, role = whoami(token)
    if state == "invalid":
        return [
            problem_at(
                p,
                f"{wants[0]}: the hub refuses this machine's token (expired or revoked)",
                key,
                fix="run `hf auth login` again with a write token",
            )
        ]
    if state == "ok" and role == "read":
        return [
            problem_at(
                p,
                f"{wants[0]}: the hub token is read-only; uploading to {h.hub_model_id} needs write access",
                key,
                fix="create a write token at huggingface.co/settings/tokens and `hf auth login` with it",
            )
        ]
    if state == "unreachable":
        return [
            problem_at(
                p,
                f"{wants[0]}: the hub cannot be reached now, so the token's write access is not checked",
                key,
                severity="warning",
                fix="nothing to do if the training machine is online; the LoRA stays on disk if the upload fails",
            )
        ]
    return []
