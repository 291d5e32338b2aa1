"""The static catalogue site (`guichet site`): plain files, every link resolving, no request
to anywhere, an index per language grouped by authority, with an offline search box."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import PROCEDURES

from cli import main
from engine import Procedure, load_procedure, procedure_files
from renderers.site import build_site


class Links(HTMLParser):
    """Every href/src of a page, and whether the parser met a structural problem."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []
        self.headings: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.targets += [v for k, v in attrs if k in ("href", "src") and v]
        self._in_h2 = tag == "h2"

    def handle_data(self, data: str) -> None:
        if self._in_h2 and data.strip():
            self.headings.append(data.strip())
            self._in_h2 = False


@pytest.fixture(scope="module")
def shipped() -> list[Procedure]:
    return [load_procedure(p) for p in procedure_files([PROCEDURES])]


@pytest.fixture(scope="module")
def built(shipped: list[Procedure], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    build_site(shipped, root)
    return root


def parsed(path: Path) -> Links:
    links = Links()
    links.feed(path.read_text(encoding="utf-8"))
    links.close()
    return links


def test_each_procedure_has_its_page_form_and_diagram_in_each_language(
        built: Path, shipped: list[Procedure]) -> None:
    for language in ("fr", "en"):
        for p in shipped:
            folder = built / language / p.id
            assert (folder / "index.html").is_file() and (folder / "form.html").is_file()
            assert any((folder / name).is_file() for name in ("diagram.svg", "diagram.mmd"))


def test_every_link_of_every_index_resolves_and_none_leaves_the_site(built: Path) -> None:
    for index in (built / "index.html", built / "fr" / "index.html", built / "en" / "index.html"):
        for target in parsed(index).targets:
            assert not re.match(r"^[a-z]+:", target), f"{index}: {target} leaves the site"
            assert (index.parent / target).resolve().is_file(), f"{index}: {target}"


def test_no_page_of_the_site_asks_the_network_for_anything(built: Path) -> None:
    for page in built.rglob("*.html"):
        for target in parsed(page).targets:
            assert not target.startswith(("http:", "https:", "//")), f"{page}: {target}"


def test_the_index_groups_procedures_by_authority(built: Path, shipped: list[Procedure]
                                                  ) -> None:
    ministries = sorted({p.ministry.get("fr") for p in shipped if p.ministry})
    assert parsed(built / "fr" / "index.html").headings == ministries
    assert 'type="search"' in (built / "en" / "index.html").read_text(encoding="utf-8")


def test_a_procedure_id_that_cannot_name_a_folder_is_refused(shipped: list[Procedure],
                                                             tmp_path: Path) -> None:
    import dataclasses
    bad = dataclasses.replace(shipped[0], id="../escape")
    with pytest.raises(ValueError, match="cannot name a folder"):
        build_site([bad], tmp_path)
    assert not any(tmp_path.iterdir())


def test_guichet_site_writes_the_site(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["site", str(PROCEDURES), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "index.html").is_file()
    assert "procedure(s)" in result.output
