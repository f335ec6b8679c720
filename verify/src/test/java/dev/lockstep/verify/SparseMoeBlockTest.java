package dev.lockstep.verify;

import dev.lockstep.kernels.KernelProvider;
import dev.lockstep.kernels.Kernels;
import dev.lockstep.kernels.WeightFormat;
import dev.lockstep.kernels.WeightLayout;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.moe.ForwardObserver;
import dev.lockstep.moe.block.Compute;
import dev.lockstep.moe.block.SparseMoeBlock;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.SplittableRandom;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * {@link SparseMoeBlock} (tokens grouped by expert, experts spread over workers, tiled SIMD kernels) against a
 * per-token oracle written straight from HF's {@code Qwen3MoeSparseMoeBlock}: router logits, float32 softmax,
 * top-k by probability with ties to the lower expert id, optional renormalization, each chosen expert's SwiGLU
 * MLP, and the weighted sum in ascending expert id. Bit for bit, over expert counts, top-k values, token counts,
 * forced ties and 1 or 2 workers.
 */
class SparseMoeBlockTest {
    static final int HIDDEN = 24, INTER = 10;
    static final ValueLayout.OfShort BF16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    static Stream<Arguments> cases() {
        Stream.Builder<Arguments> b = Stream.builder();
        int[][] shapes = {{1, 1}, {3, 1}, {3, 2}, {4, 4}, {8, 2}, {16, 4}, {5, 3}};
        for (int[] shape : shapes) {
            for (int tokens : new int[]{1, 5, 17}) {
                for (boolean norm : new boolean[]{true, false}) {
                    for (boolean ties : new boolean[]{false, true}) {
                        for (int threads : new int[]{1, 2}) {
                            b.add(Arguments.of(shape[0], shape[1], tokens, norm, ties, threads));
                        }
                    }
                }
            }
        }
        return b.build();
    }

    /** A row-major bf16 matrix of random values (bf16-exact), optionally with row {@code copyTo} = row {@code copyFrom}. */
    static WeightMatrix matrix(Arena arena, String name, int rows, int cols, SplittableRandom r, float scale, int copyFrom, int copyTo) {
        MemorySegment seg = arena.allocate(2L * rows * cols, 64);
        for (int i = 0; i < rows * cols; i++) {
            float v = (float) (r.nextDouble(-1, 1) * scale);
            seg.set(BF16, 2L * i, (short) (Float.floatToRawIntBits(v) >>> 16));
        }
        if (copyFrom >= 0) {
            MemorySegment.copy(seg, 2L * copyFrom * cols, seg, 2L * copyTo * cols, 2L * cols);
        }
        return new WeightMatrix(name, WeightFormat.BF16, rows, cols, seg);
    }

    static WeightMatrix tiled(Arena arena, WeightMatrix m, int tileRows) {
        return m.packTiled(tileRows, arena.allocate(WeightMatrix.byteSize(WeightLayout.TILED, m.format(), m.rows(), m.cols(), tileRows), 64));
    }

    /** w . x as the fma chain the kernels define. */
    static float dot(WeightMatrix w, int row, float[] x, int xOff) {
        float acc = 0f;
        for (int k = 0; k < w.cols(); k++) {
            acc = Math.fma(w.get(row, k), x[xOff + k], acc);
        }
        return acc;
    }

