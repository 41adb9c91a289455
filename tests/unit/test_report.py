"""The HTML report, rendered from hand-made report dicts (no services)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from kappa.ops import report

T0 = 1_767_600_000.0  # 2026-01-05 08:00:00 UTC
SVG_NS = "{http://www.w3.org/2000/svg}"
SECTION_IDS = [
    *("services", "throughput", "freshness", "lag"),
    *("tables", "quarantine", "models", "drift", "lineage"),
]
VOID = {"meta", "br", "hr", "img", "input", "link"}


def batches(rate: float, *, lag: bool) -> list[dict[str, Any]]:
    return [
        {
            "t": T0 + 30 * i,
            "input_rows_per_s": rate + 10 * (i % 5),
            "processed_rows_per_s": rate + 12 * (i % 5),
            "batch_ms": 800.0 + 25 * i if i % 7 else None,
            "lag": 1500 - 60 * i if lag else None,
        }
        for i in range(20)
    ]


def sample() -> dict[str, Any]:
    runs = [
        ("a1b2c3d4e5f60718293a4b5c6d7e8f90", 0.8123, 0.4412, "1", False),
        ("b2c3d4e5f60718293a4b5c6d7e8f90a1", 0.8391, 0.4207, "2", False),
        ("c3d4e5f60718293a4b5c6d7e8f90a1b2", 0.8577, 0.3986, "3", True),
    ]
    return {
        "generated_at": T0 + 3600,
        "title": "kappa report",
        "services": [
            {"name": "kafka", "healthy": True, "endpoint": "127.0.0.1:9092", "version": "4.0"},
            {
                "name": "registry",
                "healthy": True,
                "endpoint": "http://127.0.0.1:8081",
                "version": "3.3",
            },
            {
                "name": "mlflow",
                "healthy": False,
                "endpoint": "http://127.0.0.1:5000",
                "version": None,
            },
        ],
        "queries": [
            {"name": "raw_clicks", "job": "raw_clicks", "tables": ["raw.clicks"]}
            | {"series": batches(1200.0, lag=True)},
            {"name": "features", "job": "features", "tables": ["features.user_activity_1m"]}
            | {"series": batches(300.0, lag=False)},
        ],
        "freshness": [
            {
                "table": t,
                "query": q,
                "series": [{"t": T0 + 60 * i, "seconds": 4.0 + i} for i in range(10)],
            }
            for t, q in [
                ("raw.clicks", "raw_clicks"),
                ("raw.orders", None),
                ("features.user_activity_1m", "features"),
            ]
        ],
        "tables": [
            {
                "table": t,
                "rows": rows,
                "snapshot_id": 7_000_000 + rows,
                "freshness_s": 12.5,
                "history": [
                    {
                        "t": T0 + 60 * i,
                        "rows": rows * i // 4,
                        "snapshot_id": i,
                        "operation": "append",
                    }
                    for i in range(1, 5)
                ],
            }
            for t, rows in [
                ("raw.clicks", 1_234_567),
                ("raw.orders", 4_321),
                ("features.user_activity_1m", 98_765),
            ]
        ],
        "quarantine": [
            {"table": "raw.clicks", "reason": "schema mismatch", "count": 1200},
            {"table": "raw.orders", "reason": "null order_id", "count": 34},
        ],
        "drift": [
            {
                "t": T0 + 60 * i,
                "psi": {"events_30m": 0.05 * i, "cart_adds_30m": 0.02},
                "threshold": 0.25,
                "drifted": ["events_30m"] if 0.05 * i > 0.25 else [],
            }
            for i in range(8)
        ],
        "runs": [
            {
                "run_id": run_id,
                "start_time": T0 + 600 * i,
                "metrics": {"roc_auc": auc, "log_loss": loss},
                "model_version": version,
                "champion": champion,
                "dataset_digest": f"sha256:{i}f00dfeedbeef",
            }
            for i, (run_id, auc, loss, version, champion) in enumerate(runs)
        ],
        "lineage": {
            "nodes": [
                {"id": "topic:shop.clicks", "kind": "topic", "label": "shop.clicks"},
                {"id": "topic:orders", "kind": "topic", "label": "shop.public.orders"},
                {"id": "job:raw_clicks", "kind": "job", "label": "raw_clicks"},
                {"id": "job:features", "kind": "job", "label": "features"},
                {"id": "table:raw.clicks", "kind": "table", "label": "raw.clicks"},
                {"id": "table:fua", "kind": "table", "label": "features.user_activity_1m"},
                {"id": "model:pp", "kind": "model", "label": "purchase-propensity v3"},
            ],
            "edges": [
                ["topic:shop.clicks", "job:raw_clicks"],
                ["job:raw_clicks", "table:raw.clicks"],
                ["table:raw.clicks", "job:features"],
                ["topic:orders", "job:features"],
                ["job:features", "table:fua"],
                ["table:fua", "model:pp"],
            ],
        },
    }


def empty() -> dict[str, Any]:
    return {
        "generated_at": T0,
        "title": "kappa report",
        "services": [],
        "queries": [],
        "freshness": [],
        "tables": [],
        "quarantine": [],
        "runs": [],
        "drift": [],
        "lineage": {"nodes": [], "edges": []},
    }


class Sections(HTMLParser):
    """Collects section ids and counts, and checks that every tag is closed in order."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}
        self.order: list[str] = []
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            found = dict(attrs)
            self.order.append(str(found["id"]))
            self.counts[str(found["id"])] = int(str(found["data-count"]))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()


