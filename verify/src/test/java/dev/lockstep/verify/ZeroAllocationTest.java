package dev.lockstep.verify;

import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.ForwardObserver;
import dev.lockstep.moe.ForwardState;
import dev.lockstep.moe.LogitsMode;
import dev.lockstep.moe.ModelFamilies;
import dev.lockstep.moe.kv.KvCache;

import java.lang.management.ManagementFactory;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * A warmed-up decode step allocates nothing on the heap, on any thread (the dispatching thread and the pool's
 * workers). This also catches a Vector API call that fell back to its allocating Java path (a kernel shape C2
 * stopped intrinsifying). Part of the default suite: windows of 64 decode steps (2 workers) until one
 * allocates nothing, 60 s at most (typically a few seconds once C2 has compiled the kernels).
 */
class ZeroAllocationTest {
    /**
     * bf16 as stored, and NVFP4 (quantized at load, lm_head included): every kernel a decode step runs; and bf16
     * on a compiled schedule over 2 workers with expert placement (every thread counted, the workers' included).
     */
    @org.junit.jupiter.params.ParameterizedTest(name = "nvfp4 {0}, schedule workers {1}")
    @org.junit.jupiter.params.provider.CsvSource({"false, 0", "true, 0", "false, 2"})
    void steadyStateDecodeAllocatesNothing(boolean nvfp4, int workers) {
        try (WorkerPool pool = new WorkerPool(2);
             CausalLm model = ModelFamilies.load(ModelFamilies.readConfig(Golden.bundledModel()), dev.lockstep.kernels.KernelProvider.get(), pool,
                     new dev.lockstep.moe.LoadOptions(nvfp4, nvfp4, java.util.List.of()).withExecution(workers == 0 ? dev.lockstep.moe.ExecutionPlan.FORK_JOIN
                             : dev.lockstep.moe.ExecutionPlan.scheduled(workers, dev.lockstep.moe.ExecutionPlan.Placement.EXPERTS, false)));
             KvCache cache = model.newKvCache(256)) {
            assertWarmDecodeAllocatesNothing(model, cache, 259);
        }
    }

    /** Every family's blocks (biases, sinks, sliding windows, shared experts, MLA, grouped routing, MXFP4) allocate nothing either. */
    @org.junit.jupiter.params.ParameterizedTest(name = "{0}")
    @org.junit.jupiter.params.provider.ValueSource(strings = {"mixtral", "qwen2_moe", "olmoe", "granitemoe", "gpt_oss", "gpt_oss-mxfp4", "deepseek_v3"})
    void everyFamilysDecodeAllocatesNothing(String family) {
        try (WorkerPool pool = new WorkerPool(2); CausalLm model = ModelFamilies.load(FamilyGoldenTest.tiny(family), pool);
             KvCache cache = model.newKvCache(256)) {
            assertWarmDecodeAllocatesNothing(model, cache, 259);
        }
    }

