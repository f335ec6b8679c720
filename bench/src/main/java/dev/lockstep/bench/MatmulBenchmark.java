package dev.lockstep.bench;

import dev.lockstep.kernels.Kernels;
import dev.lockstep.kernels.Nvfp4Format;
import dev.lockstep.kernels.Nvfp4Quantizer;
import dev.lockstep.kernels.PanamaKernels;
import dev.lockstep.kernels.ScalarKernels;
import dev.lockstep.kernels.WeightFormat;
import dev.lockstep.kernels.WeightLayout;
import dev.lockstep.kernels.WeightMatrix;
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

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * Weight x float32 activations per weight format (bf16, nvfp4), at the bundled model's shapes (q/o_proj
 * 256x256, expert gate/up 128x256, expert down 256x128, lm_head 4096x256) and Qwen3-30B-A3B's (expert gate/up
 * 768x2048, expert down 2048x768, q_proj 4096x2048, lm_head 32768x2048); 1 token (decode) and 64 tokens
 * (prefill block). Scalar reference beside the Vector API kernel, both on the tiled layout the loader produces;
 * {@code @Setup} checks they agree bit for bit and prints the bytes one call streams (GB/s = bytes / time).
 * Run a subset: {@code -p shape=768x2048 -p format=nvfp4 -p impl=panama}.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
public class MatmulBenchmark {
    @Param({"256x256", "128x256", "256x128", "4096x256", "768x2048", "2048x768", "4096x2048", "32768x2048", "2880x2880", "5760x2880"})
    public String shape;

    @Param({"bf16", "nvfp4", "mxfp4"})
    public String format;

    @Param({"1", "64"})
    public int tokens;

    @Param({"panama", "scalar"})
    public String impl;

    private Arena arena;
    private Kernels kernels;
    private WeightMatrix w;
    private float[] x;
    private float[] out;

    @Setup(Level.Trial)
    public void setup() {
        String[] rc = shape.split("x");
        int rows = Integer.parseInt(rc[0]), cols = Integer.parseInt(rc[1]);
        arena = Arena.ofShared();
        MemorySegment seg = arena.allocate(2L * rows * cols, 64);
        SplittableRandom r = new SplittableRandom(1);
        for (long i = 0; i < (long) rows * cols; i++) {
            seg.set(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 2 * i,
                    (short) (Float.floatToIntBits((float) (r.nextDouble() - 0.5)) >>> 16));
        }
        WeightMatrix rowMajor = new WeightMatrix("w", WeightFormat.BF16, rows, cols, seg);
        x = new float[tokens * cols];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) (r.nextDouble() - 0.5);
        }
        out = new float[tokens * rows];
        kernels = impl.equals("panama") ? new PanamaKernels() : new ScalarKernels();
        // As the model loader does: weights repacked (or quantized and packed) into the kernel's tiled layout.
        float[] reference = new float[tokens * rows];
        if (format.equals("nvfp4")) {
            float scale2 = Nvfp4Quantizer.weightScale2(Nvfp4Quantizer.amax(rowMajor));
            w = Nvfp4Quantizer.quantizeAndPack(rowMajor, scale2, kernels.tileRows(),
                    arena.allocate(WeightFormat.NVFP4.tiledBytes(rows, cols, kernels.tileRows()), 64));
            WeightMatrix referenceTiles = Nvfp4Quantizer.quantizeAndPack(rowMajor, scale2, 8,
                    arena.allocate(WeightFormat.NVFP4.tiledBytes(rows, cols, 8), 64));
            new ScalarKernels().matmul(referenceTiles, x, 0, cols, tokens, reference, 0, rows, 0, rows);
        } else if (format.equals("mxfp4")) {
            // gpt-oss's expert format: random E2M1 codes and E8M0 scales around 2^-4 (as checkpoints hold them)
            byte[] blocks = new byte[rows * cols / 2], scales = new byte[rows * cols / Nvfp4Format.MX_BLOCK];
            r.nextBytes(blocks);
            for (int i = 0; i < scales.length; i++) {
                scales[i] = (byte) (118 + r.nextInt(8));
            }
            w = Nvfp4Format.mxfp4Tiled("w", rows, cols, MemorySegment.ofArray(scales), kernels.tileRows(), arena.allocate(WeightFormat.MXFP4.tiledBytes(rows, cols, kernels.tileRows()), 64));
            Nvfp4Format.fillMxfp4(w, MemorySegment.ofArray(blocks), MemorySegment.ofArray(scales));
            WeightMatrix referenceTiles = Nvfp4Format.mxfp4Tiled("w", rows, cols, MemorySegment.ofArray(scales), 8, arena.allocate(WeightFormat.MXFP4.tiledBytes(rows, cols, 8), 64));
            Nvfp4Format.fillMxfp4(referenceTiles, MemorySegment.ofArray(blocks), MemorySegment.ofArray(scales));
            new ScalarKernels().matmul(referenceTiles, x, 0, cols, tokens, reference, 0, rows, 0, rows);
        } else {
            long packedBytes = WeightMatrix.byteSize(WeightLayout.TILED, WeightFormat.BF16, rows, cols, kernels.tileRows());
            w = rowMajor.packTiled(kernels.tileRows(), arena.allocate(packedBytes, 64));
            new ScalarKernels().matmul(rowMajor, x, 0, cols, tokens, reference, 0, rows, 0, rows);
        }
        System.out.printf("%n[setup] %s %s: %,d weight bytes per call%n", format, shape, w.byteSize());
        kernels.matmul(w, x, 0, cols, tokens, out, 0, rows, 0, rows);
        for (int i = 0; i < out.length; i++) {
            if (Float.floatToRawIntBits(out[i]) != Float.floatToRawIntBits(reference[i])) {
                throw new IllegalStateException(impl + " disagrees with scalar at " + i + ": " + out[i] + " vs " + reference[i]);
            }
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        arena.close();
    }

    @Benchmark
    public float[] matmul() {
        kernels.matmul(w, x, 0, w.cols(), tokens, out, 0, w.rows(), 0, w.rows());
        return out;
    }
}
