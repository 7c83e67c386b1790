"""A pull request's card cannot run script in the site: ``--check`` refuses markup and script URLs in
any string field, and even cards that skip that check render to HTML with no executable construct."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser

import pytest

from benchmark.core.errors import BenchmarkError
from benchmark.records.store import ResultStore
from benchmark.report.leaderboard import Leaderboard
from benchmark.report.render import _asset, leaderboard_html, write_outputs
from benchmark.run.runner import registered_plan

PAYLOADS = [
    "x<script>alert(1)</script>",
    "x [click](javascript:alert(document.domain))",
    "x ![p](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    'x" onmouseover="alert(1)',
    "x<img src=q onerror=alert(1)>",
    "x [d](data:text/html,hi) <a href='javascript:alert(1)'>a</a>",
]
NAME_FIELDS = ("suite", "dataset", "target", "defense", "attack", "attack_name")


def _string_fields(data: dict, prefix: tuple = ()) -> list[tuple]:
    found = []
    for key, value in data.items():
        if isinstance(value, str):
            found.append((*prefix, key))
        elif isinstance(value, dict):
            found += _string_fields(value, (*prefix, key))
    return found


def _set(data: dict, path: tuple, value: str) -> dict:
    copy = json.loads(json.dumps(data))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return copy


@pytest.fixture(scope="module")
def board(tiny_run, tmp_path_factory):
    out, _ = tiny_run
    folder = tmp_path_factory.mktemp("hostile-board")
    Leaderboard(folder).publish(out, registered_plan)
    return folder


def test_check_refuses_markup_in_every_string_field(board, tmp_path):
    card_path = sorted((board / "cards").rglob("*.json"))[0]
    data = json.loads(card_path.read_text())
    fields = _string_fields(data)
    assert len(fields) > 10
    refused = 0
    for number, (field, payload) in enumerate((f, p) for f in fields for p in PAYLOADS[:3]):
        copy = tmp_path / f"board{number}"
        shutil.copytree(board, copy)
        target = copy / card_path.relative_to(board)
        target.write_text(json.dumps(_set(data, field, payload)))
        with pytest.raises(BenchmarkError) as raised:
            Leaderboard(copy).check()
        message = str(raised.value)
        assert str(target) in message and "\n" not in message, message
        refused += 1
    assert refused == 3 * len(fields)


class _Executable(HTMLParser):
    """Collects anything a browser would run: scripts, event handlers, script URLs, frames."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("iframe", "object", "embed", "svg", "math", "base", "form"):
            self.found.append(f"<{tag}>")
        if tag == "meta" and not any(k == "charset" or v == "Content-Security-Policy" for k, v in attrs):
            self.found.append("<meta> other than charset and the policy")
        self._in_script = tag == "script"
        for key, value in attrs:
            value = (value or "").strip().lower()
            if key.startswith("on"):
                self.found.append(f"{tag} {key}=")
            if key in ("href", "src", "action", "formaction", "xlink:href"):
                allowed = value.startswith("https:") or ":" not in value.split("/")[0]
                if key == "src" and tag == "img":
                    allowed = value.startswith("data:image/png;base64,")
                if not allowed:
                    self.found.append(f"{tag} {key}={value[:40]}")

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


def test_cards_that_skip_the_check_still_render_no_executable_html(tiny_run, tmp_path):
    """Every name field and string value of every card carries a payload (the validation bypassed
    with ``model_copy``): the site escapes it all, and its one script is the page's own."""
    out, cards = tiny_run
    store = ResultStore(out)
    hostile, scores = [], {}
    for index, card in enumerate(cards):
        payload = PAYLOADS[index % len(PAYLOADS)]
        update = {field: f"{getattr(card, field)}{payload}".replace("/", "|") for field in NAME_FIELDS}
        update["versions"] = {k: v + payload for k, v in card.versions.items()}
        update["device"] = card.device + payload
        changed = card.model_copy(update=update)
        scores[id(changed)] = store.load_scores(card)
        hostile.append(changed)
    content = write_outputs(tmp_path, hostile, lambda card: scores[id(card)], console_table=False)
    page = leaderboard_html(content, tmp_path)
    parser = _Executable()
    parser.feed(page)
    assert parser.found == []
    assert parser.scripts == [str(_asset("sortable.js")[0])]
    (tmp_path / "page.html").write_text(page)
    assert "<script>alert" not in page and "<img src=q" not in page
