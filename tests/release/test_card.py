"""Model cards from a real registry, hand-written release events and evaluation records."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

from mlops.errors import CorruptRecordError
from mlops.registry.records import ModelVersion
from mlops.release.card import ModelCard, build_card
from mlops.release.card_markdown import MAX_MARKDOWN, render_markdown
from mlops.store.protocol import ArtifactStore
from tests.gitrepo import Repo, mlops
from tests.release.conftest import evaluation, event, gate, register, save_evaluation

# GitHub's mention and issue-reference patterns, as found in the *rendered* text.
MENTION = re.compile(r"(?<![\w`])@[A-Za-z0-9][A-Za-z0-9-]*")
ISSUE = re.compile(r"(?<![\w&])#\d+")


def html_of(markdown: str) -> str:
    """GitHub-flavoured rendering (CommonMark with tables and strikethrough), raw HTML allowed as
    GitHub allows its harmless subset: anything user text could inject shows up here."""
    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render(markdown)


def text_of(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def promoted_history(store: ArtifactStore) -> None:
    """v1 enters dev and staging through its gates, is approved for prod and promoted; v2 replaces it
    in dev and is rolled back."""
    g = event(store, "gates_evaluated", 1, "dev", "2026-01-03T00:00:00Z", passed=True,
              gates=[gate("order", "first stage"), gate("metric", "accuracy 0.97 >= 0.90")])
    event(store, "promoted", 1, "dev", "2026-01-03T00:00:01Z", why="auto", commit="2" * 40,
          from_version=None, gates_event=g.seq)
    g = event(store, "gates_evaluated", 1, "staging", "2026-01-04T00:00:00Z", passed=True,
              gates=[gate("latency", "p95 1.2 ms <= 20 ms")])
    event(store, "promoted", 1, "staging", "2026-01-04T00:00:01Z", by="ada", why="ready for staging",
          from_version=None, gates_event=g.seq)
    event(store, "gates_evaluated", 1, "prod", "2026-01-05T00:00:00Z", passed=False,
          gates=[gate("approval", "0 of 1 approvals", "awaiting")])
    event(store, "approved", 1, "prod", "2026-01-05T01:00:00Z", by="bob", why="numbers look right",
          source="github-review", pull_request=7)
    g = event(store, "gates_evaluated", 1, "prod", "2026-01-05T02:00:00Z", passed=True,
              gates=[gate("approval", "1 of 1 approvals (bob)")])
    event(store, "promoted", 1, "prod", "2026-01-05T02:00:01Z", by="ci", why="Merge pull request 7",
          from_version=None, gates_event=g.seq)
    event(store, "promoted", 2, "dev", "2026-01-06T00:00:00Z", from_version=1)
    event(store, "rolled_back", 1, "dev", "2026-01-06T01:00:00Z", by="ops", why="v2 misbehaves",
          from_version=2, to_version=1)


def test_card_gathers_registry_evaluation_and_release_events(store: ArtifactStore, wine_onnx: Path) -> None:
    register(store, wine_onnx)
    save_evaluation(store, evaluation())
    promoted_history(store)
    card = build_card(store, "wine", 1)

    assert (card.model, card.version, card.description, card.flavor) == ("wine", 1, "Classifies wines", "onnx")
    assert card.files[0]["path"] == "model.onnx" and card.files[0]["size"] == wine_onnx.stat().st_size
    assert card.data == {"inputs": {"prepare.train": "a" * 64},
                         "evaluation": {"data": "prepare.test", "digest": "d" * 64, "rows": 36}}
    assert card.metrics == {"accuracy": 0.95} and card.evaluation is not None
    assert card.evaluation["confusion"]["matrix"][1] == [1, 13, 0]
    assert card.signature is not None and card.signature["inputs"][0]["shape"] == ["batch", 13]
    assert card.lineage["git_message"] == "Train wine" and card.lineage["pipeline_run"] == "run-1"
    # It holds staging and prod; in dev it was replaced by v2, then got dev back by a rollback.
    assert [s["stage"] for s in card.stages] == ["dev", "staging", "prod"]
    assert {s["stage"]: s["since"] for s in card.stages}["dev"] == "2026-01-06T01:00:00Z"
    dev, staging, prod, back = card.entered
    assert [g["summary"] for g in dev["gates"]["results"]] == ["first stage", "accuracy 0.97 >= 0.90"]
    assert dev["left"]["how"] == "replaced" and dev["left"]["version"] == 2
    assert staging["by"] == "ada" and staging["approvals"] == [] and staging["left"] is None
    # prod rests on the passing evaluation it names, not the earlier "awaiting" one, and bob approved it.
    assert prod["gates"]["passed"] is True and prod["gates"]["results"][0]["summary"] == "1 of 1 approvals (bob)"
    assert [(a["by"], a["source"], a["pull_request"]) for a in prod["approvals"]] == [("bob", "github-review", 7)]
    assert (back["how"], back["from_version"], back["gates"]) == ("rolled_back", 2, None)

    md = render_markdown(card)
    html = html_of(md)
    assert "| proline | 0.2000 ± 0.0200 | " + "█" * 20 + " |" in md
    assert "| alcohol | 0.1000 ± 0.0100 | " + "█" * 10 + " |" in md
    assert md.index("proline") < md.index("alcohol") < md.index("| ash")
    # The confusion matrix is a real table: a header with the labels and one row per true class.
    table = re.search(r"<table>\s*<thead>\s*<tr>\s*<th>true \\ predicted</th>.*?</table>", html, re.S)
    assert table is not None
    assert re.findall(r"<td[^>]*>(\d+)</td>", table.group(0)) == ["12", "0", "0", "1", "13", "0", "0", "0", "10"]
    assert "| accuracy | 0.95 | 0.9722 |" in md and "| f1\\_macro | – | 0.9701 |" in md
    assert "| input | `float_input` | `tensor(float)` | `[batch, 13]` |" in md
    assert "| `latency` | ✅ passed | p95 1.2 ms &lt;= 20 ms |" in md
    assert "Approved by bob at 2026-01-05T01:00:00Z (github-review, PR #7): numbers look right." in md
    assert "rolled back to this version at 2026-01-06T01:00:00Z by ops (from version 2): v2 misbehaves" in md
    assert "Later replaced at 2026-01-06T00:00:00Z by ci (to version 2)" in md


def test_a_version_without_evaluation_or_stages_gets_a_card_that_says_so(store: ArtifactStore,
                                                                          wine_onnx: Path) -> None:
    register(store, wine_onnx, description="")
    card = build_card(store, "wine")
    assert card.evaluation is None and card.data["evaluation"] is None and card.stages == card.entered == []
    md = render_markdown(card)
    assert "Not evaluated on held-out data yet" in md and "has not entered any stage yet" in md
    assert "No description was registered" in md and "holds no stage" in md


def test_the_newest_evaluation_is_shown_and_a_damaged_one_is_named(store: ArtifactStore, wine_onnx: Path) -> None:
    register(store, wine_onnx)
    save_evaluation(store, evaluation(at="2026-01-02T00:00:00Z"))
    save_evaluation(store, evaluation(data_digest="f" * 64, rows=40, at="2026-01-09T00:00:00Z"))
    assert build_card(store, "wine", 1).data["evaluation"]["rows"] == 40
    bad = save_evaluation(store, evaluation(data_digest="0" * 64, confusion={"labels": ["a"], "matrix": [[1, 2]]}))
    with pytest.raises(CorruptRecordError, match=re.escape(bad) + ".*confusion matrix"):
        build_card(store, "wine", 1)


def test_the_json_card_round_trips(store: ArtifactStore, wine_onnx: Path) -> None:
    register(store, wine_onnx)
    save_evaluation(store, evaluation())
    promoted_history(store)
    card = build_card(store, "wine", 1)
    again = ModelCard.from_dict(json.loads(card.to_json()))
    assert again == card and render_markdown(again) == render_markdown(card)
    assert json.loads(card.to_json())["kind"] == "ModelCard"
    with pytest.raises(ValueError, match="lacks entered"):
        ModelCard.from_dict({k: v for k, v in card.to_dict().items() if k != "entered"})


HOSTILE = ("@octocat <img src=x onerror=alert(1)> [click](https://evil.example) ![i](https://evil.example/i.png) "
           "| cell | ```\nclose the fence\n``` # Heading\n- list <script>alert(1)</script> **bold** $x^2$ #12 "
           "www.evil.example \x1b[31mred\u202eevil <!-- comment --> <details> &amp; ~~gone~~")


def test_hostile_text_cannot_inject_anything_into_the_markdown(store: ArtifactStore, wine_onnx: Path) -> None:
    register(store, wine_onnx, message=HOSTILE, description=HOSTILE, metrics={HOSTILE: 1.0, "accuracy": 0.9},
             tags={HOSTILE: HOSTILE})
    save_evaluation(store, evaluation(
        data=HOSTILE, label=HOSTILE, importance_metric=HOSTILE, by=HOSTILE, metrics={HOSTILE: 0.5},
        confusion={"labels": [HOSTILE, "b"], "matrix": [[1, 0], [0, 1]]},
        importance=[{"feature": HOSTILE, "mean": 0.3, "std": 0.1}, {"feature": "ok", "mean": 0.1, "std": 0.0}]))
    g = event(store, "gates_evaluated", 1, "dev", "2026-01-03T00:00:00Z", by=HOSTILE, passed=True,
              gates=[{"kind": HOSTILE, "status": HOSTILE, "summary": HOSTILE}])
    event(store, "approved", 1, "dev", "2026-01-03T00:00:01Z", by=HOSTILE, why=HOSTILE, source=HOSTILE,
          pull_request=HOSTILE)
    event(store, "promoted", 1, "dev", "2026-01-03T00:00:02Z", by=HOSTILE, why=HOSTILE, commit=HOSTILE,
          gates_event=g.seq, from_version=HOSTILE)
    md = render_markdown(build_card(store, "wine", 1))
    html = html_of(md)
    # No element but the card's own: headings, paragraphs, tables, emphasis of its labels, code spans.
    tags = set(re.findall(r"<(/?[a-z0-9]+)", html))
    assert tags <= {"h3", "/h3", "h4", "/h4", "p", "/p", "blockquote", "/blockquote", "strong", "/strong",
                    "em", "/em", "code", "/code", "table", "/table", "thead", "/thead", "tbody", "/tbody",
                    "tr", "/tr", "th", "/th", "td", "/td", "ul", "/ul", "li", "/li"}, tags
    assert "<!--" not in html.replace("<!-- mlops-model-card -->", "") and "\x1b" not in md and "\u202e" not in md
    # The hostile text stayed inside its own cells: every table row has as many cells as its header.
    for table in re.findall(r"<table>.*?</table>", html, re.S):
        widths = {len(re.findall(r"<t[hd][ >]", row)) for row in re.findall(r"<tr>.*?</tr>", table, re.S)}
        assert len(widths) == 1, table
    text = text_of(html)
    assert not MENTION.search(text) and not ISSUE.search(text.replace("PR #", "")), MENTION.search(text)
    assert "https://evil" not in text and "www.evil" not in text and "$x" not in md.replace("\\$x", "")
    # ...and it is still readable, as the characters it was.
    assert "[click](https:/\u200b/evil.example)" in text and "<script>alert(1)</script>" in text


def test_the_markdown_card_stays_under_githubs_body_limit(store: ArtifactStore, wine_onnx: Path) -> None:
    long = "x" * 100_000
    register(store, wine_onnx, message=long, description=long,
             metrics={f"metric_{i}_{'<' * 200}": i / 7 for i in range(500)})
    save_evaluation(store, evaluation(
        importance=[{"feature": f"f{i}{'&' * 300}", "mean": 1 / (i + 1), "std": 0.0} for i in range(2000)],
        confusion={"labels": [str(i) for i in range(100)], "matrix": [[0] * 100 for _ in range(100)]}))
    for i in range(200):
        event(store, "promoted", 1, "dev", f"2026-01-03T00:{i // 60:02d}:{i % 60:02d}Z", why="@" * 5000,
              by="<" * 500)
    card = build_card(store, "wine", 1)
    md = render_markdown(card)
    assert len(md.encode("utf-16-le")) // 2 <= MAX_MARKDOWN
    assert re.search(r"\*\d+ less important features are in the JSON card", md)
    assert "The confusion matrix has 100 classes, too many to show here" in md
    assert re.search(r"The latest \d+ are shown; \d+ earlier stage entries are in the JSON card", md)
    # Drawn again with fewer rows per section, the card fits whole: it was not cut short.
    assert "#### Stages entered" in md and "The card was cut here" not in md
    # A smaller budget (a card beside other text in a body) shrinks every section further...
    small = render_markdown(card, max_chars=5000)
    assert len(small) <= 5000 and "#### Stages entered" in small and "The card was cut here" not in small
    # ...and only what cannot fit even then is cut, at a line, with a note.
    tiny = render_markdown(card, max_chars=1200)
    assert len(tiny) <= 1200 and tiny.endswith("`mlops models card --format json` has it all.*\n")
    assert len(card.evaluation["importance"]) == 2000  # the JSON card keeps everything


def test_cli_card_markdown_and_json(repo: Repo, store: ArtifactStore, wine_onnx: Path) -> None:
    register(store, wine_onnx)
    save_evaluation(store, evaluation())
    promoted_history(store)
    md = mlops(repo, "models", "card", "wine@1").stdout
    assert md.startswith("<!-- mlops-model-card -->\n### Model card: `wine` version 1\n")
    assert md == render_markdown(build_card(store, "wine", 1))
    data = json.loads(mlops(repo, "models", "card", "wine@1", "--format", "json").stdout)
    assert ModelCard.from_dict(data) == build_card(store, "wine", 1)
    missing = mlops(repo, "models", "card", "wine@9", check=False)
    assert missing.returncode == 5 and "has no version 9" in missing.stderr and "Traceback" not in missing.stderr
    bad = mlops(repo, "models", "card", "wine@1", "--format", "html", check=False)
    assert bad.returncode == 64


def test_a_missing_evaluation_is_computed_through_the_hook_and_a_stored_one_is_reused(
        store: ArtifactStore, wine_onnx: Path) -> None:
    register(store, wine_onnx)
    asked: list[str] = []

    def evaluate(mv: ModelVersion) -> dict[str, Any]:
        asked.append(mv.ref)
        return evaluation(rows=99)

    assert build_card(store, "wine", 1, evaluate).data["evaluation"]["rows"] == 99 and asked == ["wine@1"]
    save_evaluation(store, evaluation())
    assert build_card(store, "wine", 1, evaluate).data["evaluation"]["rows"] == 36 and asked == ["wine@1"]
