"""Is the node still answering? ApiVersions v0 on 12 fresh connections.

The node spreads connections over its shards (SO_REUSEPORT); a shard that
died or hangs leaves some connections unanswered while others work. run.sh
asks this before each check, so one broken shard fails the checks after it
quickly instead of letting each wait out its timeout.
Exit 0 when every connection answered within 5 s; else 1 with `REASON: ...`.
"""

import socket
import struct
import sys
import time

CONNECTIONS = 12


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    socks, errors = [], []
    request = struct.pack(">hhi", 18, 0, 1) + struct.pack(">h", 18) + b"weir-compat-health"
    for _ in range(CONNECTIONS):
        try:
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(struct.pack(">i", len(request)) + request)
            socks.append(s)
        except OSError as e:
            errors.append("connect: %s" % e)
    deadline = time.time() + 5
    for s in socks:
        try:
            s.settimeout(max(0.1, deadline - time.time()))
            head = s.recv(8)
            if len(head) < 8:
                errors.append("connection closed")
            elif struct.unpack(">i", head[4:8])[0] != 1:
                errors.append("wrong correlation id")
        except OSError as e:
            errors.append("no answer in 5 s" if isinstance(e, socket.timeout) else str(e))
        finally:
            s.close()
    if errors:
        print("REASON: ApiVersions unanswered on %d of %d connections (%s)"
              % (len(errors), CONNECTIONS, "; ".join(sorted(set(errors)))))
        return 1
    print("REASON: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
