package dev.raftplane.interop;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * What one connection received for one target, in arrival order. The server delivers every
 * connection's messages in log order, so "nothing before the marker" proves a message never came:
 * no test waits for silence.
 */
final class Inbox {
    private final String name;
    private final BlockingQueue<String> queue = new LinkedBlockingQueue<>();

    Inbox(String name) {
        this.name = name;
    }

    /** The handler to register: adds one received argument. */
    void add(String arg) {
        queue.add(arg);
    }

    /** Waits up to {@link Cluster#WAIT} for the next message. */
    String next() {
        try {
            String s = queue.poll(Cluster.WAIT.toMillis(), TimeUnit.MILLISECONDS);
            if (s == null) {
                fail(name + ": nothing received within " + Cluster.WAIT);
            }
            return s;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted", e);
        }
    }

    /** Asserts that the next messages are exactly want, in order. */
    void expect(String... want) {
        List<String> got = new ArrayList<>();
        for (int i = 0; i < want.length; i++) {
            got.add(next());
        }
        assertEquals(List.of(want), got, name);
    }
}
