#!/usr/bin/env python3
"""A loopback TCP proxy that the reliability runner turns into a network partition and heals
(the same proxy as Tests/TestSupport/PartitionProxy.swift, as a program of its own).

    partition_proxy.py --listen-port 0 --target 127.0.0.1:PORT --control-port 0

Listens on 127.0.0.1 only (port 0: the kernel picks one) and forwards every connection to the
target, which must be a loopback address. Once both ports listen it prints them on stdout as
one JSON line, {"listen_port": N, "control_port": M}, and takes one-line commands on the
control port, each answered with one JSON line once applied:

    cut        reset every open connection both ways (RST to the client and to the target, as
               a broken link or a middlebox dropping state makes them); until `restore`, accept
               each new connection and reset it at once. It keeps listening rather than
               refusing: the port stays the proxy's, and to a client a reset right after
               connecting is as much a failure as a refusal.
    blackhole  keep connections open but forward nothing either way and accept nothing new
               (the kernel still completes handshakes into the listen backlog): a partition
               without resets, as a dropped network or a peer stopped with SIGSTOP looks. What
               was sent meanwhile waits in socket buffers and goes through after `restore`.
    restore    forward again.
    stats      the mode and the counters.
    stop       reset everything and exit (as SIGTERM or SIGINT do).

Every answer is {"ok": true, "command": ..., "mode": ..., "open_connections": ...,
"connections_accepted": ..., "connections_rejected": ..., "connections_cut": ...,
"target_failures": ..., "bytes_to_target": ..., "bytes_from_target": ...}, or
{"ok": false, "error": ...} for an unknown command. One thread, poll(2), non-blocking sockets.
"""
import argparse
import errno
import ipaddress
import json
import select
import signal
import socket
import struct
import sys

CHUNK = 65536
READABLE = select.POLLIN
WRITABLE = select.POLLOUT


class Stop(Exception):
    """SIGTERM, SIGINT or the `stop` command: reset everything and exit."""


