"""The `codax` command."""

from __future__ import annotations

import argparse
import json
import sys

from codax.errors import CodaxError


def _accel(args: argparse.Namespace) -> int:
    from codax.hw.library import list_accelerators, load_accelerator, load_device
    from codax.ir import dump_yaml

    if args.accel_cmd == "list":
        rows = []
        for name in list_accelerators():
            a = load_accelerator(name)
            pa = a.pe_array
            onchip = sum(lv.total_bytes * (pa.pes if lv.per_pe else 1) for e in a.engines for lv in e.levels)
            rows.append(
                {
                    "name": name,
                    "target": a.target,
                    "device": a.device or "",
                    "pes": pa.pes,
                    "dataflow": pa.dataflow,
                    "on_chip_kb": round(onchip / 1024, 1),
                    "bits": "/".join(map(str, a.weight_bits)),
                }
            )
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(f"{'name':18} {'target':6} {'device':8} {'PEs':>5} {'dataflow':18} {'on-chip KB':>10} bits")
            for r in rows:
                print(
                    f"{r['name']:18} {r['target']:6} {r['device']:8} {r['pes']:>5} {r['dataflow']:18} "
                    f"{r['on_chip_kb']:>10} {r['bits']}"
                )
        return 0
    a = load_accelerator(args.name)
    d = a.to_dict()
    if a.target == "fpga":
        d["device_budget"] = load_device(a.device).__dict__
    print(json.dumps(d, indent=2) if args.json else dump_yaml(d), end="" if not args.json else "\n")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from codax.demo import run_demo

    return run_demo(out_dir=args.output, quick=args.quick)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="codax",
        description="Co-search a network and its accelerator, and compile networks to HLS accelerators.",
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    acc = sub.add_parser("accel", help="the device and baseline-accelerator library")
    acc_sub = acc.add_subparsers(dest="accel_cmd", required=True, metavar="ACTION")
    ls = acc_sub.add_parser("list", help="list library accelerators")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    show = acc_sub.add_parser("show", help="print one accelerator as YAML")
    show.add_argument("name", help="library name (see `codax accel list`) or a YAML file")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    acc.set_defaults(func=_accel)

    demo = sub.add_parser("demo", help="run the main job end to end on the bundled default")
    demo.add_argument("-o", "--output", default="out/demo", help="output directory (default: out/demo)")
    demo.add_argument("--quick", action="store_true", help="smaller budget, for a smoke test")
    demo.set_defaults(func=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CodaxError as e:
        print(f"codax: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("codax: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
