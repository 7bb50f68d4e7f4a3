# Stamps each nftables set element the kernel announces: subscribes to the nf_tables netlink multicast group in the
# namespace it runs in and, for every NEWSETELEM message, prints "<CLOCK_MONOTONIC ns> <address>" per element. The
# stamp is taken as recv() returns (netlink sockets carry no kernel receive timestamp), so what this adds to a latency
# is one process waking up. It runs SCHED_FIFO so that this is all it adds: as an ordinary task on a 2-core machine its
# wait for a core, behind the very daemon and writer it measures, was p99 1.1-2.2 ms of the ban figure; real-time, it
# wakes on the announcement and preempts whatever runs (p99 0.1-0.2 ms from the writer's commit). It only sleeps in
# recv() and writes a line per element, and the kernel's real-time throttling bounds it regardless.
# Python's standard library only; needs root (CAP_SYS_NICE), as the benchmarks do for their namespaces.
import os
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NFNLGRP_NFTABLES = 7
NEWSETELEM = (10 << 8) | 12  # NFNL_SUBSYS_NFTABLES, NFT_MSG_NEWSETELEM
NLA_TYPE_MASK = 0x3FFF
# low among real-time priorities: above every ordinary task, below the kernel's own real-time threads
REALTIME_PRIORITY = 10
ELEMENTS, LIST_ELEM, KEY, DATA_VALUE = 3, 1, 1, 1


def attrs(buf, start, end):
    while start + 4 <= end:
        length, kind = struct.unpack_from('=HH', buf, start)
        if length < 4:
            return
        yield kind & NLA_TYPE_MASK, start + 4, start + length
        start += (length + 3) & ~3


def keys(buf, start, end):
    for kind, s, e in attrs(buf, start, end):
        if kind != ELEMENTS:
            continue
        for k2, s2, e2 in attrs(buf, s, e):
            if k2 != LIST_ELEM:
                continue
            for k3, s3, e3 in attrs(buf, s2, e2):
                if k3 != KEY:
                    continue
                for k4, s4, e4 in attrs(buf, s3, e3):
                    if k4 == DATA_VALUE and e4 - s4 in (4, 16):
                        yield socket.inet_ntop(socket.AF_INET if e4 - s4 == 4 else socket.AF_INET6, bytes(buf[s4:e4]))


def main():
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.bind((0, 0))
    sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    out = sys.stdout
    out.write('ready\n')
    out.flush()
    buf = bytearray(1 << 17)
    while True:
        n = sock.recv_into(buf)
        at = time.monotonic_ns()
        lines = []
        pos = 0
        while pos + 16 <= n:
            length, kind = struct.unpack_from('=IH', buf, pos)
            if length < 16:
                break
            if kind == NEWSETELEM:
                for key in keys(buf, pos + 20, pos + length):
                    lines.append(f'{at} {key}\n')
            pos += (length + 3) & ~3
        if lines:
            out.write(''.join(lines))
            out.flush()


if __name__ == '__main__':
    main()
