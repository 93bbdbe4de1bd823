#!/usr/bin/env python3
"""unittest_status.py VERBOSE.txt: one "test_id<TAB>status<TAB>reason" line per
test of a `python -m unittest -v` style log (rdma-core's run_tests.py -v),
where a docstring may put the status on the line after the test id, and a
test that prints something puts its bare status ("ok") on a line of its own
after " ... <output>"."""
import re, sys

cur = None
for line in open(sys.argv[1], errors='replace'):
    line = line.rstrip('\n')
    m = re.match(r'^(test_\S+) \((\S+)\)', line)
    if m:
        cur = m.group(2)
    m = re.search(r' \.\.\. (ok|skipped|ERROR|FAIL|expected failure|unexpected success)(?: (.*))?$', line)
    if m and cur:
        reason = (m.group(2) or '').strip().strip("'\"")
        print('%s\t%s\t%s' % (cur, m.group(1), reason))
        cur = None
        continue
    m = re.match(r'^(ok|ERROR|FAIL)$', line)
    if m and cur:
        print('%s\t%s\t' % (cur, m.group(1)))
        cur = None
