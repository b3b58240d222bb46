#!/usr/bin/env python3
"""Memory a stalled client costs the server: opens N connections that send one request and
never read (4 KiB receive buffers), then prints the growth of the server's resident memory
per connection every 5 s for 20 s.

usage: scripts/stalled_memory.py PORT N REQUEST SERVER_PID
  REQUEST takes escapes, e.g. 'GET /quotes HTTP/1.0\\r\\n\\r\\n'

Start the server with enough headroom for N clients from one address, for example
  tickcast --addr 127.0.0.1:3997 --rate 10 --max-clients 5000 --max-connections-per-ip 5000 \\
           --write-timeout-secs 600
and compare requests in one run: the direct path ('GET /quotes HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')
against hyper ('GET /quotes HTTP/1.0\\r\\n\\r\\n', or a stream as the second request on a
keep-alive connection). Each request kind needs a fresh server: freed memory is not always
returned to the system.
"""
import socket
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    raise SystemExit(f"no VmRSS for pid {pid}")


def main():
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    port, n, request, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    request = request.encode().decode("unicode_escape").encode("latin-1")
    base = rss_kib(pid)
    held = []
    for _ in range(n):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.sendall(request)
        held.append(s)
    for step in range(1, 5):
        time.sleep(5)
        print(f"t={5 * step}s rss growth {(rss_kib(pid) - base) / n:.1f} KiB per connection", flush=True)


if __name__ == "__main__":
    main()
