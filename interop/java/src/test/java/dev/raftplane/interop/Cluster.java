package dev.raftplane.interop;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import com.microsoft.signalr.HubConnection;
import com.microsoft.signalr.HubConnectionBuilder;
import com.microsoft.signalr.HubConnectionState;
import com.microsoft.signalr.HubProtocol;
import com.microsoft.signalr.HttpHubConnectionBuilder;
import com.microsoft.signalr.TransportEnum;
import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.TimeUnit;

/**
 * The cluster the Go test (interop/java_test.go) started: its nodes, REST API and control endpoint,
 * read from the environment. Every wait here is bounded by {@link #WAIT}.
 */
final class Cluster {
    /** How long a step may take before the test fails: a commit plus delivery, with room for a loaded CI machine. */
    static final Duration WAIT = Duration.ofSeconds(20);

    private static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

    final List<String> nodes;
    final String apiKey;
    final String control;
    final int maxMessageSize;

    private Cluster(List<String> nodes, String apiKey, String control, int maxMessageSize) {
        this.nodes = nodes;
        this.apiKey = apiKey;
        this.control = control;
        this.maxMessageSize = maxMessageSize;
    }

    /** Reads RAFTPLANE_NODES, RAFTPLANE_API_KEY, RAFTPLANE_CONTROL and RAFTPLANE_MAX_MESSAGE_SIZE. */
    static Cluster fromEnv() {
        String nodes = require("RAFTPLANE_NODES");
        List<String> list = Arrays.asList(nodes.split(","));
        if (list.size() < 3) {
            fail("RAFTPLANE_NODES must name three nodes, got " + nodes);
        }
        int max;
        try {
            max = Integer.parseInt(require("RAFTPLANE_MAX_MESSAGE_SIZE"));
        } catch (NumberFormatException e) {
            throw new AssertionError("RAFTPLANE_MAX_MESSAGE_SIZE is not a number", e);
        }
        return new Cluster(list, require("RAFTPLANE_API_KEY"), require("RAFTPLANE_CONTROL"), max);
    }

    private static String require(String name) {
        String v = System.getenv(name);
        if (v == null || v.isEmpty()) {
            fail(name + " is not set: run these tests through `go test ./interop -run JavaClient`, which starts the cluster");
        }
        return v;
    }

    /** A name no other test uses (groups, users), so tests never see each other's messages. */
    static String unique(String prefix) {
        return prefix + "-" + UUID.randomUUID().toString().substring(0, 8);
    }

    /** The hub URL on node i, with an optional user (the server runs open: ?user= names it). */
    String hubUrl(int node, String hub, String user) {
        String url = nodes.get(node) + "/hubs/" + hub;
        if (user != null) {
            url += "?user=" + URLEncoder.encode(user, StandardCharsets.UTF_8);
        }
        return url;
    }

    /**
     * Builds a connection to node i over transport, with protocol (null: the client's default,
     * GsonHubProtocol); the caller registers handlers, then {@link #start}s it.
     */
    HubConnection build(int node, String hub, String user, TransportEnum transport, HubProtocol protocol) {
        HttpHubConnectionBuilder b = HubConnectionBuilder.create(hubUrl(node, hub, user))
                .withTransport(transport)
                .withHandshakeResponseTimeout(WAIT.toMillis());
        if (protocol != null) {
            b.withHubProtocol(protocol);
        }
        return b.build();
    }

    static void start(HubConnection c) {
        if (!c.start().blockingAwait(WAIT.toMillis(), TimeUnit.MILLISECONDS)) {
            fail("start did not complete within " + WAIT);
        }
        assertEquals(HubConnectionState.CONNECTED, c.getConnectionState());
    }

    static void stopQuietly(HubConnection c) {
        if (c != null && c.getConnectionState() != HubConnectionState.DISCONNECTED) {
            c.stop().blockingAwait(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        }
    }

    /** Sends one REST request to node i with the API key and returns the 200 answer's body. */
    String rest(int node, String method, String path, String jsonBody) {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(nodes.get(node) + path))
                .timeout(WAIT)
                .header("Authorization", "Bearer " + apiKey);
        if (jsonBody != null) {
            b.header("Content-Type", "application/json");
            b.method(method, HttpRequest.BodyPublishers.ofString(jsonBody));
        } else {
            b.method(method, HttpRequest.BodyPublishers.noBody());
        }
        HttpResponse<String> resp = send(b.build());
        if (resp.statusCode() != 200) {
            fail(method + " " + path + " on node " + node + ": " + resp.statusCode() + " " + resp.body());
        }
        return resp.body();
    }

    /** Asks the Go test to stop node i gracefully (SIGTERM) or start it again; returns once it is done. */
    void control(String op, int node) {
        HttpRequest req = HttpRequest.newBuilder(URI.create(control + "/" + op + "?node=" + node))
                .timeout(Duration.ofSeconds(90)) // a restart waits for the node to rejoin and catch up
                .POST(HttpRequest.BodyPublishers.noBody())
                .build();
        HttpResponse<String> resp = send(req);
        if (resp.statusCode() != 204) {
            fail("control " + op + " node " + node + ": " + resp.statusCode() + " " + resp.body());
        }
    }

    private static HttpResponse<String> send(HttpRequest req) {
        try {
            return HTTP.send(req, HttpResponse.BodyHandlers.ofString());
        } catch (IOException e) {
            throw new AssertionError(req.method() + " " + req.uri() + ": " + e, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted", e);
        }
    }

    /** A JSON string literal (for the REST bodies the tests write by hand). */
    static String json(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char ch : s.toCharArray()) {
            switch (ch) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                default -> {
                    if (ch < 0x20) {
                        b.append(String.format("\\u%04x", (int) ch));
                    } else {
                        b.append(ch);
                    }
                }
            }
        }
        return b.append('"').toString();
    }
}
