"""IR objects: construction, YAML round trips, and the errors bad input gets."""

import pytest

from codax.errors import CapacityError, ConfigError, MappingError, UnknownNameError
from codax.hw import load_accelerator, load_device
from codax.hw.library import list_accelerators
from codax.ir import (
    Accelerator,
    Graph,
    HostOp,
    Mapping,
    conv2d,
    dense,
    load_accelerator_yaml,
    load_mappings,
    save_mappings,
    validate_mapping,
)
from codax.ir.layer import Layer


def test_conv2d_shapes_and_macs():
    layer = conv2d("c", c_in=64, c_out=128, hw=(56, 56), kernel=(3, 3), stride=(2, 2), pads=(1, 1, 1, 1))
    assert (layer.K, layer.C, layer.P, layer.Q, layer.R, layer.S) == (128, 64, 28, 28, 3, 3)
    assert layer.macs == 128 * 64 * 28 * 28 * 9
    dw = conv2d("dw", c_in=32, c_out=32, hw=(8, 8), groups=32, pads=(1, 1, 1, 1))
    assert dw.kind == "depthwise" and (dw.G, dw.K, dw.C) == (32, 1, 1)
    fc = dense("fc", c_in=512, c_out=10)
    assert fc.kind == "dense" and fc.macs == 5120
    assert Layer.from_dict(layer.to_dict()) == layer


def test_layer_rejects_bad_fields():
    with pytest.raises(ConfigError, match="dim K must be a positive integer"):
        Layer("x", K=-3)
    with pytest.raises(ConfigError, match="unknown field 'KK'"):
        Layer.from_dict({"name": "x", "KK": 3})
    with pytest.raises(ConfigError, match="smaller than the 7x7 window"):
        Layer("x", P=5, Q=5, R=3, S=3, in_hw=(4, 4))
    with pytest.raises(ConfigError, match="not divisible by groups"):
        conv2d("g", c_in=6, c_out=8, hw=(4, 4), groups=4)


@pytest.mark.parametrize("name", list_accelerators())
def test_library_accelerators_load_and_round_trip(name):
    acc = load_accelerator(name)
    assert acc.name == name
    again = load_accelerator_yaml(acc.to_dict())
    assert again == acc


def test_library_knows_the_baselines_and_devices():
    assert {"eyeriss-like", "shidiannao-like", "nvdla-small", "tpu-like"} <= set(list_accelerators())
    assert load_device("zc706").dsp == 900 and load_device("zcu102").bram18 == 1824
    assert load_device("ultra96").dsp == 360 and load_device("u250").dsp == 12288
    nvdla = load_accelerator("nvdla-small")
    assert nvdla.pe_array.pes == 64 and nvdla.levels[0].size == 128 * 1024


def test_unknown_names_say_what_exists():
    with pytest.raises(UnknownNameError, match="Did you mean 'eyeriss-like'"):
        load_accelerator("eyeris-like")
    with pytest.raises(UnknownNameError, match="Known: .*zc706"):
        load_device("zc7066")


def test_malformed_yaml(tmp_path):
    p = tmp_path / "a.yaml"
    p.write_text("name: x\ntarget: asic\npe_array: {rows: 2, cols: [\n")
    with pytest.raises(ConfigError, match=r"malformed YAML at line \d+"):
        load_accelerator(p)
    with pytest.raises(ConfigError, match="no such accelerator file"):
        load_accelerator(tmp_path / "missing.yaml")


def _accel(**level):
    base = {
        "name": "bad",
        "target": "asic",
        "pe_array": {"rows": 2, "cols": 2, "row_dims": ["K"], "col_dims": ["C"]},
    }
    lv = {"name": "BUF", "operands": ["W", "I", "O"], "size": 1024}
    lv.update(level)
    return Accelerator.from_dict({**base, "levels": [lv]})


