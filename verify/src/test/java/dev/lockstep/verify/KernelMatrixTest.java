package dev.lockstep.verify;

import dev.lockstep.kernels.DenseFormat;
import dev.lockstep.kernels.Exp;
import dev.lockstep.kernels.Kernels;
import dev.lockstep.kernels.PanamaKernels;
import dev.lockstep.kernels.Rope;
import dev.lockstep.kernels.ScalarKernels;
import dev.lockstep.kernels.WeightFormat;
import dev.lockstep.kernels.WeightLayout;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.memory.KvBlockDescriptor;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.SplittableRandom;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * test-backend-ops for Lockstep: every kernel x weight format x layout, Vector API vs the scalar reference,
 * on awkward sizes (vector-width +- 1, primes, 4097) and unaligned offsets. Every kernel's operation order is
 * fixed by its definition (sequential fma chains, elementwise operations, the fma-only exp), so the two must
 * agree bit for bit; closeness to the exact (double) value is checked separately.
 */
class KernelMatrixTest {
    static final int[] SIZES = {1, 7, 31, 32, 33, 255, 4097};
    static final Kernels SCALAR = new ScalarKernels();
    static final Kernels SIMD = new PanamaKernels();
    static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfFloat FLOAT_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** A width the CPU lacks would run the Vector API's slow Java fallback: skip it there (run where it exists). */
    @org.junit.jupiter.api.BeforeAll
    static void widthSupported() {
        assumeWidthSupported();
    }

    static void assumeWidthSupported() {
        int preferred = jdk.incubator.vector.FloatVector.SPECIES_PREFERRED.vectorBitSize();
        int requested = Integer.getInteger("lockstep.vector.bits", preferred);
        org.junit.jupiter.api.Assumptions.assumeTrue(requested <= preferred,
                requested + "-bit vectors requested, this CPU's widest is " + preferred + " bits");
    }