def listening_socket(port, backlog):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def close_with_reset(sock):
    """Closes with SO_LINGER 0: an RST goes out, what was not read is thrown away."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class Flow:
    """One direction: bytes read from one side and not yet all written to the other."""

    __slots__ = ("pending", "ended", "passed_on")

    def __init__(self):
        self.pending = b""
        self.ended = False      # the source sent its FIN
        self.passed_on = False  # the FIN was passed on (shutdown for writing)

    @property
    def done(self):
        return self.ended and self.passed_on


def pump(flow, source, ready, destination):
    """Reads from `source` when something may have come and nothing waits, then writes what
    waits to `destination` (what does not fit waits for the next round). Returns the bytes
    written, or None when either side broke."""
    if ready and not flow.ended and not flow.pending:
        try:
            data = source.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            data = None
        except OSError:
            return None
        if data:
            flow.pending = data
        elif data is not None:
            flow.ended = True
    sent = 0
    if flow.pending:
        try:
            sent = destination.send(flow.pending)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return None
        flow.pending = flow.pending[sent:]
    if flow.ended and not flow.pending and not flow.passed_on:
        try:
            destination.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        flow.passed_on = True
    return sent


class Pair:
    """A client connection and its connection to the target."""

    def __init__(self, client, upstream, connecting):
        self.client = client
        self.upstream = upstream
        self.connecting = connecting
        self.to_target = Flow()
        self.to_client = Flow()
        self.closed = False

    def interest(self):
        """What poll(2) waits for on each side: reading while nothing waits to be written (the
        socket buffers give the back-pressure), writing while something waits."""
        if self.connecting:
            return 0, WRITABLE
        client = upstream = 0
        if not self.to_target.ended and not self.to_target.pending:
            client |= READABLE
        if self.to_target.pending:
            upstream |= WRITABLE
        if not self.to_client.ended and not self.to_client.pending:
            upstream |= READABLE
        if self.to_client.pending:
            client |= WRITABLE
        return client, upstream

    def reset(self):
        if not self.closed:
            self.closed = True
            close_with_reset(self.client)
            close_with_reset(self.upstream)


class Proxy:
    def __init__(self, listen_port, target, control_port):
        self.target = target
        self.listener = listening_socket(listen_port, 128)
        self.control = listening_socket(control_port, 8)
        self.mode = "forwarding"
        self.pairs = []
        self.controls = {}  # control connection -> [bytes received, bytes to send]
        self.counters = {"connections_accepted": 0, "connections_rejected": 0, "connections_cut": 0,
                         "target_failures": 0, "bytes_to_target": 0, "bytes_from_target": 0}

    def ports(self):
        return {"listen_port": self.listener.getsockname()[1], "control_port": self.control.getsockname()[1]}

    def run(self):
        try:
            while True:
                self.serve_once()
        except Stop:
            pass
        finally:
            for pair in self.pairs:
                pair.reset()
            for sock in list(self.controls):
                sock.close()
            self.listener.close()
            self.control.close()

    def serve_once(self):
        poller = select.poll()
        poller.register(self.control, READABLE)
        for sock, (_, outgoing) in self.controls.items():
            poller.register(sock, READABLE | (WRITABLE if outgoing else 0))
        if self.mode != "blackholed":
            poller.register(self.listener, READABLE)
        watched = list(self.pairs) if self.mode == "forwarding" else []
        for pair in watched:
            client, upstream = pair.interest()
            # A side with nothing to wait for is left out, so that its hang-up does not wake
            # the loop again and again while the other side is still busy.
            if client:
                poller.register(pair.client, client)
            if upstream:
                poller.register(pair.upstream, upstream)
        events = {}
        for fd, mask in poller.poll():
            events[fd] = mask
        # Commands first: a pair cut or blackholed now moves nothing more in this round.
        if self.control.fileno() in events:
            self.accept_control()
        for sock in list(self.controls):
            if sock.fileno() in events:
                self.serve_control(sock)
        if self.mode != "blackholed" and self.listener.fileno() in events:
            self.accept_clients()
        if self.mode == "forwarding":
            for pair in watched:
                if not pair.closed:
                    self.handle(pair, events.get(pair.client.fileno(), 0), events.get(pair.upstream.fileno(), 0))
        self.pairs = [pair for pair in self.pairs if not pair.closed]

    def handle(self, pair, client_events, upstream_events):
        if pair.connecting:
            if not upstream_events:
                return
            if pair.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                self.counters["target_failures"] += 1
                pair.reset()
            else:
                pair.connecting = False
            return
        up = pump(pair.to_target, pair.client, bool(client_events), pair.upstream)
        down = pump(pair.to_client, pair.upstream, bool(upstream_events), pair.client) if up is not None else None
        if up is None or down is None:
            pair.reset()
            return
        self.counters["bytes_to_target"] += up
        self.counters["bytes_from_target"] += down
        if pair.to_target.done and pair.to_client.done:
            pair.closed = True
            pair.client.close()
            pair.upstream.close()

    def accept_clients(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.counters["connections_accepted"] += 1
            if self.mode == "cut":
                self.counters["connections_rejected"] += 1
                close_with_reset(client)
                continue
            upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            upstream.setblocking(False)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            result = upstream.connect_ex(self.target)
            if result == 0:
                self.pairs.append(Pair(client, upstream, connecting=False))
            elif result in (errno.EINPROGRESS, errno.EAGAIN):
                self.pairs.append(Pair(client, upstream, connecting=True))
            else:
                self.counters["target_failures"] += 1
                upstream.close()
                close_with_reset(client)

    def accept_control(self):
        while True:
            try:
                sock, _ = self.control.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            self.controls[sock] = [b"", b""]

    def serve_control(self, sock):
        state = self.controls[sock]
        try:
            data = sock.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            data = None
        except OSError:
            data = b""
        if data == b"":
            del self.controls[sock]
            sock.close()
            return
        stop = False
        if data:
            state[0] += data
            while b"\n" in state[0]:
                line, state[0] = state[0].split(b"\n", 1)
                command = line.decode("utf-8", "replace").strip()
                if not command:
                    continue
                answer = self.command(command)
                state[1] += (json.dumps(answer) + "\n").encode()
                stop = stop or command == "stop"
        if state[1]:
            try:
                sent = sock.send(state[1])
                state[1] = state[1][sent:]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                del self.controls[sock]
                sock.close()
                return
        if stop:
            raise Stop()

    def command(self, command):
        if command == "cut":
            self.mode = "cut"
            self.counters["connections_cut"] += len(self.pairs)
            for pair in self.pairs:
                pair.reset()
            self.pairs = []
        elif command == "blackhole":
            self.mode = "blackholed"
        elif command == "restore":
            self.mode = "forwarding"
        elif command not in ("stats", "stop"):
            return {"ok": False, "error": f"unknown command {command[:40]!r}: cut, blackhole, restore, stats or stop"}
        return {"ok": True, "command": command, "mode": self.mode,
                "open_connections": len([pair for pair in self.pairs if not pair.closed]), **self.counters}


def loopback_target(text):
    host, separator, port = text.rpartition(":")
    if not separator or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{host!r} is not an IPv4 address") from None
    if not address.is_loopback:
        raise argparse.ArgumentTypeError(f"{host} is not a loopback address: nothing leaves this host")
    return (str(address), int(port))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen-port", type=int, default=0, help="port on 127.0.0.1 for clients (0: the kernel picks)")
    parser.add_argument("--target", type=loopback_target, required=True, help="HOST:PORT on loopback to forward to")
    parser.add_argument("--control-port", type=int, default=0, help="port on 127.0.0.1 for commands (0: the kernel picks)")
    arguments = parser.parse_args()

    def stop(signum, frame):
        raise Stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    proxy = Proxy(arguments.listen_port, arguments.target, arguments.control_port)
    print(json.dumps(proxy.ports()), flush=True)
    proxy.run()


if __name__ == "__main__":
    sys.exit(main())
