"""Reading the dashboard's HTML in tests: tokens, rows, every URL the page holds."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

URL_ATTRIBUTES = {"href", "src", "action", "formaction", "srcset", "xlink:href", "data", "poster"}


class Page(HTMLParser):
    """Tags, URL attributes, event-handler attributes and text of one page."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.handlers: list[tuple[str, str]] = []
        self.styles: list[str] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in URL_ATTRIBUTES and value is not None:
                self.urls.append(value)
            if name.startswith("on"):
                self.handlers.append((tag, name))
            if name == "style":
                self.styles.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def token(response: Any) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True))
    assert match, "the page has no CSRF token"
    return match.group(1)


def ids(response: Any) -> list[str]:
    """The delivery ids of a list page, in order."""
    html = response.get_data(as_text=True)
    return [m for m in re.findall(r'class="delivery-link" href="[^"]*"><code>([^<]*)</code>', html)]


def older(response: Any) -> str | None:
    match = re.search(r'href="([^"]+)" rel="next"', response.get_data(as_text=True))
    return None if match is None else match.group(1).replace("&amp;", "&")