    @ParameterizedTest(name = "experts={0} topK={1} tokens={2} norm={3} ties={4} threads={5}")
    @MethodSource("cases")
    void groupedBlockEqualsPerTokenOracle(int experts, int topK, int tokens, boolean norm, boolean ties, int threads) {
        SplittableRandom r = new SplittableRandom(experts * 1000L + topK * 100L + tokens);
        Kernels simd = new dev.lockstep.kernels.PanamaKernels();
        try (Arena arena = Arena.ofShared(); WorkerPool pool = new WorkerPool(threads)) {
            // With ties, the last expert's router row equals expert 0's: equal probabilities, the lower id must win.
            WeightMatrix router = matrix(arena, "router", experts, HIDDEN, r, 0.5f, ties && experts > 1 ? 0 : -1, experts - 1);
            WeightMatrix[] gate = new WeightMatrix[experts], up = new WeightMatrix[experts], down = new WeightMatrix[experts];
            WeightMatrix[] gateT = new WeightMatrix[experts], upT = new WeightMatrix[experts], downT = new WeightMatrix[experts];
            for (int e = 0; e < experts; e++) {
                gate[e] = matrix(arena, "gate" + e, INTER, HIDDEN, r, 0.3f, -1, 0);
                up[e] = matrix(arena, "up" + e, INTER, HIDDEN, r, 0.3f, -1, 0);
                down[e] = matrix(arena, "down" + e, HIDDEN, INTER, r, 0.3f, -1, 0);
                gateT[e] = tiled(arena, gate[e], simd.tileRows());
                upT[e] = tiled(arena, up[e], simd.tileRows());
                downT[e] = tiled(arena, down[e], simd.tileRows());
            }
            SparseMoeBlock block = new SparseMoeBlock(tiled(arena, router, simd.tileRows()), gateT, upT, downT, topK, norm);
            float[] x = new float[tokens * HIDDEN];
            for (int i = 0; i < x.length; i++) {
                x[i] = (float) r.nextDouble(-1, 1);
            }
            float[] out = new float[tokens * HIDDEN];
            block.forward(new Compute(simd, pool), 0, x, tokens, new SparseMoeBlock.Scratch(), out, ForwardObserver.NONE);

            for (int t = 0; t < tokens; t++) {
                float[] expected = oracle(router, gate, up, down, topK, norm, x, t * HIDDEN);
                for (int i = 0; i < HIDDEN; i++) {
                    assertEquals(Float.floatToRawIntBits(expected[i]), Float.floatToRawIntBits(out[t * HIDDEN + i]),
                            "token " + t + " element " + i + ": " + expected[i] + " vs " + out[t * HIDDEN + i]);
                }
            }
        }
    }

    /** One token through HF's Qwen3MoeSparseMoeBlock, written out. */
    static float[] oracle(WeightMatrix router, WeightMatrix[] gate, WeightMatrix[] up, WeightMatrix[] down, int topK, boolean norm,
                          float[] x, int xOff) {
        int experts = router.rows();
        float[] p = new float[experts];
        float max = Float.NEGATIVE_INFINITY;
        for (int e = 0; e < experts; e++) {
            p[e] = dot(router, e, x, xOff);
            max = Math.max(max, p[e]);
        }
        float sum = 0f;
        for (int e = 0; e < experts; e++) {
            p[e] = dev.lockstep.kernels.Exp.exp(p[e] - max);
            sum += p[e];
        }
        float inv = 1f / sum;
        for (int e = 0; e < experts; e++) {
            p[e] = p[e] * inv;
        }
        // torch.topk order: by probability, ties to the lower index
        int[] chosen = new int[topK];
        float[] weight = new float[topK];
        boolean[] taken = new boolean[experts];
        for (int j = 0; j < topK; j++) {
            int best = -1;
            for (int e = 0; e < experts; e++) {
                if (!taken[e] && (best < 0 || p[e] > p[best])) {
                    best = e;
                }
            }
            taken[best] = true;
            chosen[j] = best;
            weight[j] = p[best];
        }
        if (norm) {
            float s = 0f;
            for (int j = 0; j < topK; j++) {
                s += weight[j];
            }
            for (int j = 0; j < topK; j++) {
                weight[j] /= s;
            }
        }
        float[] out = new float[x.length == 0 ? 0 : router.cols()];
        int inter = gate[0].rows();
        for (int e = 0; e < experts; e++) { // index_add_ order: ascending expert id
            for (int j = 0; j < topK; j++) {
                if (chosen[j] != e) {
                    continue;
                }
                float[] act = new float[inter];
                for (int i = 0; i < inter; i++) {
                    float g = dot(gate[e], i, x, xOff), u = dot(up[e], i, x, xOff);
                    act[i] = g / (1f + dev.lockstep.kernels.Exp.exp(-g)) * u;
                }
                for (int h = 0; h < out.length; h++) {
                    out[h] += weight[j] * dot(down[e], h, act, 0);
                }
            }
        }
        return out;
    }
}
