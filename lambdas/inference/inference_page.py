"""The inference page: page.html, with a Content-Security-Policy that admits only its own inline code."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

PAGE_PATH = Path(__file__).with_name("page.html")
HTML_CONTENT_TYPE = "text/html; charset=utf-8"

# Bare tags only: a src, nonce or type attribute would change what the hashes below have to cover.
_INLINE = {
    "script": re.compile(r"<script>(.*?)</script>", re.S),
    "style": re.compile(r"<style>(.*?)</style>", re.S),
}
_ANY_TAG = {"script": re.compile(r"<script\b", re.I), "style": re.compile(r"<style\b", re.I)}
_INLINE_HANDLER = re.compile(r"<[^>]*\s(?:on[a-z]+|style)\s*=", re.I)


class PageError(ValueError):
    """page.html breaks the rules its Content-Security-Policy relies on."""


@dataclass(frozen=True)
class Page:
    html: str
    headers: dict[str, str]


def _sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def content_security_policy(html: str) -> str:
    """A policy that runs exactly the page's inline <script> and <style> blocks (by hash) and nothing else.

    Hashes rather than a nonce keep the page a constant, so it is read and hashed once per cold start.
    """
    sources: dict[str, list[str]] = {}
    for kind, pattern in _INLINE.items():
        blocks = pattern.findall(html)
        if len(blocks) != len(_ANY_TAG[kind].findall(html)):
            raise PageError(f"every <{kind}> in the page must be a bare inline <{kind}> block")
        if not blocks:
            raise PageError(f"the page has no inline <{kind}> block")
        sources[kind] = [_sha256_source(block) for block in blocks]
    markup = _INLINE["style"].sub("", _INLINE["script"].sub("", html))
    if _INLINE_HANDLER.search(markup):
        raise PageError("inline event handlers and style attributes would be blocked: use the inline script")
    directives = [
        "default-src 'none'",
        "script-src " + " ".join(sources["script"]),
        "style-src " + " ".join(sources["style"]),
        # The preview is a blob: URL of the chosen file; the favicon is a data: URL.
        "img-src blob: data:",
        # The page POSTs to its own URL, as scripts do.
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
    ]
    return "; ".join(directives)


def load_page(path: Path = PAGE_PATH) -> Page:
    html = path.read_text(encoding="utf-8")
    headers = {
        "Content-Type": HTML_CONTENT_TYPE,
        "Content-Security-Policy": content_security_policy(html),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }
    return Page(html=html, headers=headers)
