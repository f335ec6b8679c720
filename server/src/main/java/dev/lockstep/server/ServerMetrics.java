package dev.lockstep.server;

import dev.lockstep.engine.Engine;
import dev.lockstep.engine.FinishReason;
import dev.lockstep.memory.KvDiskStore;
import dev.lockstep.memory.KvPagePool;
import dev.lockstep.moe.kv.PrefixCache;
import java.util.EnumMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.LongAdder;

/**
 * The server's Prometheus metrics ({@code GET /metrics}, text format 0.0.4), named after vLLM's ({@code vllm:} becomes
 * {@code lockstep:}): token counters, time-to-first-token and per-output-token histograms, requests by finish reason,
 * running and waiting requests, KV pages per tier, and the prefix cache's page hit rate.
 */
final class ServerMetrics {
    private static final double[] TTFT_BUCKETS_S = {0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10};
    private static final double[] TPOT_BUCKETS_S = {0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 1};

    final LongAdder promptTokens = new LongAdder();
    final LongAdder cachedPromptTokens = new LongAdder();
    final LongAdder generationTokens = new LongAdder();
    final AtomicInteger running = new AtomicInteger();
    final AtomicInteger waiting = new AtomicInteger();
    final LongAdder rejected = new LongAdder();
    private final Map<FinishReason, LongAdder> finished = new EnumMap<>(FinishReason.class);
    private final Histogram ttft = new Histogram(TTFT_BUCKETS_S);
    private final Histogram tpot = new Histogram(TPOT_BUCKETS_S);

    ServerMetrics() {
        for (FinishReason r : FinishReason.values()) {
            finished.put(r, new LongAdder());
        }
    }

    void record(FinishReason reason, int prompt, int cached, int generated, long ttftNanos, long decodeNanos) {
        finished.get(reason).increment();
        promptTokens.add(prompt);
        cachedPromptTokens.add(cached);
        generationTokens.add(generated);
        if (generated > 0) {
            ttft.observe(ttftNanos / 1e9);
        }
        if (generated > 1) {
            tpot.observe(decodeNanos / 1e9 / (generated - 1), generated - 1); // each token after the first, at the mean
        }
    }

    String render(Engine engine) {
        StringBuilder out = new StringBuilder(4096);
        counter(out, "lockstep:prompt_tokens_total", "Prompt tokens processed (cached ones included).", promptTokens.sum());
        counter(out, "lockstep:prompt_tokens_cached_total", "Prompt tokens whose KV came from the prefix cache.", cachedPromptTokens.sum());
        counter(out, "lockstep:generation_tokens_total", "Tokens generated.", generationTokens.sum());
        out.append("# HELP lockstep:request_success_total Finished requests by finish reason.\n# TYPE lockstep:request_success_total counter\n");
        finished.forEach((r, n) -> out.append("lockstep:request_success_total{finished_reason=\"").append(r.name().toLowerCase(Locale.ROOT))
                .append("\"} ").append(n.sum()).append('\n'));
        counter(out, "lockstep:requests_rejected_total", "Requests refused with 429 (queue full).", rejected.sum());
        gauge(out, "lockstep:num_requests_running", "Requests generating now.", running.get());
        gauge(out, "lockstep:num_requests_waiting", "Requests waiting for a generation slot.", waiting.get());
        ttft.render(out, "lockstep:time_to_first_token_seconds", "Time from request to first token.");
        tpot.render(out, "lockstep:time_per_output_token_seconds", "Time per output token after the first.");
        if (engine != null) {
            KvPagePool pool = engine.kvPool();
            out.append("# HELP lockstep:kv_pages KV cache pages per tier and state.\n# TYPE lockstep:kv_pages gauge\n");
            out.append("lockstep:kv_pages{tier=\"memory\",state=\"used\"} ").append(pool.usedPages()).append('\n');
            out.append("lockstep:kv_pages{tier=\"memory\",state=\"free\"} ").append(pool.freePages()).append('\n');
            KvDiskStore disk = engine.kvDisk();
            if (disk != null) {
                out.append("lockstep:kv_pages{tier=\"disk\",state=\"used\"} ").append(disk.usedSlots()).append('\n');
                out.append("lockstep:kv_pages{tier=\"disk\",state=\"free\"} ").append(disk.slots() - disk.usedSlots()).append('\n');
            }
            PrefixCache prefix = engine.prefixCache();
            if (prefix != null) {
                long hits = prefix.hitPages();
                long lookups = hits + prefix.missPages();
                gauge(out, "lockstep:prefix_cache_hit_rate", "Prefix-cache page lookups that hit, since start.", lookups == 0 ? 0 : (double) hits / lookups);
                counter(out, "lockstep:prefix_cache_hit_pages_total", "Prefix-cache page hits.", hits);
                counter(out, "lockstep:prefix_cache_queries_pages_total", "Prefix-cache page lookups.", lookups);
            }
        }
        return out.toString();
    }

    private static void counter(StringBuilder out, String name, String help, long value) {
        out.append("# HELP ").append(name).append(' ').append(help).append("\n# TYPE ").append(name).append(" counter\n")
                .append(name).append(' ').append(value).append('\n');
    }

    private static void gauge(StringBuilder out, String name, String help, double value) {
        out.append("# HELP ").append(name).append(' ').append(help).append("\n# TYPE ").append(name).append(" gauge\n")
                .append(name).append(' ').append(value == Math.rint(value) ? Long.toString((long) value) : Double.toString(value)).append('\n');
    }

    /** A Prometheus histogram: cumulative bucket counts, sum and count. */
    private static final class Histogram {
        private final double[] bounds;
        private final LongAdder[] counts;
        private final LongAdder count = new LongAdder();
        private final java.util.concurrent.atomic.DoubleAdder sum = new java.util.concurrent.atomic.DoubleAdder();

        Histogram(double[] bounds) {
            this.bounds = bounds;
            this.counts = new LongAdder[bounds.length];
            for (int i = 0; i < bounds.length; i++) {
                counts[i] = new LongAdder();
            }
        }

        void observe(double v) {
            observe(v, 1);
        }

        /** {@code n} observations of {@code v}. */
        void observe(double v, long n) {
            for (int i = 0; i < bounds.length; i++) {
                if (v <= bounds[i]) {
                    counts[i].add(n);
                    break;
                }
            }
            count.add(n);
            sum.add(v * n);
        }

        void render(StringBuilder out, String name, String help) {
            out.append("# HELP ").append(name).append(' ').append(help).append("\n# TYPE ").append(name).append(" histogram\n");
            long cumulative = 0;
            for (int i = 0; i < bounds.length; i++) {
                cumulative += counts[i].sum();
                out.append(name).append("_bucket{le=\"").append(bounds[i]).append("\"} ").append(cumulative).append('\n');
            }
            out.append(name).append("_bucket{le=\"+Inf\"} ").append(count.sum()).append('\n');
            out.append(name).append("_sum ").append(sum.sum()).append('\n');
            out.append(name).append("_count ").append(count.sum()).append('\n');
        }
    }
}
