"""What a reader sees before running anything: every relative link and image in the README, docs/ and the figure
index resolves, every figure is listed with a caption, the README stays short and the figures light."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
PAGES = [ROOT / "README.md", ROOT / "figures" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def relative_links(page: Path) -> list[str]:
    """The targets of a markdown page's links and images that point inside the repository."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold commands, not links
    return [t.split("#")[0] for t in LINK.findall(text)
            if not t.startswith(("http://", "https://", "mailto:", "#"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_image_resolves(page):
    dead = [t for t in relative_links(page) if not (page.parent / t).exists()]
    assert not dead, f"{page.relative_to(ROOT)}: {dead}"


def test_the_figure_index_lists_every_figure_with_a_caption():
    index = (ROOT / "figures" / "README.md").read_text()
    listed = set(relative_links(ROOT / "figures" / "README.md"))
    on_disk = {p.relative_to(ROOT / "figures").as_posix() for p in (ROOT / "figures").rglob("*.png")}
    assert on_disk and listed == on_disk
    assert "(no caption recorded)" not in index


def test_the_readme_is_short_and_the_figures_light():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300
    sizes = [p.stat().st_size for p in (ROOT / "figures").rglob("*") if p.is_file()]
    assert max(sizes) < 1 << 20 and sum(sizes) < 20 << 20


def long_sentences(markdown: str, most: int = 40) -> list[str]:
    """The prose sentences of a markdown page with more than `most` words (code blocks, tables, headings and images
    aside; list items and paragraphs apart)."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.S)
    found = []
    for para in re.split(r"\n\s*\n", text):
        lines = [ln for ln in para.splitlines() if ln.strip() and not ln.startswith(("|", "![", "#"))]
        for item in re.split(r"\n(?=- )", "\n".join(lines)):
            prose = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", " ".join(item.split()))
            found += [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9`*(])", prose) if len(s.split()) > most]
    return found


def test_the_readme_reads_in_sentences_a_newcomer_can_follow():
    """No README sentence over 40 words: the front door, its measurements in docs/ as tables."""
    assert not long_sentences((ROOT / "README.md").read_text())
    page = "A short one. Long " + "word " * 40 + "ends.\n\n| a table " + "cell " * 60 + "|"
    assert [len(s.split()) for s in long_sentences(page)] == [42]
