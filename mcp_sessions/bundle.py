"""The Claude Desktop bundle's entry point (see manifest.py): serve over stdio with the user's settings."""

from __future__ import annotations

import os


def serve_flags(environ: dict[str, str] | os._Environ[str]) -> list[str]:
    """The serve flags the bundle's user_config asks for, passed by Claude Desktop as environment variables."""
    flags: list[str] = []
    if environ.get("MCP_SESSIONS_READ_ONLY", "").strip().lower() in ("1", "true", "yes"):
        flags.append("--read-only")
    alias = environ.get("MCP_SESSIONS_AGENT_ALIAS", "")
    if alias:
        flags += ["--agent-alias", alias]
    return flags


def main() -> None:
    """The bundle's entry point: serve over stdio with the user's settings."""
    from .cli import main as cli_main

    cli_main(["serve", *serve_flags(os.environ)])


if __name__ == "__main__":
    main()
