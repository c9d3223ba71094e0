package dev.raftplane.interop;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.microsoft.signalr.GsonHubProtocol;
import com.microsoft.signalr.HubMessage;
import com.microsoft.signalr.HubProtocol;
import com.microsoft.signalr.InvocationBinder;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;

/**
 * The client's own JSON protocol ({@link GsonHubProtocol}, unchanged) behind a filter that removes
 * the "headers" member from every message before the client parses it, and records what the client
 * does not expose: each Close message's "allowReconnect".
 *
 * <p>Why: raftplane puts the message's cursor in every Invocation's headers, and GsonHubProtocol
 * 9.0.3 throws "Headers not implemented yet." on any message that has headers
 * (GsonHubProtocol.java:129), which ends the connection. ASP.NET Core sends no headers unless the
 * application sets them. {@code JavaClientTest#unchangedProtocolReceivesMessages} tracks the
 * unfiltered client; this filter is what a Java application needs meanwhile (it is passed through
 * the client's public {@code withHubProtocol}).
 */
final class HeaderDroppingProtocol implements HubProtocol {
    private static final String RS = "\u001e";

    /** A Close message as it arrived: its error (or null) and allowReconnect. */
    record Close(String error, boolean allowReconnect) {}

    private final GsonHubProtocol inner = new GsonHubProtocol();
    final BlockingQueue<Close> closes = new LinkedBlockingQueue<>();

    @Override
    public String getName() {
        return inner.getName();
    }

    @Override
    public int getVersion() {
        return inner.getVersion();
    }

    @Override
    public List<HubMessage> parseMessages(ByteBuffer payload, InvocationBinder binder) {
        byte[] b = new byte[payload.remaining()];
        payload.get(b);
        String s = new String(b, StandardCharsets.UTF_8);
        StringBuilder out = new StringBuilder(s.length());
        for (String rec : s.split(RS)) {
            if (rec.isEmpty()) {
                continue;
            }
            JsonObject o = JsonParser.parseString(rec).getAsJsonObject();
            o.remove("headers");
            JsonElement type = o.get("type");
            if (type != null && type.getAsInt() == 7) {
                JsonElement err = o.get("error");
                JsonElement ar = o.get("allowReconnect");
                closes.add(new Close(err == null || err.isJsonNull() ? null : err.getAsString(),
                        ar != null && ar.getAsBoolean()));
            }
            out.append(o).append(RS);
        }
        return inner.parseMessages(ByteBuffer.wrap(out.toString().getBytes(StandardCharsets.UTF_8)), binder);
    }

    @Override
    public ByteBuffer writeMessage(HubMessage message) {
        return inner.writeMessage(message);
    }
}
