"""mappings.yaml carries each layer's widths: written, read back, validated, checked at compile."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codax.errors import ConfigError, MappingError
from codax.ir import Mapping, Precision, load_mappings, save_mappings
from codax.ir.layer import conv2d
from codax.passes.map_layers import check_widths

BITS = st.sampled_from([2, 4, 6, 8, 16])


@given(w=BITS, a=BITS, o=BITS)
def test_precision_round_trips_through_yaml(tmp_path_factory, w, a, o):
    m = Mapping("b0.dw", tiles={"DRAM": {"K": 2}}, precision=Precision(weight=w, act=a, acc=32, out=o))
    path = tmp_path_factory.mktemp("maps") / "mappings.yaml"
    save_mappings({"b0.dw": m}, path)
    assert load_mappings(path)["b0.dw"] == m


def test_mapping_without_precision_stays_without():
    m = Mapping("fc")
    assert "precision" not in m.to_dict() and Mapping.from_dict(m.to_dict()) == m


@pytest.mark.parametrize(
    "precision, message",
    [
        ({"weight": 4, "act": 6, "bits": 8}, "unknown field 'bits'"),
        ({"weight": 4}, "missing required field"),
        ({"weight": 0, "act": 8}, "precision.weight must be an integer number of bits"),
    ],
)
def test_bad_precision_names_the_layer_and_field(precision, message):
    with pytest.raises(ConfigError, match=message) as e:
        Mapping.from_dict({"layer": "b1.project", "precision": precision})
    assert "b1.project" in str(e.value)


def test_compile_rejects_a_mapping_made_for_other_widths():
    layer = conv2d("b0.dw", c_in=8, c_out=8, hw=(8, 8), precision=Precision(4, 6, 32, 6))
    check_widths(layer, Mapping("b0.dw", precision=Precision(4, 6, 32, 6)))
    check_widths(layer, Mapping("b0.dw"))  # no widths stated: nothing to check
    with pytest.raises(
        MappingError, match=r"b0.dw has precision.act = 8 bits but the model quantizes it to 6"
    ):
        check_widths(layer, Mapping("b0.dw", precision=Precision(4, 8, 32, 6)))