def test_accelerator_rejects_bad_fields():
    with pytest.raises(ConfigError, match="BUF.size must be a positive integer, got -5"):
        _accel(size=-5)
    with pytest.raises(ConfigError, match="unknown operand 'X'"):
        _accel(operands=["W", "X"])
    with pytest.raises(ConfigError, match="unknown dim 'Z'"):
        Accelerator.from_dict(
            {
                "name": "a",
                "target": "asic",
                "levels": [{"name": "B", "operands": ["W"], "size": 1}],
                "pe_array": {"rows": 1, "cols": 1, "row_dims": ["Z"], "col_dims": ["C"]},
            }
        )
    with pytest.raises(ConfigError, match="no on-chip level holds operand"):
        _accel(operands=["W", "I"])
    with pytest.raises(ConfigError, match="fpga target needs `device`"):
        Accelerator.from_dict(
            {
                "name": "f",
                "target": "fpga",
                "levels": [{"name": "B", "operands": ["W", "I", "O"], "size": 8}],
                "pe_array": {"rows": 1, "cols": 1, "row_dims": ["K"], "col_dims": ["C"]},
            }
        )
    with pytest.raises(ConfigError, match="unknown field 'szie'"):
        _accel(szie=4)
    with pytest.raises(ConfigError, match="dram.stream_weights must be true or false, got 'yes'"):
        Accelerator.from_dict({**_accel().to_dict(), "dram": {"bandwidth": 8, "stream_weights": "yes"}})


def test_stream_weights_round_trips():
    d = _accel().to_dict()
    assert "stream_weights" not in d["dram"]  # off by default, and not written when off
    d["dram"]["stream_weights"] = True
    a = Accelerator.from_dict(d)
    assert a.dram.stream_weights is True
    assert Accelerator.from_dict(a.to_dict()) == a


def test_mapping_validation_messages():
    acc = _accel(size=4096)
    layer = dense("fc", c_in=8, c_out=8)
    with pytest.raises(MappingError, match="unknown dim 'X'"):
        validate_mapping(layer, acc, Mapping("fc", tiles={"DRAM": {"X": 2}}))
    with pytest.raises(
        MappingError, match="factors of dim K multiply to 4 but K = 8; raise tiles.DRAM.K to 4"
    ):
        validate_mapping(
            layer, acc, Mapping("fc", spatial={"rows": ("K", 2)}, tiles={"DRAM": {"K": 2, "C": 8}})
        )
    with pytest.raises(MappingError, match="unrolls only \\['K'\\] along rows"):
        validate_mapping(
            layer, acc, Mapping("fc", spatial={"rows": ("C", 2)}, tiles={"DRAM": {"K": 8, "C": 4}})
        )
    with pytest.raises(MappingError, match="unknown level 'L2'"):
        validate_mapping(layer, acc, Mapping("fc", tiles={"L2": {"K": 8}}))


def test_capacity_error_names_tile_and_buffer():
    acc = Accelerator.from_dict(
        {
            "name": "a",
            "target": "asic",
            "pe_array": {"rows": 1, "cols": 1, "row_dims": ["K"], "col_dims": ["C"]},
            "levels": [
                {"name": "BUF", "operands": ["W", "I", "O"], "sizes": {"W": 1024, "I": 65536, "O": 8192}}
            ],
        }
    )
    layer = conv2d("conv3", c_in=64, c_out=8, hw=(32, 32), pads=(1, 1, 1, 1))
    m = Mapping("conv3", tiles={"BUF": {"C": 64, "P": 32, "Q": 32, "R": 3, "S": 3}, "DRAM": {"K": 8}})
    with pytest.raises(
        CapacityError, match=r"input tile 34x34x64 int8 = 73,984 B exceeds input buffer BUF \(65,536 B\)"
    ):
        validate_mapping(layer, acc, m)


def test_mappings_yaml_round_trip(tmp_path):
    m = Mapping(
        "fc",
        spatial={"rows": ("K", 2)},
        tiles={"DRAM": {"K": 4, "C": 8}},
        order={"DRAM": ["C", "K"]},
        double_buffer={"BUF": True},
    )
    p = tmp_path / "m.yaml"
    save_mappings({"fc": m}, p)
    back = load_mappings(p)
    assert back["fc"].to_dict() == m.to_dict()
    p.write_text("mappings: {fc: 1}\n")
    with pytest.raises(ConfigError, match="list under `mappings:`"):
        load_mappings(p)


def test_graph_topological_order_and_cycles():
    g = Graph("n")
    g.add(dense("b", c_in=4, c_out=4, inputs=("t1",), outputs=("t2",)))
    g.add(HostOp("a", "Relu", inputs=("x",), outputs=("t1",)))
    assert g.topological_order() == ["a", "b"]
    with pytest.raises(ConfigError, match="duplicate node name"):
        g.add(HostOp("a", "Relu"))
    g.add(HostOp("c", "Add", inputs=("t2",), outputs=("x",)))
    with pytest.raises(ConfigError, match="cycle"):
        g.topological_order()
