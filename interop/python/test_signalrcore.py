"""signalrcore, a Python SignalR client from PyPI, against a three-node raftplane cluster.

Run by interop/python_test.go (go test ./interop -run PythonClient), which starts the cluster and
passes RAFTPLANE_NODES, RAFTPLANE_API_KEY, RAFTPLANE_CONTROL and RAFTPLANE_MAX_MESSAGE_SIZE. Each
scenario runs for every transport x protocol pair the client can do (see PAIRS). Every wait is
bounded by WAIT; a message that must not arrive is proven absent by a marker sent after it, since
every connection receives in log order.
"""

import json
import os
import queue
import threading
import unittest
import urllib.error
import urllib.parse
import urllib.request
import uuid

from signalrcore.hub_connection_builder import HubConnectionBuilder
from signalrcore.messages.close_message import CloseMessage
from signalrcore.protocol.json_hub_protocol import JsonHubProtocol
from signalrcore.protocol.messagepack_protocol import MessagePackHubProtocol
from signalrcore.types import HttpTransportType

WAIT = 20.0  # seconds: a commit plus delivery, with room for a loaded CI machine
HUB = "python"

# (transport, protocol) pairs. Not here: long polling with MessagePack, which the client cannot
# start (README, "Client compatibility"); SSE with MessagePack, which negotiate does not offer.
PAIRS = [
    ("WebSockets", "json"),
    ("WebSockets", "messagepack"),
    ("ServerSentEvents", "json"),
    ("LongPolling", "json"),
]


def unique(prefix):
    """A name no other test uses, so tests never see each other's messages."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Cluster:
    """The cluster the Go test started, read from the environment."""

    def __init__(self):
        def need(name):
            v = os.environ.get(name, "")
            if not v:
                raise RuntimeError(
                    f"{name} is not set: run these tests through "
                    "`go test ./interop -run PythonClient`, which starts the cluster")
            return v

        self.nodes = need("RAFTPLANE_NODES").split(",")
        if len(self.nodes) < 3:
            raise RuntimeError(f"RAFTPLANE_NODES must name three nodes, got {self.nodes}")
        self.api_key = need("RAFTPLANE_API_KEY")
        self.control_url = need("RAFTPLANE_CONTROL")
        self.max_message_size = int(need("RAFTPLANE_MAX_MESSAGE_SIZE"))

    def hub_url(self, node, user=None):
        url = f"{self.nodes[node]}/hubs/{HUB}"
        if user is not None:
            url += "?" + urllib.parse.urlencode({"user": user})
        return url

    def rest(self, node, method, path, body=None):
        """One REST call to node with the API key; returns the 200 answer's body."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.nodes[node] + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + self.api_key)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=WAIT) as resp:
                return resp.read().decode()
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} {path} on node {node}: {e.code} {e.read().decode()}") from e

    def control(self, op, node):
        """Asks the Go test to stop node gracefully (SIGTERM) or start it again."""
        req = urllib.request.Request(f"{self.control_url}/{op}?node={node}", data=b"", method="POST")
        try:
            # A restart waits for the node to rejoin and catch up.
            with urllib.request.urlopen(req, timeout=90) as resp:
                if resp.status != 204:
                    raise AssertionError(f"control {op} node {node}: {resp.status}")
        except urllib.error.HTTPError as e:
            raise AssertionError(f"control {op} node {node}: {e.code} {e.read().decode()}") from e


class Inbox:
    """What one connection received for one target, in arrival order."""

    def __init__(self, name):
        self.name = name
        self.q = queue.Queue()

    def add(self, args):  # signalrcore passes the arguments as one list
        self.q.put(args[0] if len(args) == 1 else args)

    def next(self):
        try:
            return self.q.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"{self.name}: nothing received within {WAIT}s") from None

    def expect(self, *want):
        got = [self.next() for _ in want]
        if got != list(want):
            raise AssertionError(f"{self.name}: got {got}, want {list(want)}")


