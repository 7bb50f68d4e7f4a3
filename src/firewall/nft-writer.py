# The persistent nft writer: a small child process holding one libnftables context, so a batch of bans costs a
# parse and a netlink transaction (~0.2 ms) instead of a process start (~8 ms). It speaks to ami-guard over
# stdin/stdout with length-prefixed frames, one request at a time:
#   request:  b"<output flags> <length>\n" + the script (one nft transaction, exactly as `nft -f` reads it)
#   response: b"<rc> <output length> <error length>\n" + what nft printed + nft's error text
# and prints b"ready\n" once the library is loaded. Three requests bypass libnftables and speak netlink directly (flags
# with DUMP_ELEMENTS, GENERATION or RAW_BATCH set, below): a raw dump of one set's elements, which libnftables reads
# and prints for ~1 s at 100k elements while the kernel's part is ~0.13 s; the ruleset generation, which tells
# whether anyone committed anything between two moments; and a batch ami-guard encoded itself (netlink-batch.ts: bans
# loaded into empty sets, where libnftables would spend ~0.4 s parsing the script text of 100k). libnftables itself rather than `nft -i`: a whole multi-line script
# is one transaction with a real return code and error text, and there is no line history kept in memory or on disk.
# Only the standard library (ctypes) is used, so the one run-time dependency beyond nftables' own libnftables1 is
# python3. It keeps no state between requests except the library's cache, and drops the context after a large
# request, so its memory does not grow with use. It exits when stdin closes (ami-guard stopped or died).
import ctypes
import errno
import os
import socket
import struct
import sys
import time

NFT_CTX_DEFAULT = 0
# a request or its output at least this large (a reconciliation, a listing) is followed by a fresh context, so the
# cache of 100k elements and the grown output buffer are not kept for the single adds that follow
LARGE = 1 << 20
MAX_REQUEST = 1 << 30

# request flags of our own, above libnftables' output flags (NFT_CTX_OUTPUT_*, 1 << 0 to 1 << 11)
DUMP_ELEMENTS = 1 << 24
GENERATION = 1 << 25
RAW_BATCH = 1 << 26

NETLINK_NETFILTER = 12
NFPROTO_INET = 1
NFT_MSG_GETSETELEM = (10 << 8) | 13  # NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETSETELEM
NFT_MSG_GETGEN = (10 << 8) | 16
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
NLM_F_DUMP = 0x300
NLM_F_DUMP_INTR = 0x10
NLMSG_ERROR = 2
NLMSG_DONE = 3
# the kernel fills a dump datagram of at most 32 KiB (the largest read it has seen, capped): this holds any of them
RECV_SIZE = 1 << 16
DUMP_TRIES = 3


def fail(message, code):
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    sys.exit(code)


try:
    lib = ctypes.CDLL("libnftables.so.1")
except OSError as e:
    fail("cannot load libnftables.so.1 (install the libnftables1 package): %s" % e, 3)

lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
lib.nft_ctx_new.restype = ctypes.c_void_p
lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
lib.nft_ctx_free.restype = None
lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
lib.nft_ctx_output_set_flags.restype = None
lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
lib.nft_run_cmd_from_buffer.restype = ctypes.c_int

try:
    trim = ctypes.CDLL("libc.so.6").malloc_trim
    trim.argtypes = [ctypes.c_size_t]
except (OSError, AttributeError):
    trim = None


# A short scheduler slice (Linux 6.12 and later, EEVDF): a task asking for a shorter slice than the one running may
# preempt it when it wakes. A batch of bans then runs as it arrives, where otherwise it could wait out the slice of
# whatever holds the core (1.4 ms here, more on larger machines), and on a PBX under a flood both cores are held. It
# asks for no more CPU, only for sooner: a batch of one takes ~0.1 ms. Older kernels accept and ignore it, and a
# policy the operator chose (SCHED_BATCH, SCHED_IDLE, a real-time one) is left alone.
SLICE_NS = 100_000
SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274, "riscv64": 274, "armv7l": 380, "i686": 351, "ppc64le": 355, "s390x": 345}


def short_slice():
    number = SYS_SCHED_SETATTR.get(os.uname().machine)
    if number is None or os.sched_getscheduler(0) != os.SCHED_OTHER:
        return
    # struct sched_attr as first published (48 bytes), keeping our nice value, which a zero would reset
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    attr = ctypes.create_string_buffer(struct.pack("=IIQiIQQQ", 48, os.SCHED_OTHER, 0, nice, 0, SLICE_NS, 0, 0), 48)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall(ctypes.c_long(number), ctypes.c_long(0), attr, ctypes.c_long(0))
    except (OSError, AttributeError):
        pass


def new_context():
    ctx = lib.nft_ctx_new(NFT_CTX_DEFAULT)
    if not ctx:
        fail("nft_ctx_new failed", 3)
    lib.nft_ctx_buffer_output(ctx)
    lib.nft_ctx_buffer_error(ctx)
    return ctx


def attr(kind, data):
    size = 4 + len(data)
    return struct.pack("=HH", size, kind) + data + b"\0" * (-size % 4)


class NetlinkError(Exception):
    pass


def netlink_request(kind, flags, payload):
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.send(struct.pack("=IHHII", 16 + len(payload), kind, flags, 1, 0) + payload)
    return sock


def messages(data):
    """(type, flags, offset of the payload, end) of each netlink message of a datagram"""
    at = 0
    while at + 16 <= len(data):
        size, kind, flags = struct.unpack_from("=IHH", data, at)
        if size < 16 or at + size > len(data):
            raise NetlinkError("malformed netlink message")
        yield kind, flags, at + 16, at + size
        at += (size + 3) & ~3


