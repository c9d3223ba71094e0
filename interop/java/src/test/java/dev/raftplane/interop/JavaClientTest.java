package dev.raftplane.interop;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.microsoft.signalr.HubConnection;
import com.microsoft.signalr.HubException;
import com.microsoft.signalr.TransportEnum;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The official Java client against a three-node raftplane cluster, over both transports it has
 * (WebSockets and long polling) with its only protocol, JSON. MessagePack for Java
 * (com.microsoft.signalr.messagepack:signalr-messagepack) is not served by the registry these
 * machines reach, so it is not tested here. Every test uses its own group and user names.
 */
class JavaClientTest {
    private static final String HUB = "java";
    private final Cluster cluster = Cluster.fromEnv();
    private final List<HubConnection> open = new ArrayList<>();

    @AfterEach
    void stopAll() {
        open.forEach(Cluster::stopQuietly);
    }

    /** A connection to node i with the header-dropping protocol (see {@link HeaderDroppingProtocol}). */
    private HubConnection conn(int node, String user, TransportEnum t, HeaderDroppingProtocol p) {
        HubConnection c = cluster.build(node, HUB, user, t, p);
        open.add(c);
        return c;
    }

    private HubConnection conn(int node, String user, TransportEnum t) {
        return conn(node, user, t, new HeaderDroppingProtocol());
    }

    /** Invokes method and checks that it completed with a cursor. */
    private static String cursorOf(HubConnection c, String method, Object... args) {
        String cursor = c.invoke(String.class, method, args).blockingGet();
        assertTrue(cursor != null && cursor.matches("[0-9a-f]+:[0-9]+:[0-9]+"), method + " returned " + cursor);
        return cursor;
    }

    /** A future completed with the connection's close error (or "" for none) when it closes. */
    private static CompletableFuture<String> closed(HubConnection c) {
        CompletableFuture<String> f = new CompletableFuture<>();
        c.onClosed(ex -> f.complete(ex == null ? "" : String.valueOf(ex.getMessage())));
        return f;
    }