def parse(page: str) -> Sections:
    parser = Sections()
    parser.feed(page)
    parser.close()
    assert parser.stack == [], f"unclosed: {parser.stack}"
    return parser


def section(page: str, sid: str) -> str:
    match = re.search(rf'<section id="{sid}".*?</section>', page, re.S)
    assert match, sid
    return match.group(0)


def svgs(fragment: str) -> list[ET.Element]:
    return [ET.fromstring(s) for s in re.findall(r"<svg\b.*?</svg>", fragment, re.S)]


def test_sections_appear_in_order_with_the_counts_they_render() -> None:
    page = report.render(sample())
    parsed = parse(page)
    assert parsed.order == SECTION_IDS
    # lag: only raw_clicks has offsets; features reports None throughout.
    assert parsed.counts == {
        "services": 3,
        "throughput": 2,
        "freshness": 3,
        "lag": 1,
        "tables": 3,
        "quarantine": 2,
        "models": 3,
        "drift": 8,
        "lineage": 7,
    }
    assert "no data yet" not in page


def test_every_svg_is_well_formed_xml_with_finite_coordinates() -> None:
    page = report.render(sample())
    assert page.count("<svg") == page.count("</svg>") > 0
    # throughput: rates + batch duration per query (2 x 2); freshness 3; lag 1; tables 3;
    # roc_auc 1; drift 1; lineage 1.
    assert len(svgs(page)) == 14
    lowered = page.lower()
    assert "nan" not in lowered and "inf" not in re.sub(r"info", "", lowered)


def test_lineage_labels_are_svg_text_and_every_edge_has_an_arrow() -> None:
    data = sample()
    (graph,) = svgs(section(report.render(data), "lineage"))
    texts = {t.text for t in graph.iter(f"{SVG_NS}text")}
    assert {n["label"] for n in data["lineage"]["nodes"]} <= texts
    assert {"topics", "jobs", "tables", "models"} <= texts
    arrows = [p for p in graph.iter(f"{SVG_NS}path") if p.get("marker-end")]
    assert len(arrows) == len(data["lineage"]["edges"])


def test_lineage_edges_stay_in_the_gaps_between_boxes() -> None:
    # table:raw.clicks -> job:features points back a column; it must not cross the boxes.
    (graph,) = svgs(section(report.render(sample()), "lineage"))
    boxes = [
        (float(r.get("x", "0")), float(r.get("width", "0"))) for r in graph.iter(f"{SVG_NS}rect")
    ]
    for path in graph.iter(f"{SVG_NS}path"):
        if not path.get("marker-end"):
            continue
        xs = [float(n) for n in re.findall(r"[-\d.]+(?=,)", path.get("d", ""))]
        assert not any(x < max(xs) and x + w > min(xs) for x, w in boxes), path.get("d")


def test_lineage_columns_run_left_to_right_and_fit_their_labels() -> None:
    (graph,) = svgs(section(report.render(sample()), "lineage"))
    rects = list(graph.iter(f"{SVG_NS}rect"))
    labels = [t for t in graph.iter(f"{SVG_NS}text") if t.get("font-weight") != "600"]
    left = {t.text: float(r.get("x", "0")) for r, t in zip(rects, labels, strict=True)}
    assert left["shop.clicks"] < left["raw_clicks"] < left["raw.clicks"]
    assert left["raw.clicks"] < left["purchase-propensity v3"]
    widest = max(float(r.get("width", "0")) for r in rects)
    assert widest >= len("features.user_activity_1m") * 7


