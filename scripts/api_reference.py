"""The browsable API reference: swagger-ui-dist's own page, made one self-contained file.

The page, styles and scripts are swagger-ui-dist's (pinned by package-lock.json, installed by
`npm ci`); this only inlines them into its index.html, so Envoy serves the whole reference from one
file next to the document, and points the initializer at `/api/openapi.json`.
"""

import base64
import re
from pathlib import Path

DOCUMENT_URL = "/api/openapi.json"
_SOURCE_MAP = re.compile(r"\n//# sourceMappingURL=\S+\s*$")


def _script(text: str) -> str:
    text = _SOURCE_MAP.sub("\n", text)
    if "</script" in text.lower():
        raise ValueError("a bundle contains </script and cannot be inlined")
    return f"<script>\n{text}\n</script>"


def build_reference_page(package: Path) -> str:
    """index.html of the swagger-ui-dist package at `package`, with every asset inlined."""
    page = (package / "index.html").read_text()
    initializer = (package / "swagger-initializer.js").read_text()
    initializer, count = re.subn(r'url: "[^"]*"', f'url: "{DOCUMENT_URL}"', initializer)
    if count != 1:
        raise ValueError("swagger-initializer.js no longer has one `url:` to point at the document")

    def stylesheet(match: re.Match[str]) -> str:
        css = _SOURCE_MAP.sub("\n", (package / match["href"]).read_text())
        return f"<style>\n{css}\n</style>"

    def icon(match: re.Match[str]) -> str:
        data = base64.b64encode((package / match["href"]).read_bytes()).decode()
        return match[0].replace(f'href="{match["href"]}"', f'href="data:image/png;base64,{data}"')

    def script(match: re.Match[str]) -> str:
        name = match["src"]
        return _script(initializer if name == "swagger-initializer.js" else (package / name).read_text())

    assets = len(re.findall(r"<link |<script ", page))
    page, styles = re.subn(
        r'<link rel="stylesheet" type="text/css" href="(?:\./)?(?P<href>[^"]+)" />', stylesheet, page
    )
    page, icons = re.subn(r'<link rel="icon" type="image/png" href="(?:\./)?(?P<href>[^"]+)"[^>]*/>', icon, page)
    page, scripts = re.subn(r'<script src="(?:\./)?(?P<src>[^"]+)" charset="UTF-8"> </script>', script, page)
    if styles + icons + scripts != assets:
        raise ValueError("swagger-ui-dist's index.html references an asset this script does not inline")
    return page.replace("<title>Swagger UI</title>", "<title>adplane API reference</title>")
