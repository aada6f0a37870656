"""Small accelerators for hand-checked cost-model tests."""

from codax.ir import Accelerator


def one_level(
    rows: int, cols: int, row_dims, col_dims, dram_bw: float = 4.0, float_ok: bool = False
) -> Accelerator:
    """DRAM -> one shared buffer feeding the PE array directly (no per-PE registers); `float_ok`
    gives every PE an fp32 MAC too."""
    return Accelerator.from_dict(
        {
            "name": "toy1",
            "target": "asic",
            "precision": {"weight": 8, "act": 8, "acc": 32, "float": float_ok},
            "dram": {"bandwidth": dram_bw, "latency": 0},
            "pe_array": {
                "rows": rows,
                "cols": cols,
                "row_dims": row_dims,
                "col_dims": col_dims,
                "pipeline_depth": 0,
            },
            "levels": [{"name": "BUF", "operands": ["W", "I", "O"], "size": 1 << 20, "bandwidth": 64}],
        }
    )


def two_level(dram_bw: float = 4.0) -> Accelerator:
    """DRAM -> shared GLB -> per-PE weight register, 2x2 array of K x C."""
    return Accelerator.from_dict(
        {
            "name": "toy2",
            "target": "asic",
            "precision": {"weight": 8, "act": 8, "acc": 32},
            "dram": {"bandwidth": dram_bw, "latency": 0},
            "pe_array": {"rows": 2, "cols": 2, "row_dims": ["K"], "col_dims": ["C"], "pipeline_depth": 0},
            "levels": [
                {"name": "GLB", "operands": ["W", "I", "O"], "size": 4096, "bandwidth": 16},
                {"name": "RF", "operands": ["W"], "sizes": {"W": 1}, "per_pe": True, "bandwidth": 1},
            ],
        }
    )


def split_buffers(dram_bw: float = 4.0) -> Accelerator:
    """DRAM -> an input/weight buffer that outputs bypass -> an accumulator buffer (NVDLA-like)."""
    return Accelerator.from_dict(
        {
            "name": "toy_split",
            "target": "asic",
            "precision": {"weight": 8, "act": 8, "acc": 32},
            "dram": {"bandwidth": dram_bw, "latency": 0},
            "pe_array": {"rows": 2, "cols": 2, "row_dims": ["K"], "col_dims": ["C"], "pipeline_depth": 0},
            "levels": [
                {"name": "CBUF", "operands": ["W", "I"], "size": 4096, "bandwidth": 16},
                {"name": "ACCU", "operands": ["O"], "size": 4096, "bandwidth": 16},
            ],
        }
    )


def psum_register(reg_bw: float, glb_bw: float = 64.0) -> Accelerator:
    """DRAM -> shared GLB (W, I, O) -> a one-word per-PE output register, 2x1 array of K."""
    return Accelerator.from_dict(
        {
            "name": "toy_psum",
            "target": "asic",
            "precision": {"weight": 8, "act": 8, "acc": 32},
            "dram": {"bandwidth": 4.0, "latency": 0},
            "pe_array": {"rows": 2, "cols": 1, "row_dims": ["K"], "col_dims": ["C"], "pipeline_depth": 0},
            "levels": [
                {"name": "GLB", "operands": ["W", "I", "O"], "size": 4096, "bandwidth": glb_bw},
                {"name": "ACC", "operands": ["O"], "sizes": {"O": 4}, "per_pe": True, "bandwidth": reg_bw},
            ],
        }
    )
