"""The first article's data-shape table and decision flow, as data (utils.datashape)."""

import matplotlib

matplotlib.use("Agg")

import pytest

from utils.datashape import (
    DATA_SHAPES,
    FLOW_EDGES,
    FLOW_NODES,
    SMALL_DATA_RULE,
    Recommendation,
    draw_flow,
    recommend,
    shape_table,
)


def test_the_table_has_the_articles_three_rows_in_order():
    assert [r.family for r in DATA_SHAPES] == ["CNN", "RNN / LSTM", "Transformer"]
    assert [r.shape for r in DATA_SHAPES] == ["2D / 3D grid", "Short ordered stream", "Long-context sequence"]
    assert shape_table()[0]["good default"] == "CNN"


@pytest.mark.parametrize("shape, family", [("grid", "CNN"), ("short_stream", "RNN / LSTM"),
                                           ("long_sequence", "Transformer")])
def test_each_shape_leads_to_its_family(shape, family):
    rec = recommend(shape)
    assert rec.family == family and rec.row.key == shape
    assert rec.path == ("data", "size", "type", shape, "prediction")


def test_the_small_data_exit_and_its_threshold():
    assert recommend("grid", labelled_examples=1_000).family == "no deep learning"
    assert recommend("grid", labelled_examples=1_000).row is None
    assert recommend("grid", labelled_examples=3_000).family == "CNN"
    assert recommend("grid", labelled_examples=1_000, few_thousand=500).family == "CNN"
    assert "few thousand" in SMALL_DATA_RULE.text


def test_every_path_follows_edges_of_the_flow():
    edges = {(a, b) for a, b, _ in FLOW_EDGES}
    keys = {n.key for n in FLOW_NODES}
    assert {a for a, _ in edges} | {b for _, b in edges} <= keys
    for shape in ("grid", "short_stream", "long_sequence"):
        for n in (None, 10, 10_000):
            path = recommend(shape, labelled_examples=n).path
            assert all(step in edges for step in zip(path, path[1:]))


@pytest.mark.parametrize("kwargs", [{"shape": "audio"}, {"shape": ["grid"]}, {"shape": "grid", "labelled_examples": -1},
                                    {"shape": "grid", "labelled_examples": 2.5},
                                    {"shape": "grid", "few_thousand": 0}])
def test_bad_input_is_a_value_error(kwargs):
    shape = kwargs.pop("shape")
    with pytest.raises(ValueError):
        recommend(shape, **kwargs)


def test_draw_flow_draws_every_node_and_highlights_the_path():
    import matplotlib.pyplot as plt

    ax = draw_flow(highlight=recommend("grid"))
    texts = [t.get_text() for t in ax.texts]
    assert all(node.label in texts for node in FLOW_NODES)
    assert isinstance(recommend("grid"), Recommendation)
    with pytest.raises(ValueError):
        draw_flow(ax, highlight="grid")
    plt.close("all")
