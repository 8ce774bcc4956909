import Dispatch
import Foundation
import Synchronization

/// A TCP proxy on 127.0.0.1 (a port the kernel picks) in front of a loopback server (a
/// PostgreSQL server, a receiver), that a test turns into a network partition and heals:
///
/// - ``cut()`` resets every open connection both ways (RST to the client and to the server, as
///   a broken link or a middlebox dropping state makes them), and until ``restore()`` accepts
///   each new connection and resets it at once. It keeps listening rather than refusing: the
///   port stays the proxy's (a listener closed and reopened could find it taken by another test
///   meanwhile), and to a client a reset right after connecting is as much a failure as a
///   refusal (`ECONNRESET` on its first read or write instead of `ECONNREFUSED` on connect).
/// - ``blackhole()`` keeps every connection open but forwards nothing either way and accepts
///   nothing new (the kernel still completes handshakes into the listen backlog): a partition
///   without resets, as a dropped network or a peer stopped with SIGSTOP looks. What was sent
///   meanwhile waits in socket buffers and goes through after ``restore()``, as TCP delivers it
///   once a partition heals; a client only learns of the partition by its own timeouts.
/// - ``restore()`` forwards again; ``stop()`` closes everything and ends the proxy's thread.
///
/// Plain non-blocking sockets and poll(2) on one thread of its own (running when `init`
/// returns), independent of the daemon's SwiftNIO code. `cut()`, `blackhole()` and
/// `restore()` return once the thread has applied them: after `cut()` returns, the resets
/// have been sent.
public final class PartitionProxy: Sendable {
    /// What the proxy does with traffic.
    public enum Mode: Sendable, Equatable {
        /// Bytes forwarded both ways.
        case forwarding
        /// Open connections were reset; new ones are accepted and reset at once.
        case cut
        /// Connections stay open, nothing is forwarded, new ones wait in the listen backlog.
        case blackholed
    }

    /// The port the proxy listens on, on 127.0.0.1.
    public let port: Int
    private let shared: Shared

    /// Starts listening on 127.0.0.1 and forwarding every connection to `127.0.0.1:port`.
    public init(target port: Int) throws {
        guard (1...65_535).contains(port) else { throw LoopbackPort.PortError(description: "target port \(port) out of range") }
        let targetPort = port
        let listener = try LoopbackPort.listener(type: Self.streamType, backlog: 128)
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else {
            let reason = String(cString: strerror(errno))
            close(listener.descriptor)
            throw LoopbackPort.PortError(description: "pipe: \(reason)")
        }
        for end in ends { Self.prepare(end) }
        self.port = listener.port
        let shared = Shared(wakeWriter: ends[1])
        self.shared = shared
        let listening = listener.descriptor, wakeReader = ends[0]
        do {
            try DedicatedThread.start {
                ProxyLoop(shared: shared, listener: listening, wakeReader: wakeReader, target: targetPort).run()
            }
        } catch {
            for descriptor in [listening, wakeReader, ends[1]] { close(descriptor) }
            throw error
        }
    }

    deinit {
        stop()
    }

    /// Resets every open connection both ways; until ``restore()``, new connections are
    /// accepted and reset at once.
    public func cut() {
        command {
            $0.mode = .cut; $0.cuts += 1
        }
    }

    /// Forwards nothing either way and accepts nothing new, keeping connections open, until
    /// ``restore()``.
    public func blackhole() {
        command { $0.mode = .blackholed }
    }

    /// Forwards again (what waited during a blackhole goes through).
    public func restore() {
        command { $0.mode = .forwarding }
    }

    /// Closes the listener and every connection (reset) and ends the proxy's thread; returns
    /// once it has ended. Later calls, and `cut()`/`blackhole()`/`restore()` after it, do nothing.
    public func stop() {
        let first = shared.control.withLock { control in
            guard !control.stopping else { return false }
            control.stopping = true
            return true
        }
        guard first else { return }
        shared.wake()
        shared.finished.wait()
        shared.closeWakeWriter()
    }

    /// What the proxy does now.
    public var mode: Mode { shared.control.withLock { $0.mode } }
    /// Connections accepted from clients, including those reset at once while cut.
    public var connectionsAccepted: Int { shared.control.withLock { $0.connectionsAccepted } }
    /// Connections accepted and reset at once because the proxy was cut.
    public var connectionsRejected: Int { shared.control.withLock { $0.connectionsRejected } }
    /// Open connections that `cut()` reset.
    public var connectionsCut: Int { shared.control.withLock { $0.connectionsCut } }
    /// Connections the target refused or reset before they were set up (the client got a reset).
    public var targetFailures: Int { shared.control.withLock { $0.targetFailures } }
    /// The last error accept(2) gave (out of descriptors, say), nil when none: the proxy then
    /// leaves the listener alone for 50 ms rather than trying again and again, and connections
    /// wait in the backlog meanwhile.
    public var acceptFailure: String? { shared.control.withLock { $0.acceptFailure } }
    /// Connections open now (forwarding or held by a blackhole).
    public var openConnections: Int { shared.control.withLock { $0.openConnections } }
    /// Bytes written to the target so far.
    public var bytesToTarget: Int { shared.control.withLock { $0.bytesToTarget } }
    /// Bytes written back to clients so far.
    public var bytesFromTarget: Int { shared.control.withLock { $0.bytesFromTarget } }