def stop_all(clients):
    """Stops clients at once (each stop waits for the server's next frame, see Client.stop) and
    raises the first failure."""
    errors = []

    def stop(c):
        try:
            c.stop()
        except Exception as e:  # reported below, after every stop has returned
            errors.append(e)

    threads = [threading.Thread(target=stop, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


class InvocationError(Exception):
    """A Completion with an error."""


def recording_protocol(protocol):
    """The client's own protocol object for protocol ("json" or "messagepack"), made as the client
    makes it by default: with the negotiate version as its handshake version
    (protocol_factory.py:50), 0 here, since the client does not ask for negotiate version 1. It
    also records the Close messages it parses in .closes: the client does not expose them (the
    connection only disposes its transport, base_hub_connection.py:391). The method is wrapped on
    the instance, not in a subclass: the WebSocket transport picks binary frames by
    `type(protocol) is MessagePackHubProtocol` (websocket_transport.py create_client)."""
    p = MessagePackHubProtocol(version=0) if protocol == "messagepack" else JsonHubProtocol(version=0)
    p.closes = queue.Queue()
    parse = p.parse_messages

    def parse_and_record(raw):
        msgs = parse(raw)
        for m in msgs:
            if isinstance(m, CloseMessage):
                p.closes.put(m)
        return msgs

    p.parse_messages = parse_and_record
    return p


class Client:
    """One signalrcore connection with the waits the tests need."""

    def __init__(self, cluster, node, transport, protocol, user=None):
        self.proto = recording_protocol(protocol)
        self.conn = (HubConnectionBuilder()
                     .with_url(cluster.hub_url(node, user),
                               options={"transport": HttpTransportType(transport)})
                     .with_hub_protocol(self.proto)
                     .build())
        self.opened = threading.Event()
        self.closed = threading.Event()
        self.conn.on_open(self.opened.set)
        self.conn.on_close(self.closed.set)
        self.conn.on_error(self._on_error)
        self._pending = {}
        self._lock = threading.Lock()

    def on(self, target, name):
        inbox = Inbox(name)
        self.conn.on(target, inbox.add)
        return inbox

    def start(self):
        self.conn.start()
        if not self.opened.wait(WAIT):
            raise AssertionError(f"connection not open within {WAIT}s")

    def stop(self):
        """Stops the connection; a stop that hangs fails the test instead of the whole run. The
        client's stop returns once the server next writes (base_socket_client.py dispose closes
        the socket under its blocked reader thread and joins it): the Go test runs the cluster
        with a 1 s -keepalive for that."""
        if self.closed.is_set():
            return
        t = threading.Thread(target=self.conn.stop, daemon=True)
        t.start()
        t.join(WAIT)
        if t.is_alive():
            raise AssertionError(f"stop did not return within {WAIT}s")

    def expect_close(self, transport, error_part, allow_reconnect):
        """Waits for the Close message (error containing error_part, allowReconnect as given) and
        for on_close. Over Server-Sent Events only on_close is checked: when the Close message and
        the end of the stream arrive in one read, the client raises on the final chunk before it
        hands over the data before it (sse_client.py _decode_chunks, `if chunk_size == 0`), so the
        message is lost on its side."""
        if transport != "ServerSentEvents":
            try:
                close = self.proto.closes.get(timeout=WAIT)
            except queue.Empty:
                raise AssertionError(f"no Close message within {WAIT}s") from None
            if error_part not in (close.error or "") or bool(close.allow_reconnect) != allow_reconnect:
                raise AssertionError(f"Close error={close.error!r} allowReconnect={close.allow_reconnect!r}, "
                                     f"want an error with {error_part!r} and allowReconnect={allow_reconnect}")
        if not self.closed.wait(WAIT):
            raise AssertionError(f"on_close not called within {WAIT}s")

    def connection_id(self):
        # The client does not send negotiateVersion, so the server answers version 0, whose
        # connectionId is the id the client sends back and the one the server knows it by.
        return self.conn.transport.connection_id

    def invoke(self, method, *args):
        """Invokes method and returns its result, or raises InvocationError."""
        done = queue.Queue(1)
        inv_id = str(uuid.uuid4())
        with self._lock:
            self._pending[inv_id] = done
        self.conn.invoke(method, list(args),
                         on_invocation=lambda m: done.put(("ok", m.result)),
                         invocation_id=inv_id)
        try:
            kind, value = done.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"{method}: no completion within {WAIT}s") from None
        finally:
            with self._lock:
                self._pending.pop(inv_id, None)
        if kind == "error":
            raise InvocationError(value)
        return value

    def cursor_of(self, method, *args):
        """Invokes method and checks that it completed with a cursor."""
        c = self.invoke(method, *args)
        if not isinstance(c, str) or c.count(":") != 2:
            raise AssertionError(f"{method} returned {c!r}, want a cursor")
        return c

    def _on_error(self, msg):
        # Completions with an error come here, not to the invocation's callback
        # (base_hub_connection.py __on_completion_message).
        with self._lock:
            q = self._pending.get(getattr(msg, "invocation_id", None))
        if q is not None:
            q.put(("error", msg.error))


class Scenarios:
    """Every scenario, run once per PAIRS entry by the classes made below."""

    transport = None
    protocol = None

    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster()

    def setUp(self):
        self.clients = []

    def tearDown(self):
        stop_all(self.clients)

    def client(self, node, user=None, transport=None, protocol=None):
        c = Client(self.cluster, node, transport or self.transport, protocol or self.protocol, user)
        self.clients.append(c)
        return c

    def test_group_message_from_another_node(self):
        group = unique("g")
        a = self.client(0)
        got = a.on("onGroup", "a on node 0")
        a.start()
        a.cursor_of("JoinGroup", group)
        b = self.client(1)
        b_got = b.on("onGroup", "b on node 1")
        b.start()
        b.cursor_of("SendToGroup", group, "onGroup", "hello")
        got.expect("hello")
        # b is not in the group: the next thing it gets is its own marker, later in the log.
        b.cursor_of("SendToConnection", b.connection_id(), "onGroup", "marker")
        b_got.expect("marker")

    def test_rest_broadcast_reaches_every_node(self):
        token = unique("b")
        inboxes = []
        for node in (0, 1):
            c = self.client(node)
            inboxes.append(c.on("onBroadcast", f"client on node {node}"))
            c.start()
        body = self.cluster.rest(2, "POST", f"/api/v1/hubs/{HUB}",
                                 {"target": "onBroadcast", "arguments": [token]})
        self.assertIn('"cursor"', body)
        for inbox in inboxes:
            inbox.expect(token)

    def test_send_to_user(self):
        alice, bob = unique("alice"), unique("bob")
        alice_inboxes = []
        for node in (0, 2):
            c = self.client(node, user=alice)
            alice_inboxes.append(c.on("onDirect", f"alice on node {node}"))
            c.start()
        b = self.client(1, user=bob)
        bob_inbox = b.on("onDirect", "bob")
        b.start()
        b.cursor_of("SendToUser", alice, "onDirect", "hi alice")
        for inbox in alice_inboxes:
            inbox.expect("hi alice")
        b.cursor_of("SendToUser", bob, "onDirect", "marker")
        bob_inbox.expect("marker")

    def test_invocation_errors_reject_the_invocation_only(self):
        c = self.client(1)
        c.start()
        with self.assertRaises(InvocationError) as e:
            c.invoke("NoSuchMethod", "x")
        self.assertIn("NoSuchMethod", str(e.exception))
        with self.assertRaises(InvocationError) as e:
            c.invoke("JoinGroup")
        self.assertIn("JoinGroup", str(e.exception))
        with self.assertRaises(InvocationError) as e:
            c.invoke("JoinGroup", 42)
        self.assertIn("JoinGroup", str(e.exception))
        c.cursor_of("JoinGroup", unique("g"))  # still usable

    def test_message_over_the_size_limit_is_rejected(self):
        group = unique("g")
        c = self.client(0)
        got = c.on("onGroup", "sender")
        c.start()
        c.cursor_of("JoinGroup", group)
        with self.assertRaises(InvocationError) as e:
            c.invoke("SendToGroup", group, "onGroup", "x" * (self.cluster.max_message_size + 1))
        self.assertIn("maximum message size", str(e.exception))
        # Rejected, not sent, and the connection stays up: the group's next message is "small".
        c.cursor_of("SendToGroup", group, "onGroup", "small")
        got.expect("small")

    def test_rest_close_ends_the_connection_with_its_reason(self):
        c = self.client(1)
        c.start()
        self.cluster.rest(0, "DELETE", f"/api/v1/hubs/{HUB}/connections/{c.connection_id()}?reason=go-away")
        # No allowReconnect, as ASP.NET Core's HubConnectionContext.Abort().
        c.expect_close(self.transport, "go-away", allow_reconnect=False)


for _transport, _protocol in PAIRS:
    _name = f"Test_{_transport}_{_protocol}"
    globals()[_name] = type(_name, (Scenarios, unittest.TestCase),
                            {"transport": _transport, "protocol": _protocol})


class TestGracefulStop(unittest.TestCase):
    """SIGTERM of node 2: its connections (one per pair the client can start) get a Close with
    allowReconnect and end; the application then connects to another node and receives there.
    Node 2 is started again before the test ends."""

    def test_graceful_stop_closes_with_allow_reconnect(self):
        cluster = Cluster()
        clients = [Client(cluster, 2, t, p) for t, p in PAIRS]
        try:
            for c in clients:
                c.start()
            cluster.control("stop", 2)
            try:
                for c, (t, p) in zip(clients, PAIRS):
                    with self.subTest(transport=t, protocol=p):
                        c.expect_close(t, "shutting down", allow_reconnect=True)
                group = unique("g")
                again = Client(cluster, 0, "WebSockets", "json")
                clients.append(again)
                got = again.on("onGroup", "reconnected client")
                again.start()
                again.cursor_of("JoinGroup", group)
                sender = Client(cluster, 1, "ServerSentEvents", "json")
                clients.append(sender)
                sender.start()
                sender.cursor_of("SendToGroup", group, "onGroup", "after the stop")
                got.expect("after the stop")
            finally:
                cluster.control("start", 2)
        finally:
            stop_all(clients)


if __name__ == "__main__":
    unittest.main()
