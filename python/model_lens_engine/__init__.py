"""Model Lens PyTorch engine: JSON-RPC 2.0 over stdio (Content-Length framing)."""

ENGINE_VERSION = "0.1.0"
from .protocol import PROTOCOL_VERSION  # noqa: E402,F401  (generated from src/protocol)