    /// Changes the control state and waits until the proxy's thread has applied it.
    private func command(_ change: (inout ProxyControl) -> Void) {
        let applied = DispatchSemaphore(value: 0)
        let sent = shared.control.withLock { control in
            guard !control.stopping else { return false }
            change(&control)
            control.waiters.append(applied)
            return true
        }
        guard sent else { return }
        // The thread takes the waiter with the change, even when stop() comes in between.
        shared.wake()
        applied.wait()
    }

    fileprivate static let streamType = Int32(bitPattern: SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue)

    fileprivate static func loopbackAddress(port: Int) -> sockaddr_in {
        sockaddr_in(
            sin_family: sa_family_t(AF_INET), sin_port: in_port_t(UInt16(port).bigEndian),
            sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
    }

    /// Non-blocking and close-on-exec (for the pipe and accepted sockets: accept4(2) and
    /// pipe2(2) are GNU extensions).
    fileprivate static func prepare(_ descriptor: Int32) {
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
        _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
    }
}

/// The state callers change and the proxy's thread reads, under the lock.
private struct ProxyControl {
    var mode: PartitionProxy.Mode = .forwarding
    /// Incremented by each `cut()`: a cut followed at once by a restore still resets.
    var cuts = 0
    var stopping = false
    /// Callers waiting until the thread has applied their change.
    var waiters: [DispatchSemaphore] = []
    var connectionsAccepted = 0
    var connectionsRejected = 0
    var connectionsCut = 0
    var targetFailures = 0
    var acceptFailure: String?
    var openConnections = 0
    var bytesToTarget = 0
    var bytesFromTarget = 0
}

/// What the proxy and its thread share: the control state, the pipe that wakes the thread from
/// poll(2), and the signal that the thread has ended.
private final class Shared: Sendable {
    let control = Mutex(ProxyControl())
    let finished = DispatchSemaphore(value: 0)
    /// The pipe's write end: written and closed under `wakeWriterOpen` only, so a late caller
    /// never writes to a descriptor number that was closed and reused meanwhile.
    private let wakeWriter: Int32
    private let wakeWriterOpen = Mutex(true)

    init(wakeWriter: Int32) {
        self.wakeWriter = wakeWriter
    }

    /// Wakes the thread (a full pipe already will).
    func wake() {
        wakeWriterOpen.withLock { open in
            guard open else { return }
            var byte: UInt8 = 1
            _ = write(wakeWriter, &byte, 1)
        }
    }

    func closeWakeWriter() {
        wakeWriterOpen.withLock { open in
            guard open else { return }
            open = false
            close(wakeWriter)
        }
    }
}

/// The proxy's thread: every socket is opened, used and closed here only.
private final class ProxyLoop {
    private let shared: Shared
    private let listener: Int32
    private let wakeReader: Int32
    private let target: Int
    private var pairs: [ProxiedConnection] = []
    private var appliedCuts = 0
    /// accept(2) failed other than for want of a connection: the next poll leaves the
    /// listener out and waits at most 50 ms.
    private var acceptPaused = false

    init(shared: Shared, listener: Int32, wakeReader: Int32, target: Int) {
        self.shared = shared
        self.listener = listener
        self.wakeReader = wakeReader
        self.target = target
    }

    func run() {
        while true {
            let (mode, cuts, stopping, waiters) = shared.control.withLock { control in
                let taken = control.waiters
                control.waiters = []
                return (control.mode, control.cuts, control.stopping, taken)
            }
            if stopping {
                for pair in pairs { pair.reset() }
                pairs = []
                close(listener)
                close(wakeReader)
                shared.control.withLock { $0.openConnections = 0 }
                for waiter in waiters { waiter.signal() }
                shared.finished.signal()
                return
            }
            if cuts != appliedCuts {
                appliedCuts = cuts
                let count = pairs.count
                shared.control.withLock {
                    $0.connectionsCut += count; $0.openConnections = 0
                }
                for pair in pairs { pair.reset() }
                pairs = []
            }
            for waiter in waiters { waiter.signal() }
            serveOnce(mode)
        }
    }

