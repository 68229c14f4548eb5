"""Model Lens PyTorch engine: JSON-RPC 2.0 over stdio (Content-Length framing)."""

ENGINE_VERSION = "0.1.0"
PROTOCOL_VERSION = "1.0"
