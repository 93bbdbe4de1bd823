#!/usr/bin/env python3
"""report.py RESULTS.tsv JSON MATRIX_S TOTAL_S OUT [BENCH.txt]: the suite's
pass/fail table (stderr when JSON, else stdout) and, with JSON=1, the
results as JSON on stdout."""
import json, os, sys

res, as_json, matrix_s, total_s, out = sys.argv[1:6]
bench = sys.argv[6] if len(sys.argv) > 6 else None
rows = []
for line in open(res):
    f = line.rstrip('\n').split('\t')
    if len(f) < 9:
        continue
    rows.append(dict(case=f[0], direction=f[1], phase=f[2], status=f[3], seconds=int(f[4]),
                     detail=f[5], softverbs_cmd=f[6], rxe_cmd=f[7], dir=f[8]))
tbl = sys.stderr if as_json == '1' else sys.stdout
by = {}
order = []
for r in rows:
    if r['case'] not in by:
        by[r['case']] = {}
        order.append(r['case'])
    by[r['case']][r['direction']] = r
# The softverbs CLI rows, then the ibv-* rows (the unmodified C tool on
# softverbs' libibverbs.so.1 against the same tool on rxe).
groups = [('softverbs CLI vs rdma-core/perftest on rxe', [c for c in order if not c.startswith('ibv-')],
           ('softverbs srv/rxe cli', 'rxe srv/softverbs cli')),
          ('the same C tool: on softverbs libibverbs.so.1 (host) vs on rxe (guest)', [c for c in order if c.startswith('ibv-')],
           ('libibverbs srv/rxe cli', 'rxe srv/libibverbs cli'))]
first = True
for title, cases, heads in groups:
    if not cases:
        continue
    if not first:
        print(file=tbl)
    first = False
    print('# %s' % title, file=tbl)
    print('%-26s %-6s %-22s %-22s' % ('case', 'mtu', heads[0], heads[1]), file=tbl)
    for c in cases:
        d = by[c]
        cell = lambda k: ('%s %ds' % (d[k]['status'], d[k]['seconds'])) if k in d else '-'
        ph = next(iter(d.values()))['phase'][1:]
        print('%-26s %-6s %-22s %-22s' % (c, ph, cell('sv-srv'), cell('rxe-srv')), file=tbl)
fails = [r for r in rows if r['status'] != 'PASS']
npass = len(rows) - len(fails)
ibv = [r for r in rows if r['case'].startswith('ibv-')]
ibv_pass = sum(1 for r in ibv if r['status'] == 'PASS')
split = ' (softverbs CLI %d/%d, libibverbs %d/%d)' % (npass - ibv_pass, len(rows) - len(ibv), ibv_pass, len(ibv)) if ibv and len(ibv) < len(rows) else ''
print('\n%d/%d passed%s; matrix %ss, suite %ss; results in %s' % (npass, len(rows), split, matrix_s, total_s, out), file=tbl)
for r in fails:
    print('\nFAIL %s (%s): %s\n  softverbs: %s\n  rxe guest: %s\n  capture:   %s/capture.pcap (logs: host.out guest.out)' % (
        r['case'], r['direction'], r['detail'], r['softverbs_cmd'], r['rxe_cmd'], r['dir']), file=tbl)
bench_txt = open(bench).read() if bench and os.path.exists(bench) else None
if bench_txt:
    print('\n' + bench_txt, file=tbl)
if as_json == '1':
    json.dump(dict(passed=npass, total=len(rows), matrix_seconds=int(matrix_s), suite_seconds=int(total_s),
                   out=out, cases=rows, bench=bench_txt), sys.stdout, indent=1)
    print()
sys.exit(0 if not fails else 1)