    private static let readable = Int16(POLLIN)
    private static let writable = Int16(POLLOUT)

    /// Waits for the next event and handles it: control changes, new connections, bytes to move.
    private func serveOnce(_ mode: PartitionProxy.Mode) {
        var descriptors = [pollfd(fd: wakeReader, events: Self.readable, revents: 0)]
        // Blackholed: nothing but the wake pipe is watched; new connections wait in the backlog
        // (as they do for the pause after accept(2) failed).
        let accepting = mode != .blackholed && !acceptPaused
        descriptors.append(pollfd(fd: accepting ? listener : -1, events: Self.readable, revents: 0))
        let timeout: Int32 = acceptPaused ? 50 : -1
        acceptPaused = false
        let watched = mode == .forwarding ? pairs : []
        for pair in watched {
            let interest = pair.interest()
            // A side with nothing to wait for is left out (-1), so that its hang-up does not
            // wake the loop again and again while the other side is still busy.
            descriptors.append(pollfd(fd: interest.client == 0 ? -1 : pair.client, events: interest.client, revents: 0))
            descriptors.append(pollfd(fd: interest.upstream == 0 ? -1 : pair.upstream, events: interest.upstream, revents: 0))
        }
        guard poll(&descriptors, nfds_t(descriptors.count), timeout) > 0 else { return }  // EINTR or the pause's end: look again
        if descriptors[0].revents != 0 { drainWakePipe() }
        if accepting, descriptors[1].revents != 0 { acceptWaiting(resetting: mode == .cut) }
        var toTarget = 0, fromTarget = 0
        for (index, pair) in watched.enumerated() {
            let moved = pair.handle(
                clientEvents: descriptors[2 + 2 * index].revents, upstreamEvents: descriptors[3 + 2 * index].revents,
                shared: shared)
            toTarget += moved.toTarget
            fromTarget += moved.toClient
        }
        pairs.removeAll { $0.isClosed }
        let open = pairs.count
        shared.control.withLock {
            $0.bytesToTarget += toTarget
            $0.bytesFromTarget += fromTarget
            $0.openConnections = open
        }
    }

    private func drainWakePipe() {
        var bytes = [UInt8](repeating: 0, count: 64)
        while read(wakeReader, &bytes, bytes.count) > 0 {}
    }

    /// Accepts every connection waiting; each gets a connection to the target, or a reset.
    private func acceptWaiting(resetting: Bool) {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                let failure = errno
                if failure == EINTR || failure == ECONNABORTED { continue }
                if failure != EAGAIN && failure != EWOULDBLOCK {
                    shared.control.withLock { $0.acceptFailure = String(cString: strerror(failure)) }
                    acceptPaused = true
                }
                return  // EAGAIN: none left
            }
            PartitionProxy.prepare(client)
            ProxiedConnection.setNoDelay(client)
            // Counted before the reset goes out: a test that saw the reset reads the count.
            if resetting {
                shared.control.withLock {
                    $0.connectionsAccepted += 1; $0.connectionsRejected += 1
                }
                ProxiedConnection.closeWithReset(client)
                continue
            }
            guard let upstream = ProxiedConnection.dial(port: target) else {
                shared.control.withLock {
                    $0.connectionsAccepted += 1; $0.targetFailures += 1
                }
                ProxiedConnection.closeWithReset(client)
                continue
            }
            pairs.append(ProxiedConnection(client: client, upstream: upstream.descriptor, connecting: upstream.connecting))
            let open = pairs.count
            shared.control.withLock {
                $0.connectionsAccepted += 1; $0.openConnections = open
            }
        }
    }
}

/// One client connection and its connection to the target, used on the proxy's thread only.
private final class ProxiedConnection {
    let client: Int32
    let upstream: Int32
    /// The connection to the target is not set up yet (non-blocking connect).
    private var connecting: Bool
    private var toTarget = Flow()
    private var toClient = Flow()
    private(set) var isClosed = false

    /// One direction: bytes read from one side and not yet all written to the other.
    struct Flow {
        var pending: [UInt8] = []
        var written = 0
        /// The source sent its FIN.
        var ended = false
        /// The FIN was passed on (shutdown for writing).
        var passedOn = false
        var hasPending: Bool { written < pending.count }
        var done: Bool { ended && passedOn }
    }

    init(client: Int32, upstream: Int32, connecting: Bool) {
        self.client = client
        self.upstream = upstream
        self.connecting = connecting
    }

