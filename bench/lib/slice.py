# Sets a task's EEVDF slice (Linux 6.12 and later) as nft-writer.py sets its own: `slice.py <pid> <ns>`, 0 for the
# kernel's default. The latency bench uses it to run the same writer with and without its short slice.
import ctypes
import os
import struct
import sys

SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274, "riscv64": 274}


def set_slice(pid, ns):
    number = SYS_SCHED_SETATTR.get(os.uname().machine)
    if number is None:
        raise OSError("sched_setattr: unknown on %s" % os.uname().machine)
    nice = os.getpriority(os.PRIO_PROCESS, pid)
    attr = ctypes.create_string_buffer(struct.pack("=IIQiIQQQ", 48, os.SCHED_OTHER, 0, nice, 0, ns, 0, 0), 48)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(ctypes.c_long(number), ctypes.c_long(pid), attr, ctypes.c_long(0)) != 0:
        raise OSError(ctypes.get_errno(), "sched_setattr(%d): %s" % (pid, os.strerror(ctypes.get_errno())))


if __name__ == "__main__":
    set_slice(int(sys.argv[1]), int(sys.argv[2]))