    /**
     * Windows of 64 greedy decode steps from {@code first} (the cache truncated before each) until one allocates
     * nothing on any thread, 60 s at most; then names the allocating threads if none did, and fails.
     */
    static void assertWarmDecodeAllocatesNothing(CausalLm model, KvCache cache, int first) {
        var threads = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        ForwardState state = model.newState(1);
        float[] logits = new float[model.vocabSize()];
        int[] one = {first};
        long deadline = System.nanoTime() + 60_000_000_000L;
        long lastWindow = Long.MAX_VALUE;
        int windows = 0;
        while (lastWindow != 0 && System.nanoTime() < deadline) {
            cache.truncate(0);
            long before = threads.getTotalThreadAllocatedBytes();
            for (int i = 0; i < 64; i++) {
                model.forward(one, 0, 1, cache, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
                one[0] = dev.lockstep.engine.Sampler.argmax(logits, 0, model.vocabSize());
            }
            lastWindow = threads.getTotalThreadAllocatedBytes() - before;
            windows++;
        }
        if (lastWindow != 0) { // name the allocating threads
            long[] ids = threads.getAllThreadIds();
            long[] a = threads.getThreadAllocatedBytes(ids);
            for (int i = 0; i < 64; i++) {
                model.forward(one, 0, 1, cache, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
            }
            long[] b = threads.getThreadAllocatedBytes(ids);
            for (int i = 0; i < ids.length; i++) {
                if (b[i] != a[i]) {
                    var info = threads.getThreadInfo(ids[i]);
                    System.out.println("ALLOC " + (info == null ? ids[i] : info.getThreadName()) + " " + (b[i] - a[i]));
                }
            }
        }
        if (lastWindow != 0) {
            System.out.println(allocationSites(model, cache, state, logits, one));
        }
        assertEquals(0, lastWindow, "64 warm decode steps allocated " + lastWindow + " bytes (after " + windows + " windows)");
    }

    /** A warm NVFP4 prefill (64-token blocks: the prefill kernel bodies) allocates nothing either. */
    @org.junit.jupiter.api.Test
    void steadyStateNvfp4PrefillAllocatesNothing() {
        var threads = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        try (WorkerPool pool = new WorkerPool(2);
             CausalLm model = ModelFamilies.load(ModelFamilies.readConfig(Golden.bundledModel()), dev.lockstep.kernels.KernelProvider.get(), pool,
                     new dev.lockstep.moe.LoadOptions(true, true, java.util.List.of()));
             KvCache cache = model.newKvCache(64)) {
            ForwardState state = model.newState(64);
            float[] logits = new float[model.vocabSize()];
            int[] tokens = new int[64];
            for (int i = 0; i < tokens.length; i++) {
                tokens[i] = (i * 37) % model.vocabSize();
            }
            long deadline = System.nanoTime() + 60_000_000_000L;
            long lastWindow = Long.MAX_VALUE;
            while (lastWindow != 0 && System.nanoTime() < deadline) {
                long before = threads.getTotalThreadAllocatedBytes();
                for (int i = 0; i < 8; i++) {
                    cache.truncate(0);
                    model.forward(tokens, 0, tokens.length, cache, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
                }
                lastWindow = threads.getTotalThreadAllocatedBytes() - before;
            }
            assertEquals(0, lastWindow, "8 warm 64-token NVFP4 prefills allocated " + lastWindow + " bytes");
        }
    }

    /** Where a warm decode allocates: JFR allocation events with stacks over 2,000 decode steps, the top sites counted. */
    static String allocationSites(CausalLm model, KvCache cache, ForwardState state, float[] logits, int[] one) {
        try (jdk.jfr.Recording rec = new jdk.jfr.Recording()) {
            rec.enable("jdk.ObjectAllocationInNewTLAB").withStackTrace();
            rec.enable("jdk.ObjectAllocationOutsideTLAB").withStackTrace();
            rec.enable("jdk.ObjectAllocationSample").withStackTrace().with("throttle", "10000/s");
            rec.start();
            for (int i = 0; i < 2000; i++) {
                if (cache.length() >= cache.capacityTokens() - 1) {
                    cache.truncate(0);
                }
                model.forward(one, 0, 1, cache, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
            }
            rec.stop();
            java.nio.file.Path f = java.nio.file.Files.createTempFile("alloc", ".jfr");
            rec.dump(f);
            java.util.Map<String, Integer> sites = new java.util.TreeMap<>();
            for (jdk.jfr.consumer.RecordedEvent e : jdk.jfr.consumer.RecordingFile.readAllEvents(f)) {
                if (e.getStackTrace() == null) {
                    continue;
                }
                StringBuilder b = new StringBuilder(e.getClass("objectClass").getName());
                for (var frame : e.getStackTrace().getFrames().subList(0, Math.min(8, e.getStackTrace().getFrames().size()))) {
                    b.append("\n    at ").append(frame.getMethod().getType().getName()).append('.').append(frame.getMethod().getName())
                            .append(':').append(frame.getLineNumber()).append(" (").append(frame.getType()).append(')');
                }
                sites.merge(b.toString(), 1, Integer::sum);
            }
            java.nio.file.Files.delete(f);
            StringBuilder out = new StringBuilder("ALLOCATION SITES (JFR, 2,000 steps):\n");
            sites.entrySet().stream().sorted((x, y) -> y.getValue() - x.getValue()).limit(5)
                    .forEach(x -> out.append(x.getValue()).append(" x ").append(x.getKey()).append('\n'));
            return out.toString();
        } catch (java.io.IOException e) {
            return "ALLOCATION SITES: " + e;
        }
    }
}
