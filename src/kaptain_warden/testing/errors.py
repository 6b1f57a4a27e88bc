"""The test harness's errors."""

from __future__ import annotations

__all__ = ["ControlPlaneError", "PortTakenError"]


class ControlPlaneError(RuntimeError):
    """The control plane could not be started or stopped, or a component misbehaved."""


class PortTakenError(ControlPlaneError):
    """A process could not bind a port we picked: someone else took it in the meantime."""
