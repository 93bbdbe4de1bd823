#!/usr/bin/env python3
"""Writes a C program that prints Rust const assertions of the size and every
field offset of the structs softverbs's libibverbs touches, as the C compiler
lays them out. Field names come from the bindings (sys.rs)."""
import re
import sys

STRUCTS = [
    "ibv_device", "_ibv_device_ops", "ibv_context", "ibv_context_ops", "verbs_context",
    "ibv_device_attr", "ibv_device_attr_ex", "ibv_port_attr", "ibv_pd", "ibv_mr",
    "ibv_mw", "ibv_cq", "ibv_comp_channel", "ibv_qp", "ibv_qp_cap", "ibv_qp_attr",
    "ibv_qp_init_attr", "ibv_wc", "ibv_send_wr", "ibv_recv_wr", "ibv_sge",
    "ibv_ah", "ibv_ah_attr", "ibv_global_route", "ibv_gid", "ibv_gid_entry",
    "ibv_srq", "ibv_srq_attr", "ibv_srq_init_attr", "ibv_async_event",
    "ibv_qp_ex", "ibv_cq_ex", "ibv_qp_init_attr_ex", "ibv_cq_init_attr_ex",
    "ibv_xrcd", "ibv_mw_bind", "ibv_mw_bind_info", "ibv_wq", "ibv_dm",
]

src = open(sys.argv[1]).read()
bodies = {}
for m in re.finditer(r"pub (struct|union) (\w+) \{(.*?)\n\}", src, re.S):
    fields = re.findall(r"^\s*pub (\w+): ([^\n]*?),?$", m.group(3), re.M)
    bodies[m.group(2)] = (m.group(1), fields)

def first_field(ty):
    return bodies[ty][1][0][0]

print("#include <stdio.h>\n#include <stddef.h>\n#include <infiniband/verbs.h>\nint main(void) {")
for s in STRUCTS:
    kind, fields = bodies[s]
    ckind = "union" if kind == "union" else "struct"
    print(f'  printf("const _: () = assert!(size_of::<{s}>() == %zu);\\n", sizeof({ckind} {s}));')
    if kind == "union":
        continue
    for name, ty in fields:
        if name.startswith("_bitfield"):
            continue
        cname = name[:-1] if name.endswith("_") and not name.startswith("_") else name
        if name.startswith("__bindgen_anon"):
            inner = ty.strip()
            cname = first_field(inner)
            while cname.startswith("__bindgen_anon"):
                inner = [t for n, t in bodies[inner][1] if n == cname][0].strip()
                cname = first_field(inner)
        print(f'  printf("const _: () = assert!(offset_of!({s}, {name}) == %zu);\\n", offsetof({ckind} {s}, {cname}));')
print("  return 0;\n}")
