package dev.lockstep.server;

/**
 * What {@code lockstep serve} listens on and refuses: the address (loopback unless told), the largest request body,
 * the most tokens one request may generate, how many generations run at once and how many more may wait (beyond
 * that: 429), and the model's name in responses.
 */
public record ServerOptions(String host, int port, int maxRequestBytes, int maxTokens, int maxConcurrent, int maxQueue,
                            String modelName) {
    public static final String LOOPBACK = "127.0.0.1";

    public ServerOptions {
        if (port < 0 || port > 65535) {
            throw new IllegalArgumentException("port must be in [0, 65535], got " + port);
        }
        if (maxRequestBytes < 1024 || maxTokens < 1 || maxConcurrent < 1 || maxQueue < 0) {
            throw new IllegalArgumentException("limits: max request bytes >= 1024, max tokens >= 1, max concurrent >= 1, max queue >= 0; got "
                    + maxRequestBytes + ", " + maxTokens + ", " + maxConcurrent + ", " + maxQueue);
        }
    }

    /** Loopback, port 8080, 1 MiB bodies, 4096 tokens, 16 concurrent generations, 64 waiting. */
    public static ServerOptions defaults(String modelName) {
        return new ServerOptions(LOOPBACK, 8080, 1 << 20, 4096, 16, 64, modelName);
    }

    public ServerOptions withPort(int p) {
        return new ServerOptions(host, p, maxRequestBytes, maxTokens, maxConcurrent, maxQueue, modelName);
    }

    public ServerOptions withHost(String h) {
        return new ServerOptions(h, port, maxRequestBytes, maxTokens, maxConcurrent, maxQueue, modelName);
    }

    public ServerOptions withLimits(int requestBytes, int tokens, int concurrent, int queue) {
        return new ServerOptions(host, port, requestBytes, tokens, concurrent, queue, modelName);
    }
}
