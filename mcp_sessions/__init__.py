"""mcp-sessions: session memory for LLM agents over MCP, stored in DuckDB."""

from .backend import SessionBackend
from .models import ChatMessage, InvalidArgument, SessionContext, SessionMetadata, SessionQuery, SessionState

__version__ = "0.1.0"

__all__ = [
    "ChatMessage",
    "InvalidArgument",
    "SessionBackend",
    "SessionContext",
    "SessionMetadata",
    "SessionQuery",
    "SessionState",
    "__version__",
]
