"""An in-process emulation of Zilliant, Zuora, workfloo and 8x8 (plus their token endpoints).

One aiohttp application serves every provider under its own prefix (``/salesforce``, ``/zilliant``,
``/zuora``, ``/workfloo``, ``/workfloo-sandbox``, ``/8x8``) and an admin API under ``/_sandbox``
for fault injection, request inspection and reset. See :mod:`bridge.sandbox.server`.
"""

from bridge.sandbox.config import SandboxConfig
from bridge.sandbox.server import RunningSandbox, SandboxState, build_app, start_sandbox

__all__ = ["RunningSandbox", "SandboxConfig", "SandboxState", "build_app", "start_sandbox"]
