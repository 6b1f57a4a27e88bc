"""The documentation stands alone: every relative link in a Markdown file of the repository
resolves to a file (and heading) in it, every repository path a file names exists, and no file
cites one outside the repository (design notes, absolute paths of a development machine)."""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
THIS = Path(__file__).resolve()

# Directories that are not the project's own text (caches, build output, virtualenvs).
SKIPPED_PARTS = {".git", ".venv", "node_modules", "__pycache__", "build", "dist"}

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"`+[^`]*`+")
# [text](target) or [text](target "title"); images too. Nested brackets in the text are rare in
# prose and never used here.
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


def project_files(suffixes: tuple[str, ...] | None = None) -> list[Path]:
    """The repository's files as git sees them (tracked, or new and not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    files = []
    for name in filter(None, listed.split("\0")):
        path = ROOT / name
        if SKIPPED_PARTS & set(Path(name).parts) or ".egg-info" in name:
            continue
        if path.is_file() and (suffixes is None or path.suffix in suffixes):
            files.append(path)
    return sorted(files)


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, inline code removed."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, _INLINE_CODE.sub("", line)))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link targets and formatting dropped, lower case,
    punctuation removed, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """Every anchor a Markdown file defines: its headings' (numbered when repeated) and
    explicit `<a id=...>` ones."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    text = path.read_text()
    for _, line in prose_lines(text):
        found.update(_HTML_ANCHOR.findall(line))
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING.match(line)
        if match:
            base = slug(match[2])
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def links(text: str) -> list[tuple[int, str]]:
    found = []
    for number, line in prose_lines(text):
        found.extend((number, target) for target in _LINK.findall(line))
        found.extend((number, target) for target in _REFERENCE.findall(line))
    return found


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with each relative link of one Markdown file of the tree at `root`."""
    problems = []
    for number, target in links(path.read_text()):
        if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        where = f"{path.relative_to(root)}:{number}: {target}"
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if file_part.startswith("/"):
            problems.append(f"{where}: an absolute path; link relative to the file")
        elif not resolved.is_relative_to(root):
            problems.append(f"{where}: outside the repository")
        elif not resolved.exists():
            problems.append(f"{where}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{where}: no heading with anchor #{anchor} in {resolved.name}")
    return problems


# Citations of files that are not in the repository: the design notes a session was given,
# and absolute paths of the machine it ran on (/work/; /home/ and the like also name paths
# inside containers, which manifests and tests use rightly).
_OUTSIDE = re.compile(
    r"\b(?:DESIGN|KUBERNETES-FACTS|STYLE)\.md\b"
    r"|(?<![\w.~-])/work/"
    r"|\.\./shared/"
)
# A path into the repository's own top-level directories, as prose and comments name them.
_REPO_PATH = re.compile(
    r"(?<![\w./-])((?:src|tests|hack|bench|charts|docs)/[\w./-]*\w\.(?:py|md|ya?ml|sh|tsv|json|txt|tpl))\b"
)


def outside_citations(text: str) -> list[str]:
    return [m[0] for m in _OUTSIDE.finditer(text)]


# Where scripts write what they produce: a path there names an output, not a file cited.
OUTPUT_DIRECTORIES = ("bench/results/",)


def missing_repo_paths(text: str) -> list[str]:
    return sorted(
        {
            p
            for p in _REPO_PATH.findall(text)
            if not p.startswith(OUTPUT_DIRECTORIES) and not (ROOT / p).exists()
        }
    )


MARKDOWN = project_files((".md",))
TEXT = [
    p
    for p in project_files()
    if p != THIS and p.suffix not in {".png", ".jpg", ".gz", ".zip", ".ico"}
]


def test_the_documents_are_found() -> None:
    names = {str(p.relative_to(ROOT)) for p in MARKDOWN}
    assert {"README.md", "charts/kaptain-warden/README.md"} <= names
    assert any(name.startswith("docs/operators/") for name in names)
    assert any(name.startswith("docs/policy-authors/") for name in names)
    assert any(name.startswith("docs/developers/") for name in names)


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    assert broken_links(path) == []


def test_the_link_check_can_fail(tmp_path: Path) -> None:
    """Each kind of broken link is reported (so the test above is not vacuous)."""
    root = tmp_path / "repo"
    (root / "docs" / "operators").mkdir(parents=True)
    (root / "README.md").write_text("# Readme\n")
    doc = root / "docs" / "operators" / "doc.md"
    doc.write_text(
        "\n".join(
            [
                "# Title",
                "[ok](#title) [ok](../../README.md#readme) [web](https://example.com/x)",
                "[gone](nowhere.md) [anchor](#no-such-heading) [up](../../../x.md)",
                "[abs](/work/x.md) `[code](not-checked.md)`",
                "```",
                "[fenced](not-checked-either.md)",
                "```",
                "[ref]: ../../README.md#no-anchor-there",
            ]
        )
    )
    assert [target for _, target in links(doc.read_text())] == [
        "#title",
        "../../README.md#readme",
        "https://example.com/x",
        "nowhere.md",
        "#no-such-heading",
        "../../../x.md",
        "/work/x.md",
        "../../README.md#no-anchor-there",
    ]
    assert [p.split(": ", 1)[1] for p in broken_links(doc, root)] == [
        "nowhere.md: no such file",
        "#no-such-heading: no heading with anchor #no-such-heading in doc.md",
        "../../../x.md: outside the repository",
        "/work/x.md: an absolute path; link relative to the file",
        "../../README.md#no-anchor-there: no heading with anchor #no-anchor-there in README.md",
    ]


def test_github_anchors() -> None:
    assert slug("What is mine, and when does it go: `ls` and `extend`") == (
        "what-is-mine-and-when-does-it-go-ls-and-extend"
    )
    assert slug("Connection deadlines: no client can hold a thread") == (
        "connection-deadlines-no-client-can-hold-a-thread"
    )
    assert slug("`x509: certificate signed by unknown authority` (CA mismatch)") == (
        "x509-certificate-signed-by-unknown-authority-ca-mismatch"
    )


@pytest.mark.parametrize("path", TEXT, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_file_cites_one_outside_the_repository(path: Path) -> None:
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        return  # binary: cites nothing
    assert outside_citations(text) == []
    assert missing_repo_paths(text) == []


def test_the_citation_checks_can_fail() -> None:
    assert outside_citations("see DESIGN.md and KUBERNETES-FACTS.md") == [
        "DESIGN.md",
        "KUBERNETES-FACTS.md",
    ]
    assert outside_citations("as measured (/work/shared/facts.md), ../shared/x") == [
        "/work/",
        "../shared/",
    ]
    assert outside_citations("~/.cache/x /tmp/k8s-webhook-server python /home/ray/x.py") == []
    assert missing_repo_paths("`tests/unit/test_docs.py` and tests/unit/test_nothing_here.py") == [
        "tests/unit/test_nothing_here.py"
    ]
    assert missing_repo_paths("it writes bench/results/sweep.json") == []
