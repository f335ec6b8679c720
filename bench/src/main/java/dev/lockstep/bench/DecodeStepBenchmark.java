package dev.lockstep.bench;

import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.ForwardObserver;
import dev.lockstep.moe.ForwardState;
import dev.lockstep.moe.LogitsMode;
import dev.lockstep.moe.ModelFamilies;
import dev.lockstep.moe.kv.KvCache;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/**
 * One decode step of the bundled model at a fixed context length (the cache is rolled back after each
 * step, so every invocation attends over {@code context} positions). Run from the repository root, or set
 * {@code -Dlockstep.model=DIR}.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
public class DecodeStepBenchmark {
    @Param({"1", "2"})
    public int threads;

    @Param({"16", "256"})
    public int context;

    private WorkerPool pool;
    private CausalLm model;
    private KvCache cache;
    private ForwardState state;
    private float[] logits;
    private final int[] token = {259};

    @Setup(Level.Trial)
    public void setup() {
        pool = new WorkerPool(threads);
        model = ModelFamilies.load(Path.of(System.getProperty("lockstep.model", "models/kjv-qwen3moe")), pool);
        cache = model.newKvCache(context + 1);
        state = model.newState(context);
        logits = new float[context * model.vocabSize()];
        int[] prompt = new int[context];
        for (int i = 0; i < context; i++) {
            prompt[i] = (i * 37) % model.vocabSize();
        }
        model.forward(prompt, 0, context, cache, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        cache.close();
        model.close();
        pool.close();
    }

    @Benchmark
    public float[] decodeStep() {
        model.forward(token, 0, 1, cache, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
        cache.truncate(context);
        return logits;
    }
}
