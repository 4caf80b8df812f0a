"""Email addresses out of Zoho's free text (issue 31).

A bounce reason or an unblock answer may quote the recipient (``550 5.1.1 <kim@example.org>: …``). What a run
keeps (XCom, logs, reports) names records by id, never by address, so Zoho's text is redacted where it enters the
provider (the Emails-list check, the unblock answer) and again on what a workflow task returns. Pure: no I/O.
"""

from __future__ import annotations

import re

#: An email address inside any text.
ADDRESS_RE = re.compile(r"[^\s@<>\"'(),;:\[\]]+@[^\s@<>\"'(),;:\[\]]+\.[^\s@<>\"'(),;:\[\]]+")
REDACTED_ADDRESS = "<address>"
#: An address in angle brackets (``<kim@example.org>``), replaced brackets and all.
_BRACKETED_RE = re.compile(f"<{ADDRESS_RE.pattern}>")


def redact_addresses(text: str) -> str:
    """``text`` with every email address in it replaced by ``<address>``."""
    if "@" not in text:
        return text
    return ADDRESS_RE.sub(REDACTED_ADDRESS, _BRACKETED_RE.sub(REDACTED_ADDRESS, text))


__all__ = ["ADDRESS_RE", "REDACTED_ADDRESS", "redact_addresses"]
