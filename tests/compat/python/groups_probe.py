"""Does the node serve consumer groups? Asked on the wire, without a client.

Sends ApiVersions v0 and then FindCoordinator (v0..v2, non-flexible) for a
group, and exits:
  0   groups are served (FindCoordinator answered NONE with a coordinator)
  77  groups are not served: FindCoordinator is not advertised, or answered
      UNSUPPORTED_VERSION / INVALID_REQUEST, or COORDINATOR_NOT_AVAILABLE for
      the whole probe window (10 s)
  1   anything else (the group checks then run and report for themselves)
The last line printed is `REASON: ...`.
"""

import socket
import struct
import sys
import time

from common import EXIT_FAIL, EXIT_PASS, EXIT_SKIP, topic

API_VERSIONS = 18
FIND_COORDINATOR = 10
ERRORS = {
    15: "COORDINATOR_NOT_AVAILABLE",
    14: "COORDINATOR_LOAD_IN_PROGRESS",
    35: "UNSUPPORTED_VERSION",
    42: "INVALID_REQUEST",
    -1: "UNKNOWN_SERVER_ERROR",
}


def kstr(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


class Conn:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.corr = 0

    def call(self, key, version, body):
        self.corr += 1
        header = struct.pack(">hhi", key, version, self.corr) + kstr("weir-compat-probe")
        msg = header + body
        self.sock.sendall(struct.pack(">i", len(msg)) + msg)
        size = struct.unpack(">i", self._read(4))[0]
        data = self._read(size)
        corr = struct.unpack(">i", data[:4])[0]
        if corr != self.corr:
            raise RuntimeError("correlation id %d, expected %d" % (corr, self.corr))
        return data[4:]

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise RuntimeError("connection closed by the node")
            buf += chunk
        return buf


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    conn = Conn(host, int(port))
    body = conn.call(API_VERSIONS, 0, b"")
    err, n = struct.unpack(">hi", body[:6])
    if err != 0:
        return EXIT_FAIL, "ApiVersions v0 answered error %d" % err
    ranges = {}
    for i in range(n):
        k, lo, hi = struct.unpack(">hhh", body[6 + 6 * i: 12 + 6 * i])
        ranges[k] = (lo, hi)
    if FIND_COORDINATOR not in ranges:
        return EXIT_SKIP, "FindCoordinator is not advertised in ApiVersions"
    lo, hi = ranges[FIND_COORDINATOR]
    versions = [v for v in (2, 1, 0) if lo <= v <= hi]
    if not versions:
        return EXIT_FAIL, "FindCoordinator range %d..%d has no non-flexible version to probe" % (lo, hi)
    version = versions[0]
    group = topic("probe-group")
    deadline = time.time() + 10
    while True:
        req = kstr(group) + (b"\x00" if version >= 1 else b"")  # key_type 0 = group
        resp = conn.call(FIND_COORDINATOR, version, req)
        if version >= 1:
            resp = resp[4:]  # throttle_time_ms
        err = struct.unpack(">h", resp[:2])[0]
        name = ERRORS.get(err, str(err))
        if err == 0:
            return EXIT_PASS, "FindCoordinator v%d answered a coordinator" % version
        if err in (35, 42):
            return EXIT_SKIP, "FindCoordinator v%d answered %s" % (version, name)
        if err in (14, 15) and time.time() < deadline:
            time.sleep(0.5)
            continue
        if err == 15:
            return EXIT_SKIP, "FindCoordinator v%d answered %s for 10 s" % (version, name)
        return EXIT_FAIL, "FindCoordinator v%d answered error %s" % (version, name)


if __name__ == "__main__":
    try:
        code, reason = main()
    except Exception as e:
        code, reason = EXIT_FAIL, "probe error: %s: %s" % (type(e).__name__, e)
    print("REASON: %s" % reason)
    sys.exit(code)
