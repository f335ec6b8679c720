package dev.lockstep.bench;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * Why activations are heap {@code float[]} (DESIGN.md, "What moves as vectors, what stays shared"): the prefill
 * bodies read each activation as a scalar and broadcast it into a vector fma (eight chains: four tokens x the two
 * halves of a 16-column block, the shape of {@code Nvfp4VectorKernel.fourTokensWide}). This runs that loop shape
 * over float32 weights with the activations read from a {@code float[]} ({@code array}), from an off-heap segment
 * ({@code native}: a shared arena's, as the model's; {@code global}: the global arena's, never closed) and from a
 * segment over a {@code float[]} ({@code heap}), and from an off-heap segment as whole vectors, each column's value
 * broadcast from its lane by a permute ({@code native-lanes}: one or two checked loads per token and block, 8 or 16 lanes); the weights are an off-heap segment in
 * every case. Each segment read carries checks (bounds, the arena's liveness) that C2 does not hoist out of the short column
 * loop, where the array's broadcast is a load folded into the instruction.
 * The loop is written out once per source on purpose (each as a kernel body would be, so the JIT sees what a kernel
 * would give it). Teardown checks every run against a scalar loop, bit for bit. Run: {@code java -jar bench/target/benchmarks.jar
 * ActivationSourceBenchmark}.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
public class ActivationSourceBenchmark {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int LANES = F.length();
    private static final int BLOCK = 16;
    private static final int TOKENS = 4;
    private static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT;

    /** Rows x columns of the weight (an expert's gate/up in Qwen3-30B-A3B: 768 x 2048). */
    @Param({"768x2048"})
    public String shape;

    @Param({"array", "native", "global", "heap", "native-lanes"})
    public String source;

    private Arena arena;
    private int rows;
    private int cols;
    private MemorySegment w;       // [rows / LANES][cols][LANES] float32, tile-major
    private float[] xArray;        // [TOKENS][cols]
    private MemorySegment xSegment;
    private float[] out;
    private float[] expected;

    @Setup
    public void setup() {
        String[] rc = shape.split("x");
        rows = Integer.parseInt(rc[0]);
        cols = Integer.parseInt(rc[1]);
        if (rows % LANES != 0 || cols % BLOCK != 0) {
            throw new IllegalArgumentException("shape " + shape + " is not a multiple of " + LANES + " x " + BLOCK);
        }
        arena = Arena.ofShared();
        SplittableRandom r = new SplittableRandom(1);
        w = arena.allocate(4L * rows * cols, 64);
        for (long i = 0; i < (long) rows * cols; i++) {
            w.setAtIndex(FLOAT, i, (float) (r.nextDouble() - 0.5));
        }
        xArray = new float[TOKENS * cols];
        for (int i = 0; i < xArray.length; i++) {
            xArray[i] = (float) (r.nextDouble() - 0.5);
        }
        MemorySegment offHeap = arena.allocate(4L * xArray.length, 64);
        MemorySegment.copy(xArray, 0, offHeap, FLOAT, 0, xArray.length);
        out = new float[TOKENS * rows];
        expected = scalar(xArray);
        xSegment = switch (source) {
            case "heap" -> MemorySegment.ofArray(xArray.clone());
            case "global" -> Arena.global().allocate(4L * xArray.length, 64).copyFrom(offHeap);
            default -> offHeap;
        };
    }

    /** The loop's sums written out in scalar code, in the same order (so its bits), to check the runs against. */
    private float[] scalar(float[] x) {
        float[] y = new float[TOKENS * rows];
        for (int t = 0; t < TOKENS; t++) {
            for (int r = 0; r < rows; r++) {
                long tile = (long) (r / LANES) * cols * LANES;
                float acc = 0;
                for (int b = 0; b < cols / BLOCK; b++) {
                    float lo = 0, hi = 0;
                    for (int i = 0; i < 8; i++) {
                        int k = b * BLOCK + i;
                        lo = Math.fma(w.getAtIndex(FLOAT, tile + (long) k * LANES + r % LANES), x[t * cols + k], lo);
                        hi = Math.fma(w.getAtIndex(FLOAT, tile + (long) (k + 8) * LANES + r % LANES), x[t * cols + k + 8], hi);
                    }
                    acc = acc + (lo + hi);
                }
                y[t * rows + r] = acc;
            }
        }
        return y;
    }

    /** The benchmark's own runs are checked (not a run in setup, whose compiled loop can outlive warm-up). */
    @TearDown
    public void tearDown() {
        for (int i = 0; i < out.length; i++) {
            if (Float.floatToRawIntBits(out[i]) != Float.floatToRawIntBits(expected[i])) {
                throw new IllegalStateException(source + " disagrees with the scalar loop at " + i + ": " + out[i] + " vs " + expected[i]);
            }
        }
        arena.close();
    }

    @Benchmark
    public float[] fourTokens() {
        if (source.equals("array")) {
            fromArray(xArray, out);
        } else if (source.equals("native-lanes")) {
            fromSegmentLanes(xSegment, out);
        } else {
            fromSegment(xSegment, out);
        }
        return out;
    }

    private void fromArray(float[] x, float[] out) {
        long tileBytes = 4L * cols * LANES;
        for (int j = 0; j < rows / LANES; j++) {
            FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
            int x1 = cols, x2 = 2 * cols, x3 = 3 * cols;
            for (int b = 0; b < cols / BLOCK; b++) {
                FloatVector lo0 = FloatVector.zero(F), lo1 = lo0, lo2 = lo0, lo3 = lo0, hi0 = lo0, hi1 = lo0, hi2 = lo0, hi3 = lo0;
                for (int i = 0; i < 8; i++) {
                    int k = b * BLOCK + i;
                    long o = j * tileBytes + 4L * LANES * k;
                    FloatVector wl = FloatVector.fromMemorySegment(F, w, o, ByteOrder.LITTLE_ENDIAN);
                    FloatVector wh = FloatVector.fromMemorySegment(F, w, o + 32L * LANES, ByteOrder.LITTLE_ENDIAN);
                    lo0 = wl.fma(FloatVector.broadcast(F, x[k]), lo0);
                    hi0 = wh.fma(FloatVector.broadcast(F, x[k + 8]), hi0);
                    lo1 = wl.fma(FloatVector.broadcast(F, x[x1 + k]), lo1);
                    hi1 = wh.fma(FloatVector.broadcast(F, x[x1 + k + 8]), hi1);
                    lo2 = wl.fma(FloatVector.broadcast(F, x[x2 + k]), lo2);
                    hi2 = wh.fma(FloatVector.broadcast(F, x[x2 + k + 8]), hi2);
                    lo3 = wl.fma(FloatVector.broadcast(F, x[x3 + k]), lo3);
                    hi3 = wh.fma(FloatVector.broadcast(F, x[x3 + k + 8]), hi3);
                }
                a0 = a0.add(lo0.add(hi0));
                a1 = a1.add(lo1.add(hi1));
                a2 = a2.add(lo2.add(hi2));
                a3 = a3.add(lo3.add(hi3));
            }
            a0.intoArray(out, j * LANES);
            a1.intoArray(out, rows + j * LANES);
            a2.intoArray(out, 2 * rows + j * LANES);
            a3.intoArray(out, 3 * rows + j * LANES);
        }
    }

    private static final jdk.incubator.vector.VectorShuffle<Float>[] LANE = lanes();

    @SuppressWarnings("unchecked")
    private static jdk.incubator.vector.VectorShuffle<Float>[] lanes() {
        jdk.incubator.vector.VectorShuffle<Float>[] s = new jdk.incubator.vector.VectorShuffle[LANES];
        for (int i = 0; i < LANES; i++) {
            int lane = i;
            s[i] = jdk.incubator.vector.VectorShuffle.fromOp(F, j -> lane);
        }
        return s;
    }

    /**
     * The same loop with the activations read as whole vectors (per token and block one load with 16 lanes, two with 8)
     * and each column's value broadcast from its lane by a permute.
     */
    private void fromSegmentLanes(MemorySegment x, float[] out) {
        if (LANES < 8) {
            throw new IllegalStateException("the lane variant needs 8 or 16 lanes, this machine's vectors have " + LANES);
        }
        boolean oneVector = LANES >= BLOCK; // 16 lanes: a block's two halves in one vector; 8 lanes: one vector each
        long tileBytes = 4L * cols * LANES;
        for (int j = 0; j < rows / LANES; j++) {
            FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
            long x1 = 4L * cols, x2 = 8L * cols, x3 = 12L * cols;
            for (int b = 0; b < cols / BLOCK; b++) {
                FloatVector lo0 = FloatVector.zero(F), lo1 = lo0, lo2 = lo0, lo3 = lo0, hi0 = lo0, hi1 = lo0, hi2 = lo0, hi3 = lo0;
                long xb = 4L * b * BLOCK, xh = oneVector ? xb : xb + 32;
                FloatVector v0 = FloatVector.fromMemorySegment(F, x, xb, ByteOrder.LITTLE_ENDIAN);
                FloatVector v1 = FloatVector.fromMemorySegment(F, x, x1 + xb, ByteOrder.LITTLE_ENDIAN);
                FloatVector v2 = FloatVector.fromMemorySegment(F, x, x2 + xb, ByteOrder.LITTLE_ENDIAN);
                FloatVector v3 = FloatVector.fromMemorySegment(F, x, x3 + xb, ByteOrder.LITTLE_ENDIAN);
                FloatVector u0 = FloatVector.fromMemorySegment(F, x, xh, ByteOrder.LITTLE_ENDIAN);
                FloatVector u1 = FloatVector.fromMemorySegment(F, x, x1 + xh, ByteOrder.LITTLE_ENDIAN);
                FloatVector u2 = FloatVector.fromMemorySegment(F, x, x2 + xh, ByteOrder.LITTLE_ENDIAN);
                FloatVector u3 = FloatVector.fromMemorySegment(F, x, x3 + xh, ByteOrder.LITTLE_ENDIAN);
                for (int i = 0; i < 8; i++) {
                    int k = b * BLOCK + i;
                    long o = j * tileBytes + 4L * LANES * k;
                    FloatVector wl = FloatVector.fromMemorySegment(F, w, o, ByteOrder.LITTLE_ENDIAN);
                    FloatVector wh = FloatVector.fromMemorySegment(F, w, o + 32L * LANES, ByteOrder.LITTLE_ENDIAN);
                    jdk.incubator.vector.VectorShuffle<Float> sl = LANE[i], sh = LANE[oneVector ? i + 8 : i];
                    lo0 = wl.fma(v0.rearrange(sl), lo0);
                    hi0 = wh.fma(u0.rearrange(sh), hi0);
                    lo1 = wl.fma(v1.rearrange(sl), lo1);
                    hi1 = wh.fma(u1.rearrange(sh), hi1);
                    lo2 = wl.fma(v2.rearrange(sl), lo2);
                    hi2 = wh.fma(u2.rearrange(sh), hi2);
                    lo3 = wl.fma(v3.rearrange(sl), lo3);
                    hi3 = wh.fma(u3.rearrange(sh), hi3);
                }
                a0 = a0.add(lo0.add(hi0));
                a1 = a1.add(lo1.add(hi1));
                a2 = a2.add(lo2.add(hi2));
                a3 = a3.add(lo3.add(hi3));
            }
            a0.intoArray(out, j * LANES);
            a1.intoArray(out, rows + j * LANES);
            a2.intoArray(out, 2 * rows + j * LANES);
            a3.intoArray(out, 3 * rows + j * LANES);
        }
    }

    /** The same loop, each activation read from {@code x} at its byte offset. */
    private void fromSegment(MemorySegment x, float[] out) {
        long tileBytes = 4L * cols * LANES;
        for (int j = 0; j < rows / LANES; j++) {
            FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
            long x1 = 4L * cols, x2 = 8L * cols, x3 = 12L * cols;
            for (int b = 0; b < cols / BLOCK; b++) {
                FloatVector lo0 = FloatVector.zero(F), lo1 = lo0, lo2 = lo0, lo3 = lo0, hi0 = lo0, hi1 = lo0, hi2 = lo0, hi3 = lo0;
                for (int i = 0; i < 8; i++) {
                    int k = b * BLOCK + i;
                    long o = j * tileBytes + 4L * LANES * k;
                    long xk = 4L * k;
                    FloatVector wl = FloatVector.fromMemorySegment(F, w, o, ByteOrder.LITTLE_ENDIAN);
                    FloatVector wh = FloatVector.fromMemorySegment(F, w, o + 32L * LANES, ByteOrder.LITTLE_ENDIAN);
                    lo0 = wl.fma(FloatVector.broadcast(F, x.get(FLOAT, xk)), lo0);
                    hi0 = wh.fma(FloatVector.broadcast(F, x.get(FLOAT, xk + 32)), hi0);
                    lo1 = wl.fma(FloatVector.broadcast(F, x.get(FLOAT, x1 + xk)), lo1);
                    hi1 = wh.fma(FloatVector.broadcast(F, x.get(FLOAT, x1 + xk + 32)), hi1);
                    lo2 = wl.fma(FloatVector.broadcast(F, x.get(FLOAT, x2 + xk)), lo2);
                    hi2 = wh.fma(FloatVector.broadcast(F, x.get(FLOAT, x2 + xk + 32)), hi2);
                    lo3 = wl.fma(FloatVector.broadcast(F, x.get(FLOAT, x3 + xk)), lo3);
                    hi3 = wh.fma(FloatVector.broadcast(F, x.get(FLOAT, x3 + xk + 32)), hi3);
                }
                a0 = a0.add(lo0.add(hi0));
                a1 = a1.add(lo1.add(hi1));
                a2 = a2.add(lo2.add(hi2));
                a3 = a3.add(lo3.add(hi3));
            }
            a0.intoArray(out, j * LANES);
            a1.intoArray(out, rows + j * LANES);
            a2.intoArray(out, 2 * rows + j * LANES);
            a3.intoArray(out, 3 * rows + j * LANES);
        }
    }
}
