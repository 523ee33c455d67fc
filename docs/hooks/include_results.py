"""mkdocs hook: the results page shows benchmarks/RESULTS.md, the one place figures are recorded."""

from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "RESULTS.md"


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri == "results.md":
        return RESULTS.read_text(encoding="utf-8")
    return markdown