    static float[] random(int n, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) (r.nextDouble() * 2 - 1);
        }
        return x;
    }

    /** A matrix whose values are exactly representable in every format (bf16-rounded), stored in {@code format}. */
    static void set(DenseFormat format, MemorySegment seg, long i, float v) {
        if (format == WeightFormat.BF16) {
            seg.set(SHORT_LE, 2 * i, (short) (Float.floatToRawIntBits(v) >>> 16));
        } else if (format == WeightFormat.F16) {
            seg.set(SHORT_LE, 2 * i, Float.floatToFloat16(v));
        } else {
            seg.set(FLOAT_LE, 4 * i, v);
        }
    }

    static WeightMatrix matrix(DenseFormat format, int rows, int cols, long seed, Arena arena, long padBytes) {
        float[] v = random(rows * cols, seed);
        MemorySegment seg = arena.allocate(padBytes + (long) rows * cols * format.bytesPerElement(), 64).asSlice(padBytes);
        for (int i = 0; i < v.length; i++) {
            float bf = Float.intBitsToFloat(Float.floatToIntBits(v[i]) & 0xffff0000);
            set(format, seg, i, bf);
        }
        return new WeightMatrix("m", format, rows, cols, seg);
    }


    static Stream<Arguments> matmulCases() {
        Stream.Builder<Arguments> b = Stream.builder();
        for (DenseFormat f : new DenseFormat[]{WeightFormat.F32, WeightFormat.BF16, WeightFormat.F16}) {
            for (int cols : SIZES) {
                for (int tokens : new int[]{1, 2, 3, 4, 9, 11}) {
                    b.add(Arguments.of(f, cols, tokens));
                }
            }
        }
        return b.build();
    }

    @ParameterizedTest(name = "{0} cols={1} tokens={2}")
    @MethodSource("matmulCases")
    void matmulIsBitIdenticalToTheSequentialFmaReference(DenseFormat format, int cols, int tokens) {
        int t = SIMD.tileRows();
        // Six tiles, the last partial: one full group of four tiles and a group of two in the matvec kernel.
        int rows = 5 * t + 3;
        // Row ranges that start or end inside each tile position of a group (the masked stores), or cover all.
        int[][] ranges = {{0, rows}, {1, rows - 1}, {t + 1, 2 * t - 1}, {2 * t + 2, 3 * t + 1}, {3 * t - 1, 4 * t + 3},
                {t - 1, 5 * t + 2}};
        try (Arena arena = Arena.ofConfined()) {
            WeightMatrix w = matrix(format, rows, cols, cols * 31L + tokens, arena, 2); // 2-byte misaligned
            long packedBytes = WeightMatrix.byteSize(WeightLayout.TILED, format, rows, cols, t);
            WeightMatrix tiled = w.packTiled(t, arena.allocate(packedBytes, 64));
            // The vector kernels refuse a layout they were not written for (no silent slow path).
            org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                    () -> SIMD.matmul(w, new float[cols], 0, cols, 1, new float[rows], 0, rows, 0, rows));
            for (int r = 0; r < rows; r += 5) {
                for (int c = 0; c < cols; c += 3) {
                    assertEquals(w.get(r, c), tiled.get(r, c), "packing moves (" + r + ", " + c + ")");
                }
            }
            int xOff = 3, xStride = cols + 5, outOff = 1, outStride = rows + 2;
            float[] x = random(xOff + tokens * xStride, 99);
            for (int[] range : ranges) {
                int rowStart = range[0], rowEnd = range[1];
                float[] expected = new float[outOff + tokens * outStride];
                for (int tok = 0; tok < tokens; tok++) {
                    for (int r = rowStart; r < rowEnd; r++) {
                        float acc = 0f;
                        for (int k = 0; k < cols; k++) {
                            acc = Math.fma(w.get(r, k), x[xOff + tok * xStride + k], acc);
                        }
                        expected[outOff + tok * outStride + r] = acc;
                    }
                }
                String where = " rows [" + rowStart + ", " + rowEnd + ")";
                for (Kernels k : new Kernels[]{SCALAR, SIMD}) {
                    for (WeightMatrix m : k == SIMD ? new WeightMatrix[]{tiled} : new WeightMatrix[]{w, tiled}) {
                        float[] actual = new float[expected.length];
                        k.matmul(m, x, xOff, xStride, tokens, actual, outOff, outStride, rowStart, rowEnd);
                        assertArrayEquals(expected, actual, k.name() + " on " + m + where);
                        // a token computed alone equals the same token computed in a block
                        for (int tok = 0; tok < tokens; tok++) {
                            float[] alone = new float[rows];
                            k.matmul(m, x, xOff + tok * xStride, xStride, 1, alone, 0, rows, rowStart, rowEnd);
                            assertArrayEquals(java.util.Arrays.copyOfRange(expected, outOff + tok * outStride, outOff + tok * outStride + rows),
                                    alone, k.name() + " token " + tok + " alone on " + m + where);
                        }
                    }
                }
            }
        }
    }

    @ParameterizedTest
    @MethodSource("matmulCases")
    void firstNonFiniteFindsTheFirstBadElement(DenseFormat format, int cols, int tokens) {
        int rows = 3 + tokens;
        try (Arena arena = Arena.ofConfined()) {
            WeightMatrix w = matrix(format, rows, cols, cols + tokens, arena, 0);
            assertEquals(-1L, w.firstNonFinite(), "all finite");
            int bytes = format.bytesPerElement();
            float[] bad = {Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY};
            int[][] at = {{rows - 1, cols - 1}, {rows / 2, cols / 2}, {1, 0}};
            for (int i = 0; i < at.length; i++) {
                long off = ((long) at[i][0] * cols + at[i][1]) * bytes;
                float v = bad[i];
                set(format, w.data(), off / bytes, v);
                // each new bad element comes before the previous ones: it is the one reported
                assertEquals((long) at[i][0] * cols + at[i][1], w.firstNonFinite(), format + " " + v + " at " + java.util.Arrays.toString(at[i]));
            }
        }
    }

    @ParameterizedTest
    @ValueSource(floats = {1e-5f, 1e-3f, 1f})
    void rmsNormNearEpsilonMatchesTheExactFormula(float scale) {
        // With values ~1e-5 the mean square (1e-10) is far below eps (1e-6): eps decides the result.
        int n = 67;
        float[] x = random(n, 5), weight = random(n, 6), out1 = new float[n], out2 = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] *= scale;
        }
        SCALAR.rmsNorm(x, 0, weight, 1e-6f, out1, 0, n);
        SIMD.rmsNorm(x, 0, weight, 1e-6f, out2, 0, n);
        assertArrayEquals(out1, out2);
        double ss = 0;
        for (float v : x) {
            ss += (double) v * v;
        }
        double inv = 1 / Math.sqrt(ss / n + 1e-6f);
        for (int i = 0; i < n; i++) {
            double exact = weight[i] * (x[i] * inv);
            assertEquals(exact, out1[i], 1e-5 * Math.abs(exact) + 1e-12, "element " + i);
        }
    }

    /** Several rows at once (the Vector API implementation runs four rows' chains together) give each row's own bits. */
    @ParameterizedTest
    @ValueSource(ints = {1, 2, 3, 4, 5, 8, 9})
    void rmsNormRowsGiveEachRowsBits(int rows) {
        for (int n : new int[] {7, 64, 256}) {
            int xStride = n + 3, outStride = n + 5;
            float[] x = random(3 + rows * xStride, 40L + rows + n), weight = random(n, 12);
            float[] expected = new float[2 + rows * outStride], got = new float[expected.length];
            for (int r = 0; r < rows; r++) {
                SCALAR.rmsNorm(x, 3 + r * xStride, weight, 1e-6f, expected, 2 + r * outStride, n);
            }
            SIMD.rmsNormRows(x, 3, xStride, rows, weight, 1e-6f, got, 2, outStride, n);
            assertArrayEquals(expected, got, rows + " rows of " + n);
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 7, 31, 32, 33, 255, 4097})
    void vectorOpsMatchScalar(int n) {
        float[] a = random(n + 5, n), b = random(n + 3, n + 1L);
        float[] z1 = random(n + 1, 6), z2 = z1.clone();
        SCALAR.axpy(-1.5f, a, 5, z1, 1, n);
        SIMD.axpy(-1.5f, a, 5, z2, 1, n);
        for (int i = 0; i < n + 1; i++) {
            assertEquals(z1[i], z2[i], "axpy is elementwise and must match exactly at " + i);
        }
        float[] weight = random(n, 11);
        float[] o1 = new float[n + 4], o2 = new float[n + 4];
        SCALAR.rmsNorm(a, 5, weight, 1e-6f, o1, 4, n);
        SIMD.rmsNorm(a, 5, weight, 1e-6f, o2, 4, n);
        assertArrayEquals(o1, o2, "rmsNorm is bit-identical");
        double ss = 0;
        for (int i = 0; i < n; i++) {
            ss += (double) a[5 + i] * a[5 + i];
        }
        double inv = 1 / Math.sqrt(ss / n + 1e-6);
        for (int i = 0; i < n; i++) {
            double exact = weight[i] * a[5 + i] * inv;
            assertEquals(exact, o1[4 + i], 1e-5 * Math.abs(exact) + 1e-7, "rmsNorm close to the exact value at " + i);
        }
        float[] g1 = new float[n + 1], g2 = new float[n + 1];
        SCALAR.siluMul(a, 5, b, 3, g1, 1, n);
        SIMD.siluMul(a, 5, b, 3, g2, 1, n);
        for (int i = 0; i < n; i++) {
            float g = a[5 + i];
            float expected = g / (1f + Exp.exp(-g)) * b[3 + i];
            assertEquals(expected, g1[1 + i], "scalar siluMul formula at " + i);
            assertEquals(expected, g2[1 + i], "simd siluMul at " + i);
            double exact = g / (1 + Math.exp(-g)) * b[3 + i];
            assertEquals(exact, expected, 1e-6 * Math.abs(exact) + 1e-30, "siluMul close to the exact value at " + i);
        }
        float[] s1 = random(n + 2, n + 9), s2 = s1.clone();
        for (int i = 0; i < n + 2; i++) {
            s1[i] *= 30f;
            s2[i] = s1[i];
        }
        SCALAR.softmax(s1, 2, n);
        SIMD.softmax(s2, 2, n);
        assertArrayEquals(s1, s2, "softmax is bit-identical");
    }

    /** Arguments across exp's whole range, its clamps at -87 and 88 and their neighbours included. */
    static final float[] EXP_ARGS = {-200f, -88.5f, Math.nextDown(-87f), -87f, Math.nextUp(-87f), -86.9f, -50.25f, -10f, -1f,
            -1e-3f, -0f, 0f, 1e-7f, 0.3465f, 0.5f, 1f, 2f, 10f, 44.4f, 87.9f, Math.nextDown(88f), 88f, Math.nextUp(88f), 100f, 300f};

    @ParameterizedTest
    @ValueSource(floats = {-200f, -87.5f, -87f, -50.25f, -10f, -1f, -1e-3f, -0f, 0f, 1e-7f, 0.3465f, 0.5f, 1f, 2f, 10f, 44.4f, 87.9f, 88f, 100f})
    void expIsAccurate(float x) {
        double exact = Math.exp(Math.max(Math.min(x, 88f), -87f));
        float ours = Exp.exp(x);
        if (x < -87f) {
            assertEquals(0f, ours, "below the range exp is 0");
        } else {
            assertEquals(exact, ours, 2 * Math.ulp((float) exact), "exp(" + x + ") within 2 ulp");
        }
    }

    @org.junit.jupiter.api.Test
    void vectorExpMatchesScalarAcrossTheClamps() {
        // siluMul evaluates exp(-g): gates from -300 to 200 drive it through both clamps, in every lane position.
        int n = EXP_ARGS.length * 3 + 5;
        float[] gate = new float[n], up = new float[n];
        for (int i = 0; i < n; i++) {
            gate[i] = -EXP_ARGS[i % EXP_ARGS.length] * (i < EXP_ARGS.length ? 1 : i < 2 * EXP_ARGS.length ? 0.999f : 1.001f);
            up[i] = 1.25f;
        }
        float[] a = new float[n], b = new float[n];
        SCALAR.siluMul(gate, 0, up, 0, a, 0, n);
        SIMD.siluMul(gate, 0, up, 0, b, 0, n);
        for (int i = 0; i < n; i++) {
            float g = gate[i];
            assertEquals(g / (1f + Exp.exp(-g)) * up[i], a[i], "scalar siluMul at gate " + g);
            assertEquals(Float.floatToRawIntBits(a[i]), Float.floatToRawIntBits(b[i]), "vector exp path at gate " + g);
        }
        // softmax evaluates exp(x - max) <= 0: a row spanning 400 puts many arguments below -87 (exp = 0).
        float[] row = new float[n];
        for (int i = 0; i < n; i++) {
            row[i] = EXP_ARGS[i % EXP_ARGS.length] + (i / EXP_ARGS.length) * 0.37f;
        }
        float[] s1 = row.clone(), s2 = row.clone();
        SCALAR.softmax(s1, 0, n);
        SIMD.softmax(s2, 0, n);
        int zeros = 0;
        for (int i = 0; i < n; i++) {
            assertEquals(Float.floatToRawIntBits(s1[i]), Float.floatToRawIntBits(s2[i]), "softmax at " + i + " (x = " + row[i] + ")");
            zeros += s1[i] == 0f ? 1 : 0;
        }
        assertTrue(zeros > 0, "the lower clamp was exercised");
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 16, 33, 4096})
    void softmaxSumsToOneAndPreservesOrder(int n) {
        float[] x = random(n + 2, n);
        float[] p = x.clone();
        SIMD.softmax(p, 2, n);
        double sum = 0;
        for (int i = 0; i < n; i++) {
            sum += p[2 + i];
            assertTrue(p[2 + i] > 0f);
        }
        assertEquals(1.0, sum, 1e-5);
        if (n > 1) {
            assertEquals(x[2] > x[3], p[2] > p[3]);
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {0, 1, 511, 2047, 5000})
    void ropeRotatesHalvesAndKeepsNorm(int pos) {
        int headDim = 64;
        Rope rope = new Rope(headDim, 10000.0, 16);
        rope.ensurePositions(pos + 1);
        float[] x = random(headDim + 3, pos);
        float[] y = x.clone();
        rope.apply(y, 3, pos);
        double before = 0, after = 0;
        for (int i = 0; i < headDim; i++) {
            before += x[3 + i] * x[3 + i];
            after += y[3 + i] * y[3 + i];
        }
        assertEquals(before, after, 1e-5 * before, "rotation keeps the norm");
        // Dimension pair (0, 32) rotates by pos * invFreq[0] = pos radians.
        double angle = (float) pos * 1.0f;
        assertEquals(x[3] * Math.cos(angle) - x[3 + 32] * Math.sin(angle), y[3], 1e-5);
        if (pos == 0) {
            for (int i = 0; i < headDim; i++) {
                assertEquals(x[3 + i], y[3 + i], "position 0 is the identity");
            }
        }
    }

    /** Query heads per kv head 1..5 (pairs and an odd one out) x the head dims MoE families use (8 .. 192). */
    static Stream<Arguments> attentionCases() {
        Stream.Builder<Arguments> b = Stream.builder();
        for (int heads : new int[]{1, 2, 3, 4, 5}) {
            for (int headDim : new int[]{8, 16, 64, 128, 192}) {
                b.add(Arguments.of(heads, headDim));
            }
        }
        return b.build();
    }

    @ParameterizedTest(name = "heads={0} headDim={1}")
    @MethodSource("attentionCases")
    void attentionKernelsAreBitIdenticalToTheReference(int heads, int headDim) {
        int kvHeads = 2, block = KvBlockDescriptor.BLOCK_TOKENS;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment keys = arena.allocate(KvBlockDescriptor.blockBytes(kvHeads, headDim), 64);
            MemorySegment values = arena.allocate(KvBlockDescriptor.blockBytes(kvHeads, headDim), 64);
            float[] kv = random(2 * kvHeads * headDim * block, heads);
            MemorySegment.copy(kv, 0, keys, ValueLayout.JAVA_FLOAT, 0, kvHeads * headDim * block);
            MemorySegment.copy(kv, kvHeads * headDim * block, values, ValueLayout.JAVA_FLOAT, 0, kvHeads * headDim * block);
            float[] q = random(2 + heads * headDim, 17 + headDim);
            long keyHead = KvBlockDescriptor.keyHeadOffsetBytes(headDim, 1);
            int stride = 2 * block;
            float[] expected = new float[heads * stride + 1];
            for (int h = 0; h < heads; h++) {
                for (int slot = 0; slot < block; slot++) {
                    float acc = 0f;
                    for (int d = 0; d < headDim; d++) {
                        acc = Math.fma(q[2 + h * headDim + d], keys.get(ValueLayout.JAVA_FLOAT, keyHead + KvBlockDescriptor.keyOffsetBytes(headDim, 0, d, slot)), acc);
                    }
                    expected[1 + h * stride + slot] = acc;
                }
            }
            for (Kernels k : new Kernels[]{SCALAR, SIMD}) {
                float[] scores = new float[expected.length];
                k.attentionScores(q, 2, heads, headDim, new MemorySegment[]{keys}, new long[]{keyHead}, 1, scores, 1, stride);
                assertArrayEquals(expected, scores, k.name() + " scores");
            }
            // 1-9 blocks, each in its own segment at its own offset (pages of a pool): four at a time, then the rest
            for (int nBlocks : new int[]{2, 3, 4, 5, 9}) {
                MemorySegment[] blockKeys = new MemorySegment[nBlocks];
                long[] offsets = new long[nBlocks];
                int blockStride = nBlocks * block;
                float[] expectedBlocks = new float[heads * blockStride + 1];
                for (int i = 0; i < nBlocks; i++) {
                    offsets[i] = 64L * (i % 3) + keyHead;
                    blockKeys[i] = arena.allocate(offsets[i] + KvBlockDescriptor.blockBytes(kvHeads, headDim), 64);
                    float[] kb = random(headDim * block, 31 * i + heads);
                    MemorySegment.copy(kb, 0, blockKeys[i], ValueLayout.JAVA_FLOAT, offsets[i], headDim * block);
                    for (int h = 0; h < heads; h++) {
                        for (int slot = 0; slot < block; slot++) {
                            float acc = 0f;
                            for (int d = 0; d < headDim; d++) {
                                acc = Math.fma(q[2 + h * headDim + d], kb[d * block + slot], acc);
                            }
                            expectedBlocks[1 + h * blockStride + i * block + slot] = acc;
                        }
                    }
                }
                for (Kernels k : new Kernels[]{SCALAR, SIMD}) {
                    float[] scores = new float[expectedBlocks.length];
                    k.attentionScores(q, 2, heads, headDim, blockKeys, offsets, nBlocks, scores, 1, blockStride);
                    assertArrayEquals(expectedBlocks, scores, k.name() + " scores, " + nBlocks + " blocks");
                }
            }
            long valueHead = KvBlockDescriptor.valueOffsetBytes(kvHeads, headDim, 0, 1, 0);
            long rowBytes = (long) kvHeads * headDim * Float.BYTES;
            for (int slots : new int[]{1, 7, block}) {
                float[] expectedOut = random(3 + heads * headDim, 23);
                float[] start = expectedOut.clone();
                for (int h = 0; h < heads; h++) {
                    for (int slot = 0; slot < slots; slot++) {
                        for (int d = 0; d < headDim; d++) {
                            int o = 3 + h * headDim + d;
                            expectedOut[o] = Math.fma(expected[1 + h * stride + slot],
                                    values.get(ValueLayout.JAVA_FLOAT, valueHead + slot * rowBytes + 4L * d), expectedOut[o]);
                        }
                    }
                }
                for (Kernels k : new Kernels[]{SCALAR, SIMD}) {
                    float[] out = start.clone();
                    k.attentionValues(expected, 1, stride, heads, slots, values, valueHead, rowBytes, out, 3, headDim);
                    assertArrayEquals(expectedOut, out, k.name() + " values, " + slots + " slots");
                }
            }
        }
    }
}
