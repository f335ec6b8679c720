import java.net.URI;
import java.net.URLDecoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.WebSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Drives the chat page in headless chromium over the DevTools protocol (the JDK's own WebSocket client; run as a
 * single-file program: java PageTest.java CHROMIUM PAGE_URL): opens the page, waits until the reply has streamed in
 * (the assistant bubble's data-done), prints the reply's text. page-test.sh compares it with the endpoint's answer.
 */
public final class PageTest {
    public static void main(String[] args) throws Exception {
        Path profile = Files.createTempDirectory("lockstep-page-test");
        Process chromium = new ProcessBuilder(args[0], "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
                "--user-data-dir=" + profile, "about:blank").redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        try {
            Path portFile = profile.resolve("DevToolsActivePort");
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (!Files.exists(portFile) || Files.readAllLines(portFile).isEmpty()) {
                if (System.nanoTime() > deadline) {
                    throw new IllegalStateException("chromium did not open its DevTools port");
                }
                Thread.sleep(100);
            }
            String port = Files.readAllLines(portFile).get(0).strip();
            HttpClient http = HttpClient.newHttpClient();
            String list = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/json/list")).build(),
                    HttpResponse.BodyHandlers.ofString()).body();
            Matcher ws = Pattern.compile("\"webSocketDebuggerUrl\"\\s*:\\s*\"(ws://[^\"]+/page/[^\"]+)\"").matcher(list);
            if (!ws.find()) {
                throw new IllegalStateException("no page target in " + list);
            }
            Cdp cdp = new Cdp(http, ws.group(1));
            cdp.call("Page.navigate", "{\"url\": \"" + args[1] + "\"}");
            deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
            while (System.nanoTime() < deadline) {
                String done = cdp.evaluate("(document.querySelector('.assistant') || {dataset: {}}).dataset.done || ''");
                if (done.equals("ok")) {
                    System.out.print(cdp.evaluate("document.querySelector('.assistant').textContent"));
                    return;
                }
                if (done.equals("error")) {
                    throw new IllegalStateException("the page shows an error: " + cdp.evaluate("document.querySelector('.error').textContent"));
                }
                Thread.sleep(200);
            }
            throw new IllegalStateException("the reply did not finish streaming into the page in 120 s");
        } finally {
            chromium.destroyForcibly().waitFor();
        }
    }

    /** The few DevTools calls this needs, one at a time. */
    static final class Cdp implements WebSocket.Listener {
        private final WebSocket socket;
        private final AtomicInteger ids = new AtomicInteger();
        private final StringBuilder partial = new StringBuilder();
        private volatile CompletableFuture<String> pending;

        Cdp(HttpClient http, String url) {
            this.socket = http.newWebSocketBuilder().buildAsync(URI.create(url), this).join();
        }

        synchronized String call(String method, String params) throws Exception {
            int id = ids.incrementAndGet();
            pending = new CompletableFuture<>();
            socket.sendText("{\"id\": " + id + ", \"method\": \"" + method + "\", \"params\": " + params + "}", true).join();
            while (true) {
                String message = pending.get(30, TimeUnit.SECONDS);
                if (message.contains("\"id\":" + id + ",") || message.contains("\"id\":" + id + "}")) {
                    return message;
                }
                pending = new CompletableFuture<>();
            }
        }

        /** A JavaScript expression's string value (passed through encodeURIComponent: no JSON unescaping needed). */
        String evaluate(String expression) throws Exception {
            String js = "encodeURIComponent(String(" + expression + "))";
            String reply = call("Runtime.evaluate", "{\"expression\": \"" + js.replace("\\", "\\\\").replace("\"", "\\\"") + "\", \"returnByValue\": true}");
            Matcher m = Pattern.compile("\"value\":\"([^\"]*)\"").matcher(reply);
            if (!m.find()) {
                throw new IllegalStateException("evaluate " + expression + ": " + reply);
            }
            return URLDecoder.decode(m.group(1), StandardCharsets.UTF_8);
        }

        @Override
        public CompletionStage<?> onText(WebSocket webSocket, CharSequence data, boolean last) {
            partial.append(data);
            if (last) {
                String message = partial.toString();
                partial.setLength(0);
                CompletableFuture<String> p = pending;
                if (p != null && message.contains("\"id\":")) {
                    p.complete(message);
                }
            }
            webSocket.request(1);
            return null;
        }
    }
}
