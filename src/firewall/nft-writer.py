# The persistent nft writer: a small child process holding one libnftables context, so a batch of bans costs a
# parse and a netlink transaction (~0.2 ms) instead of a process start (~8 ms). It speaks to ami-guard over
# stdin/stdout with length-prefixed frames, one request at a time:
#   request:  b"<output flags> <length>\n" + the script (one nft transaction, exactly as `nft -f` reads it)
#   response: b"<rc> <output length> <error length>\n" + what nft printed + nft's error text
# and prints b"ready\n" once the library is loaded. libnftables itself rather than `nft -i`: a whole multi-line script
# is one transaction with a real return code and error text, and there is no line history kept in memory or on disk.
# Only the standard library (ctypes) is used, so the one run-time dependency beyond nftables' own libnftables1 is
# python3. It keeps no state between requests except the library's cache, and drops the context after a large
# request, so its memory does not grow with use. It exits when stdin closes (ami-guard stopped or died).
import ctypes
import sys

NFT_CTX_DEFAULT = 0
# a request or its output at least this large (a reconciliation, a listing) is followed by a fresh context, so the
# cache of 100k elements and the grown output buffer are not kept for the single adds that follow
LARGE = 1 << 20
MAX_REQUEST = 1 << 30


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


def new_context():
    ctx = lib.nft_ctx_new(NFT_CTX_DEFAULT)
    if not ctx:
        fail("nft_ctx_new failed", 3)
    lib.nft_ctx_buffer_output(ctx)
    lib.nft_ctx_buffer_error(ctx)
    return ctx


def main():
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