    /// What poll(2) should wait for on each side: reading while nothing waits to be written
    /// (the socket buffers give the back-pressure), writing while something waits.
    func interest() -> (client: Int16, upstream: Int16) {
        let readable = Int16(POLLIN), writable = Int16(POLLOUT)
        if connecting { return (0, writable) }
        var onClient: Int16 = 0, onUpstream: Int16 = 0
        if !toTarget.ended && !toTarget.hasPending { onClient |= readable }
        if toTarget.hasPending { onUpstream |= writable }
        if !toClient.ended && !toClient.hasPending { onUpstream |= readable }
        if toClient.hasPending { onClient |= writable }
        return (onClient, onUpstream)
    }

    /// Moves what it can after poll(2) reported events; returns the bytes written each way.
    /// A side that breaks resets the other; both ends closed cleanly closes the pair. A target
    /// that refuses the connection is counted in `shared` (before the client's reset goes out).
    func handle(clientEvents: Int16, upstreamEvents: Int16, shared: Shared) -> (toTarget: Int, toClient: Int) {
        guard !isClosed else { return (0, 0) }
        if connecting {
            guard upstreamEvents != 0 else { return (0, 0) }
            var failure: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(upstream, SOL_SOCKET, SO_ERROR, &failure, &length) == 0, failure == 0 else {
                shared.control.withLock { $0.targetFailures += 1 }
                reset()
                return (0, 0)
            }
            connecting = false
            return (0, 0)
        }
        guard let sentUp = Self.pump(&toTarget, from: client, ready: clientEvents != 0, to: upstream),
            let sentDown = Self.pump(&toClient, from: upstream, ready: upstreamEvents != 0, to: client)
        else {
            reset()
            return (0, 0)
        }
        if toTarget.done && toClient.done {
            isClosed = true
            close(client)
            close(upstream)
        }
        return (sentUp, sentDown)
    }

    /// Reads from `source` when something may have come and nothing waits, then writes what
    /// waits to `destination` (non-blocking: what does not fit waits for the next round).
    /// Returns the bytes written, or nil when either side broke.
    private static func pump(_ flow: inout Flow, from source: Int32, ready: Bool, to destination: Int32) -> Int? {
        if ready && !flow.ended && !flow.hasPending {
            var count = 0
            var failure: Int32 = 0
            let bytes = [UInt8](unsafeUninitializedCapacity: 65_536) { buffer, initialized in
                count = recv(source, buffer.baseAddress, buffer.count, 0)
                failure = errno
                initialized = max(count, 0)
            }
            if count > 0 {
                flow.pending = bytes
                flow.written = 0
            } else if count == 0 {
                flow.ended = true
            } else if !wouldBlock(failure) {
                return nil
            }
        }
        var sent = 0
        if flow.hasPending {
            let offset = flow.written
            let (count, failure) = flow.pending.withUnsafeBytes { all in
                let rest = UnsafeRawBufferPointer(rebasing: all[offset...])
                let written = send(destination, rest.baseAddress, rest.count, Int32(MSG_NOSIGNAL))
                return (written, errno)
            }
            if count > 0 {
                flow.written += count
                sent = count
                if !flow.hasPending { flow.pending = [] }
            } else if count < 0 && !wouldBlock(failure) {
                return nil
            }
        }
        if flow.ended && !flow.hasPending && !flow.passedOn {
            _ = shutdown(destination, Int32(SHUT_WR))
            flow.passedOn = true
        }
        return sent
    }

    private static func wouldBlock(_ error: Int32) -> Bool {
        error == EAGAIN || error == EWOULDBLOCK || error == EINTR
    }

    /// Resets both sides (RST), once.
    func reset() {
        guard !isClosed else { return }
        isClosed = true
        Self.closeWithReset(client)
        Self.closeWithReset(upstream)
    }

    /// Closes `descriptor` with a reset (`SO_LINGER` 0: RST, what was not read is thrown away).
    static func closeWithReset(_ descriptor: Int32) {
        var option = linger(l_onoff: 1, l_linger: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
        close(descriptor)
    }

    /// Small writes go out at once (a client waiting for the answer to one query would
    /// otherwise wait for Nagle's algorithm and a delayed ACK).
    static func setNoDelay(_ descriptor: Int32) {
        var on: Int32 = 1
        setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
    }

    /// A non-blocking connection to 127.0.0.1:`port`, set up or under way; nil when refused.
    static func dial(port: Int) -> (descriptor: Int32, connecting: Bool)? {
        let descriptor = socket(AF_INET, PartitionProxy.streamType, 0)
        guard descriptor >= 0 else { return nil }
        setNoDelay(descriptor)
        var address = PartitionProxy.loopbackAddress(port: port)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        let failure = errno
        if result == 0 { return (descriptor, false) }
        if failure == EINPROGRESS { return (descriptor, true) }
        close(descriptor)
        return nil
    }
}
