#!/usr/bin/env python3
"""icrc_check.py PCAP: recompute the RoCEv2 ICRC of every fully captured
UDP/4791 IPv4 packet (Ethernet pcap) and print "OK BAD" (truncated packets,
from a headers-only capture, are skipped). With -v, mismatches are listed.

ICRC = CRC-32 (zlib) over 8 x 0xFF | IPv4 header with TOS, TTL and checksum
all ones | UDP header with checksum 0xFFFF | BTH with byte 4 = 0xFF | rest
up to the ICRC; stored little-endian. The capture holds the real IPv4
identification, so this checks both stacks' ICRCs exactly as sent."""
import struct, sys, zlib

def packets(path):
    d = open(path, 'rb').read()
    if len(d) < 24:
        return
    magic = struct.unpack('<I', d[:4])[0]
    e = '<' if magic in (0xa1b2c3d4, 0xa1b23c4d) else '>'
    lt = struct.unpack(e + 'I', d[20:24])[0]
    off = 24
    while off + 16 <= len(d):
        _, _, incl, orig = struct.unpack(e + 'IIII', d[off:off + 16]); off += 16
        yield lt, d[off:off + incl], incl == orig
        off += incl

ok = bad = 0
verbose = '-v' in sys.argv
for n, (lt, p, full) in enumerate(packets([a for a in sys.argv[1:] if a != '-v'][0]), 1):
    if lt != 1 or not full or len(p) < 14 + 20 + 8 + 12 + 4:
        continue
    if struct.unpack('>H', p[12:14])[0] != 0x0800:
        continue
    ip = p[14:]
    if ip[0] >> 4 != 4 or ip[9] != 17:
        continue
    ihl = (ip[0] & 15) * 4
    ip = ip[:struct.unpack('>H', ip[2:4])[0]]
    udp = ip[ihl:ihl + 8]
    if struct.unpack('>H', udp[2:4])[0] != 4791:
        continue
    iph = bytearray(ip[:ihl]); iph[1] = 0xff; iph[8] = 0xff; iph[10:12] = b'\xff\xff'
    udph = bytearray(udp); udph[6:8] = b'\xff\xff'
    rest = bytearray(ip[ihl + 8:-4]); rest[4] = 0xff
    crc = zlib.crc32(b'\xff' * 8 + bytes(iph) + bytes(udph) + bytes(rest)) & 0xffffffff
    if ip[-4:] == struct.pack('<I', crc):
        ok += 1
    else:
        bad += 1
        if verbose:
            print('frame %d: ICRC %s, computed %s' % (n, ip[-4:].hex(), struct.pack('<I', crc).hex()), file=sys.stderr)
print(ok, bad)
