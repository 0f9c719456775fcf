"""A small TCP proxy on loopback for fault injection between a Kafka client
and `pinion serve`: it forwards bytes both ways and, on request, drops
every connection right after a Produce request went through to the broker
but before its response came back, so the client must retry a batch the
broker may already have stored.

Bounded: at most `CONNECTIONS_MAX` open connections and
`CONNECTIONS_TOTAL_MAX` over its life (more are refused by closing them),
two threads per connection plus one accepting, sockets with timeouts, and
`close()` joins every thread. Loopback only: it listens on
and connects to 127.0.0.1.

The client→broker direction is parsed into Kafka frames (int32 size, then
api_key int16, ...), so a cut can follow a whole Produce request.
"""

import socket
import struct
import threading
import time

from pinion_broker import HOST

API_PRODUCE = 0
CONNECTIONS_MAX = 64
# Connections over the proxy's life; later ones are refused.
CONNECTIONS_TOTAL_MAX = 1000
CHUNK_BYTES = 64 << 10
# Larger request frames are not Kafka (the broker's own limit is 100 MiB).
FRAME_BYTES_MAX = 128 << 20
# How long a cut waits by default after the Produce request went through,
# so the broker has stored (and answered) it before the connection drops.
CUT_DELAY_S = 0.15
JOIN_TIMEOUT_S = 5.0


class _Link:
    """One proxied connection: the client socket and the broker socket."""

    def __init__(self, proxy, client):
        self.proxy = proxy
        self.client = client
        self.upstream = socket.create_connection((HOST, proxy.upstream_port), timeout=5.0)
        for sock in (self.client, self.upstream):
            sock.settimeout(0.2)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.closed = threading.Event()
        # Set once a cut is decided: responses are no longer forwarded.
        self.mute_responses = threading.Event()
        self.threads = [
            threading.Thread(target=self._requests, daemon=True),
            threading.Thread(target=self._responses, daemon=True),
        ]

    def start(self):
        for thread in self.threads:
            thread.start()

    def close(self):
        self.closed.set()
        for sock in (self.client, self.upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def join(self):
        for thread in self.threads:
            if thread is not threading.current_thread():
                thread.join(JOIN_TIMEOUT_S)

    def _recv(self, sock):
        """Bytes from `sock`; b"" at EOF or once closed; None on a timeout."""
        if self.closed.is_set():
            return b""
        try:
            return sock.recv(CHUNK_BYTES)
        except socket.timeout:
            return None
        except OSError:
            return b""

    def _send(self, sock, data) -> bool:
        try:
            sock.sendall(data)
            return True
        except OSError:
            return False

    def _requests(self):
        """client → broker, frame by frame, so a cut follows a whole request."""
        pending = bytearray()
        while not self.closed.is_set():
            data = self._recv(self.client)
            if data is None:
                continue
            if not data:
                break
            pending += data
            while len(pending) >= 6:
                size = struct.unpack_from(">i", pending, 0)[0]
                if not 2 <= size <= FRAME_BYTES_MAX:  # not Kafka: give up on the stream
                    self.proxy._drop(self)
                    return
                if len(pending) < 4 + size:
                    break
                frame = bytes(pending[: 4 + size])
                del pending[: 4 + size]
                api_key = struct.unpack_from(">h", frame, 4)[0]
                if not self._send(self.upstream, frame):
                    self.proxy._drop(self)
                    return
                with self.proxy.lock:
                    self.proxy.requests_forwarded += 1
                if api_key == API_PRODUCE and self.proxy._take_cut():
                    # The broker has the request; its answer must not arrive.
                    self.mute_responses.set()
                    time.sleep(self.proxy.cut_delay_s)
                    self.proxy.drop_all()
                    return
        self.proxy._drop(self)

    def _responses(self):
        """broker → client, as it comes (muted once a cut is decided)."""
        while not self.closed.is_set():
            data = self._recv(self.upstream)
            if data is None:
                continue
            if not data:
                break
            if self.mute_responses.is_set() or self.proxy.all_muted.is_set():
                with self.proxy.lock:
                    self.proxy.response_bytes_dropped += len(data)
                continue
            if not self._send(self.client, data):
                break
        self.proxy._drop(self)


class TcpProxy:
    """Listens on a free loopback port; forwards to `upstream_port` (which
    may be set after the proxy starts, e.g. once the broker's port is
    known). `cut_after_produce(n)` arms `n` cuts: each drops every
    connection `cut_delay_s` after the next Produce request went through
    (0: at once, racing the broker's handling of it)."""

    def __init__(self, upstream_port=None, cut_delay_s=CUT_DELAY_S):
        self.upstream_port = upstream_port
        self.cut_delay_s = cut_delay_s
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((HOST, 0))
        self.listener.listen(16)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.links = []
        # Every link ever opened, to join its threads at close.
        self.every_link = []
        self.stopped = threading.Event()
        # Set while a cut is dropping connections: no response gets through.
        self.all_muted = threading.Event()
        self.cuts_armed = 0
        self.cuts_done = 0
        self.connections_accepted = 0
        self.requests_forwarded = 0
        # Response bytes the broker sent that a cut kept from the client.
        self.response_bytes_dropped = 0
        self.acceptor = threading.Thread(target=self._accept, daemon=True)

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> "TcpProxy":
        self.acceptor.start()
        return self

    def cut_after_produce(self, count: int = 1):
        with self.lock:
            self.cuts_armed += count

    def _take_cut(self) -> bool:
        with self.lock:
            if self.cuts_armed == 0:
                return False
            self.cuts_armed -= 1
            self.cuts_done += 1
            self.all_muted.set()
            return True

    def drop_all(self):
        """Closes every connection at once (no response in flight is forwarded)."""
        self.all_muted.set()
        with self.lock:
            links, self.links = self.links, []
        for link in links:
            link.close()
        self.all_muted.clear()

    def _drop(self, link):
        with self.lock:
            if link in self.links:
                self.links.remove(link)
        link.close()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                full = (
                    len(self.links) >= CONNECTIONS_MAX
                    or len(self.every_link) >= CONNECTIONS_TOTAL_MAX
                    or self.upstream_port is None
                )
            if full:
                client.close()
                continue
            try:
                link = _Link(self, client)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.links.append(link)
                self.every_link.append(link)
                self.connections_accepted += 1
            link.start()

    def close(self):
        self.stopped.set()
        self.listener.close()
        self.acceptor.join(JOIN_TIMEOUT_S)
        with self.lock:
            self.links = []
            links = list(self.every_link)
        for link in links:
            link.close()
        for link in links:
            link.join()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