    private static <T> T await(CompletableFuture<T> f, String what) {
        try {
            return f.get(Cluster.WAIT.toMillis(), TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            throw new AssertionError(what + ": not within " + Cluster.WAIT, e);
        } catch (ExecutionException e) {
            throw new AssertionError(what + ": " + e.getCause(), e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted", e);
        }
    }

    @ParameterizedTest(name = "{0}")
    @EnumSource(value = TransportEnum.class, names = {"WEBSOCKETS", "LONG_POLLING"})
    void groupMessageFromAnotherNode(TransportEnum t) {
        String group = Cluster.unique("g");
        HubConnection a = conn(0, null, t);
        Inbox got = new Inbox("a on node 0");
        a.on("onGroup", got::add, String.class);
        Cluster.start(a);
        cursorOf(a, "JoinGroup", group);
        HubConnection b = conn(1, null, t);
        Inbox bGot = new Inbox("b on node 1");
        b.on("onGroup", bGot::add, String.class);
        Cluster.start(b);
        cursorOf(b, "SendToGroup", group, "onGroup", "hello");
        got.expect("hello");
        // b is not in the group: the next thing b gets is its own marker, sent after "hello" in the log.
        cursorOf(b, "SendToConnection", b.getConnectionId(), "onGroup", "marker");
        bGot.expect("marker");
    }

    @ParameterizedTest(name = "{0}")
    @EnumSource(value = TransportEnum.class, names = {"WEBSOCKETS", "LONG_POLLING"})
    void restBroadcastReachesEveryNode(TransportEnum t) {
        String token = Cluster.unique("b");
        List<Inbox> inboxes = new ArrayList<>();
        for (int node = 0; node < 2; node++) {
            HubConnection c = conn(node, null, t);
            Inbox in = new Inbox("client on node " + node);
            c.on("onBroadcast", in::add, String.class);
            Cluster.start(c);
            inboxes.add(in);
        }
        String body = cluster.rest(2, "POST", "/api/v1/hubs/" + HUB,
                "{\"target\":\"onBroadcast\",\"arguments\":[" + Cluster.json(token) + "]}");
        assertTrue(body.contains("\"cursor\""), "REST broadcast answered " + body);
        for (Inbox in : inboxes) {
            in.expect(token);
        }
    }

    @ParameterizedTest(name = "{0}")
    @EnumSource(value = TransportEnum.class, names = {"WEBSOCKETS", "LONG_POLLING"})
    void sendToUserReachesEveryConnectionOfThatUser(TransportEnum t) {
        String alice = Cluster.unique("alice");
        String bob = Cluster.unique("bob");
        List<Inbox> aliceInboxes = new ArrayList<>();
        for (int node : new int[] {0, 2}) {
            HubConnection c = conn(node, alice, t);
            Inbox in = new Inbox("alice on node " + node);
            c.on("onDirect", in::add, String.class);
            Cluster.start(c);
            aliceInboxes.add(in);
        }
        HubConnection b = conn(1, bob, t);
        Inbox bobInbox = new Inbox("bob");
        b.on("onDirect", bobInbox::add, String.class);
        Cluster.start(b);
        cursorOf(b, "SendToUser", alice, "onDirect", "hi alice");
        for (Inbox in : aliceInboxes) {
            in.expect("hi alice");
        }
        cursorOf(b, "SendToUser", bob, "onDirect", "marker");
        bobInbox.expect("marker");
    }

    @ParameterizedTest(name = "{0}")
    @EnumSource(value = TransportEnum.class, names = {"WEBSOCKETS", "LONG_POLLING"})
    void invocationErrorsRejectTheInvocationOnly(TransportEnum t) {
        HubConnection c = conn(1, null, t);
        Cluster.start(c);
        HubException unknown = assertThrows(HubException.class,
                () -> c.invoke(String.class, "NoSuchMethod", "x").blockingGet());
        assertTrue(unknown.getMessage().contains("NoSuchMethod"), unknown.getMessage());
        HubException missing = assertThrows(HubException.class,
                () -> c.invoke(String.class, "JoinGroup").blockingGet());
        assertTrue(missing.getMessage().contains("JoinGroup"), missing.getMessage());
        HubException wrongType = assertThrows(HubException.class,
                () -> c.invoke(String.class, "JoinGroup", 42).blockingGet());
        assertTrue(wrongType.getMessage().contains("JoinGroup"), wrongType.getMessage());
        // The connection is still usable.
        cursorOf(c, "JoinGroup", Cluster.unique("g"));
    }

    @ParameterizedTest(name = "{0}")
    @EnumSource(value = TransportEnum.class, names = {"WEBSOCKETS", "LONG_POLLING"})
    void messageOverTheSizeLimitIsRejected(TransportEnum t) {
        String group = Cluster.unique("g");
        HubConnection c = conn(0, null, t);
        Inbox got = new Inbox("sender");
        c.on("onGroup", got::add, String.class);
        Cluster.start(c);
        cursorOf(c, "JoinGroup", group);
        String big = "x".repeat(cluster.maxMessageSize + 1);
        HubException e = assertThrows(HubException.class,
                () -> c.invoke(String.class, "SendToGroup", group, "onGroup", big).blockingGet());
        assertTrue(e.getMessage().contains("maximum message size"), e.getMessage());
        // Rejected, not sent, and the connection stays up: the next thing the group gets is "small".
        cursorOf(c, "SendToGroup", group, "onGroup", "small");
        got.expect("small");
    }

    @ParameterizedTest(name = "{0}")
    @EnumSource(value = TransportEnum.class, names = {"WEBSOCKETS", "LONG_POLLING"})
    void restCloseEndsTheConnectionWithItsReason(TransportEnum t) {
        HeaderDroppingProtocol p = new HeaderDroppingProtocol();
        HubConnection c = conn(1, null, t, p);
        CompletableFuture<String> closed = closed(c);
        Cluster.start(c);
        cluster.rest(0, "DELETE", "/api/v1/hubs/" + HUB + "/connections/" + c.getConnectionId() + "?reason=go-away", null);
        String err = await(closed, "onClosed after REST DELETE");
        assertTrue(err.contains("go-away"), "close error: " + err);
        HeaderDroppingProtocol.Close close = p.closes.poll();
        assertTrue(close != null && close.error().contains("go-away") && !close.allowReconnect(),
                "the Close message: " + close + " (ASP.NET Core's Abort sends no allowReconnect)");
    }

    /**
     * SIGTERM of node 2: every connection on it gets a Close with allowReconnect. The Java client
     * has no automatic reconnect (HubConnection.java:1660, "We don't have reconnect yet"), so it
     * fires onClosed with the server's error and the application starts a new connection, which
     * works on another node. Node 2 is started again before the test ends.
     */
    @Test
    void gracefulStopClosesWithAllowReconnect() {
        String group = Cluster.unique("g");
        List<CompletableFuture<String>> closes = new ArrayList<>();
        List<HeaderDroppingProtocol> protos = new ArrayList<>();
        for (TransportEnum t : new TransportEnum[] {TransportEnum.WEBSOCKETS, TransportEnum.LONG_POLLING}) {
            HeaderDroppingProtocol p = new HeaderDroppingProtocol();
            HubConnection c = conn(2, null, t, p);
            closes.add(closed(c));
            protos.add(p);
            Cluster.start(c);
        }
        cluster.control("stop", 2);
        try {
            for (int i = 0; i < closes.size(); i++) {
                String err = await(closes.get(i), "onClosed after SIGTERM");
                assertTrue(err.contains("shutting down"), "close error: " + err);
                HeaderDroppingProtocol.Close close = protos.get(i).closes.poll();
                assertTrue(close != null && close.allowReconnect(), "the Close message: " + close);
            }
            // The application reconnects by itself, elsewhere.
            HubConnection again = conn(0, null, TransportEnum.WEBSOCKETS);
            Inbox got = new Inbox("reconnected client");
            again.on("onGroup", got::add, String.class);
            Cluster.start(again);
            cursorOf(again, "JoinGroup", group);
            HubConnection sender = conn(1, null, TransportEnum.LONG_POLLING);
            Cluster.start(sender);
            cursorOf(sender, "SendToGroup", group, "onGroup", "after the stop");
            got.expect("after the stop");
        } finally {
            cluster.control("start", 2);
        }
    }

    /**
     * The client exactly as shipped (its default GsonHubProtocol) receiving a group message. Today
     * it cannot: raftplane sends every Invocation with headers (the cursor), and GsonHubProtocol
     * 9.0.3 throws "Headers not implemented yet." (GsonHubProtocol.java:129), which closes the
     * connection. raftplane recognises the client by its User-Agent and leaves the cursor header
     * out for it, as ASP.NET Core sends no headers (hub/authz.go refusesHeaders).
     *
     * <p>WebSockets only: over long polling the same exception is thrown inside an executor task
     * whose Future nobody reads (LongPollingTransport.java:117), so the message vanishes without a
     * trace and only a wait for silence could show it.
     */
    @Test
    void unchangedProtocolReceivesMessages() {
        TransportEnum t = TransportEnum.WEBSOCKETS;
        String group = Cluster.unique("g");
        HubConnection a = cluster.build(0, HUB, null, t, null);
        open.add(a);
        CompletableFuture<String> outcome = new CompletableFuture<>();
        a.on("onGroup", s -> outcome.complete("received " + s), String.class);
        a.onClosed(ex -> outcome.complete("closed: " + (ex == null ? "no error" : ex.getMessage())));
        Cluster.start(a);
        cursorOf(a, "JoinGroup", group);
        HubConnection b = conn(1, null, t);
        Cluster.start(b);
        cursorOf(b, "SendToGroup", group, "onGroup", "hello");
        String got = await(outcome, "the unchanged client's group message");
        assertEquals("received hello", got, "raftplane must send this client Invocations without headers");
    }
}