def check_error(data, start, end):
    code = -struct.unpack_from("=i", data, start)[0] if end - start >= 4 else errno.EIO
    if code != 0:
        raise NetlinkError("Error: %s" % os.strerror(code))


def dump_once(table, name):
    """The set's elements as the kernel sends them: per datagram b"<ms><length>" + the datagram. <ms> is the wall
    clock (ms) read before the call that made the kernel fill it (the request for the first, the read before for the
    next): no element's remaining time was measured earlier, so <ms> + its expiry is never after its real end."""
    payload = struct.pack("=BBH", NFPROTO_INET, 0, 0) + attr(1, table + b"\0") + attr(2, name + b"\0")
    stamp = int(time.time() * 1000)
    sock = netlink_request(NFT_MSG_GETSETELEM, NLM_F_REQUEST | NLM_F_DUMP, payload)
    out = []
    buf = bytearray(RECV_SIZE)
    try:
        while True:
            next_stamp = int(time.time() * 1000)
            size, _, flags, _ = sock.recvmsg_into([buf])
            if flags & socket.MSG_TRUNC:
                raise NetlinkError("netlink datagram larger than %d bytes" % RECV_SIZE)
            data = bytes(buf[:size])
            done = False
            for kind, mflags, start, end in messages(data):
                if kind == NLMSG_ERROR:
                    check_error(data, start, end)
                elif kind == NLMSG_DONE:
                    done = True
                elif mflags & NLM_F_DUMP_INTR:
                    return None
            out.append(struct.pack("=QI", stamp, size))
            out.append(data)
            stamp = next_stamp
            if done:
                return b"".join(out)
    finally:
        sock.close()


def dump_elements(request):
    table, _, name = request.partition(b"\n")
    for _ in range(DUMP_TRIES):
        result = dump_once(table, name)
        if result is not None:
            return result
    raise NetlinkError("Error: the set changed during every try of its dump")


def generation():
    sock = netlink_request(NFT_MSG_GETGEN, NLM_F_REQUEST, struct.pack("=BBH", 0, 0, 0))
    try:
        data = sock.recv(RECV_SIZE)
    finally:
        sock.close()
    for kind, _, start, end in messages(data):
        if kind == NLMSG_ERROR:
            check_error(data, start, end)
            continue
        at = start + 4  # past nfgenmsg
        while at + 4 <= end:
            size, akind = struct.unpack_from("=HH", data, at)
            if size < 4:
                break
            if akind & 0x3FFF == 1 and size >= 8:  # NFTA_GEN_ID, big endian
                return b"%d" % struct.unpack_from(">I", data, at + 4)[0]
            at += (size + 3) & ~3
    raise NetlinkError("Error: no generation in the kernel's answer")


# the socket raw batches go through, kept between them (one socket, two setsockopt and a close per ban cost ~30 us):
# every answer to a batch is read before the next is sent, and after an error, when some may be left, it is dropped
batch_sock = None
batch_sndbuf = 0


def raw_batch(batch):
    """Sends one nf_tables batch as it is; the kernel runs it inside the send, so every answer is queued when send
    returns. Each of its messages asks for an acknowledgement: all of them and no error means it was committed."""
    global batch_sock, batch_sndbuf
    wanted = sum(1 for _, flags, _, _ in messages(batch) if flags & NLM_F_ACK)
    acks = 0
    try:
        if batch_sock is None:
            batch_sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            batch_sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 22)
            batch_sndbuf = 0
        if len(batch) + (1 << 16) > batch_sndbuf:
            batch_sndbuf = len(batch) + (1 << 16)
            batch_sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, batch_sndbuf)
        batch_sock.send(batch)
        while True:
            try:
                data = batch_sock.recv(RECV_SIZE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            for kind, _, start, end in messages(data):
                if kind == NLMSG_ERROR:
                    check_error(data, start, end)
                    acks += 1
        if acks != wanted:
            raise NetlinkError("Error: the kernel acknowledged %d of %d messages" % (acks, wanted))
    except BaseException:
        if batch_sock is not None:
            batch_sock.close()
            batch_sock = None
        raise
    return b""


def direct(flags, request):
    try:
        if flags & DUMP_ELEMENTS:
            out = dump_elements(request)
        elif flags & RAW_BATCH:
            out = raw_batch(request)
        else:
            out = generation()
        return 0, out, b""
    except (NetlinkError, OSError) as e:
        return 1, b"", str(e).encode()


def main():
    short_slice()
    ctx = new_context()
    stdin = sys.stdin.buffer
    stdout = sys.stdout.buffer
    stdout.write(b"ready\n")
    stdout.flush()
    while True:
        header = stdin.readline()
        if not header:
            return
        try:
            flags, length = (int(x) for x in header.split())
        except ValueError:
            fail("malformed request header", 2)
        if flags < 0 or length < 0 or length > MAX_REQUEST:
            fail("request out of range", 2)
        script = stdin.read(length)
        if len(script) != length:
            return
        if flags & (DUMP_ELEMENTS | GENERATION | RAW_BATCH):
            rc, out, err = direct(flags, script)
        else:
            lib.nft_ctx_output_set_flags(ctx, flags)
            rc = lib.nft_run_cmd_from_buffer(ctx, script)
            out = lib.nft_ctx_get_output_buffer(ctx) or b""
            err = lib.nft_ctx_get_error_buffer(ctx) or b""
        stdout.write(b"%d %d %d\n" % (rc, len(out), len(err)))
        stdout.write(out)
        stdout.write(err)
        stdout.flush()
        if length >= LARGE or len(out) >= LARGE:
            lib.nft_ctx_free(ctx)
            del script, out, err
            if trim is not None:
                trim(0)
            ctx = new_context()


try:
    main()
except BrokenPipeError:
    pass