def test_models_table_shows_every_metric_version_and_the_champion() -> None:
    models = section(report.render(sample()), "models")
    for value in ("0.8123", "0.8391", "0.8577", "0.4412", "0.4207", "0.3986"):
        assert value in models
    assert models.count("★ champion") == 1
    assert "<th>roc_auc</th>" in models and "<th>log_loss</th>" in models
    assert "roc_auc per run" in models


def test_quarantine_totals_with_thousands_separators() -> None:
    quarantine = section(report.render(sample()), "quarantine")
    assert "1,200" in quarantine and "1,234" in quarantine


def test_time_axis_is_labelled_in_utc_minutes() -> None:
    throughput = section(report.render(sample()), "throughput")
    assert "08:00" in throughput and "time (UTC)" in throughput
    assert "2026-01-05T09:00:00Z" in report.render(sample())


def test_an_empty_report_says_no_data_yet_in_every_section() -> None:
    page = report.render(empty())
    parsed = parse(page)
    assert parsed.order == SECTION_IDS
    assert set(parsed.counts.values()) == {0}
    for sid in SECTION_IDS:
        assert '<p class="empty">no data yet</p>' in section(page, sid), sid
    assert "0 records quarantined" in section(page, "quarantine")
    assert "<svg" not in page


def test_user_strings_are_escaped() -> None:
    data = sample()
    data["title"] = "<b>kappa</b>"
    data["tables"][0]["table"] = "<x>&"
    data["quarantine"][0]["table"] = "<x>&"
    data["freshness"][0]["table"] = "<x>&"
    data["lineage"]["nodes"][0]["label"] = "<x>&"
    page = report.render(data)
    assert "<x>" not in page and "<b>kappa" not in page
    assert page.count("&lt;x&gt;&amp;") >= 5
    parse(page)
    svgs(page)  # still well-formed XML


@pytest.mark.parametrize(
    "points",
    [[(T0, 5.0)], [(T0 + i, 7.0) for i in range(10)], [(T0, 0.0), (T0 + 60, 0.0)]],
    ids=["one point", "constant", "all zero"],
)
def test_degenerate_series_draw_finite_coordinates(points: list[tuple[float, float]]) -> None:
    svg = report.line_chart({"s": points}, title="t", y_label="y")
    root = ET.fromstring(svg)
    numbers = [
        float(n)
        for el in root.iter()
        for key in ("x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "points")
        for n in re.split(r"[ ,]+", el.get(key, "").strip())
        if n
    ]
    assert numbers and all(abs(n) < 10_000 for n in numbers)
    assert "nan" not in svg and "inf" not in svg


def test_a_query_with_one_batch_renders() -> None:
    data = sample()
    data["queries"][0]["series"] = data["queries"][0]["series"][:1]
    page = report.render(data)
    assert parse(page).counts["throughput"] == 2
    assert "nan" not in page


def test_line_chart_without_points_returns_nothing() -> None:
    assert report.line_chart({}, title="t", y_label="y") == ""
    assert report.line_chart({"a": [], "b": [(T0, float("nan"))]}, title="t", y_label="y") == ""


@pytest.mark.parametrize(
    ("lo", "hi"),
    [(0, 1), (0, 101), (3, 97), (0.81, 0.86), (0, 1_234_567), (-5, 5), (7, 7), (0, 0)],
)
def test_y_ticks_are_four_or_five_round_numbers_covering_the_range(lo: float, hi: float) -> None:
    ticks = report.nice_ticks(lo, hi)
    assert 4 <= len(ticks) <= 5
    assert ticks[0] <= lo and ticks[-1] >= hi
    step = ticks[1] - ticks[0]
    mantissa = step / 10 ** int(f"{step:e}".split("e")[1])
    assert round(mantissa, 6) in {1.0, 2.0, 2.5, 5.0}


def test_write_creates_folders_and_returns_the_path(tmp_path: Path) -> None:
    target = tmp_path / "out" / "nested" / "report.html"
    assert report.write(sample(), target) == target
    assert target.read_text(encoding="utf-8") == report.render(sample())
