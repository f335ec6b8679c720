package dev.lockstep.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

/**
 * Vector API kernels. Vector width comes from {@code -Dlockstep.vector.bits} (128, 256, 512; default: the
 * platform's preferred width), chosen once at class load.
 *
 * <p>Matmul runs on {@link WeightLayout#TILED} bf16 weights with one vector lane per row, so each output
 * is a sequential fma chain over the columns (the definition in {@link Kernels#matmul}): no horizontal
 * reduction, bit-identical to {@link ScalarKernels} and to any other vector width. Working on 4 tiles
 * (decode) or 8 tokens (prefill) at a time only shares loads. F32 and F16 weights take the reference path
 * (correct, not fast yet).
 *
 * <p>There are no horizontal additions anywhere (only softmax's max, which is exact in any order):
 * {@code reduceLanes(ADD)}'s lane order is unspecified and
 * differs between the interpreter's fallback and C2's intrinsic, which would make a token's logits depend
 * on JIT timing. The remaining sequential sums (RMSNorm's sum of squares, softmax's denominator) are
 * shared scalar code, so every kernel here is bit-identical to {@link ScalarKernels}.
 */
public final class PanamaKernels implements Kernels {
    static final VectorSpecies<Float> F;
    static final VectorSpecies<Integer> I;
    static final int LANES;

    static {
        int bits = Integer.getInteger("lockstep.vector.bits", FloatVector.SPECIES_PREFERRED.vectorBitSize());
        F = VectorSpecies.of(float.class, VectorShape.forBitSize(bits));
        I = VectorSpecies.of(int.class, VectorShape.forBitSize(bits));
        LANES = F.length();
    }

    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();
    private static final int TILE = 4;

    @Override
    public String name() {
        return "panama-" + F.vectorBitSize();
    }

    @Override
    public int tileRows() {
        return LANES;
    }

    @Override
    public void matmul(WeightMatrix w, float[] x, int xOff, int xStride, int nTokens,
                       float[] out, int outOff, int outStride, int rowStart, int rowEnd) {
        if (vectorizedMatmul(w)) {
            if (nTokens == 1) {
                matvecTiledBf16(w, x, xOff, out, outOff, rowStart, rowEnd);
            } else {
                matmulTiledBf16(w, x, xOff, xStride, nTokens, out, outOff, outStride, rowStart, rowEnd);
            }
        } else {
            // Other formats/layouts: the definition itself (correct, slow); the loader packs bf16 weights tiled.
            ScalarKernels.matmulSequentialFma(w, x, xOff, xStride, nTokens, out, outOff, outStride, rowStart, rowEnd);
        }
    }

    /*
     * Tiled bf16 kernels. Lane i of an accumulator is row (tile * LANES + i); each 32-bit load holds columns
     * (2p, 2p+1) of LANES rows, widened exactly by a shift (low half) and a mask (high half). Per column the
     * accumulator takes one fma with the broadcast activation: the sequential chain Kernels.matmul defines.
     */

    private static FloatVector lowBf16(IntVector pair) {
        return pair.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }

    private static FloatVector highBf16(IntVector pair) {
        return pair.lanewise(VectorOperators.AND, 0xffff0000).reinterpretAsFloats();
    }

    /*
     * All vector loops live in a few large body methods that are only ever called, never inlined (they are
     * far above C2's FreqInlineSize). A small vector helper inlined deep into a big caller can push that
     * compilation past C2's budget; C2 then stops intrinsifying the Vector API calls and runs their Java
     * fallback, which allocates on every operation (measured: ~2 GB/s of garbage and half the decode
     * speed, from a 165-byte remainder helper inlined through Compute.matmul). Remainders therefore reuse
     * the full bodies with their extra lanes clamped onto a valid tile or token and not stored.
     */

    /** One token: groups of 4 tiles, four independent fma chains to hide the fma latency. */
    private static void matvecTiledBf16(WeightMatrix w, float[] x, int xOff, float[] out, int outOff, int rowStart, int rowEnd) {
        int tile0 = rowStart / LANES, tile1 = (rowEnd + LANES - 1) / LANES;
        for (int j = tile0; j < tile1; j += TILE) {
            matvecFourTiles(w, j, Math.min(TILE, tile1 - j), x, xOff, out, outOff, rowStart, rowEnd);
        }
    }

    /** Tiles {@code j .. j+valid-1} (valid in 1..4; the unused chains recompute the last valid tile). */
    private static void matvecFourTiles(WeightMatrix w, int j, int valid, float[] x, int xOff, float[] out, int outOff,
                                        int rowStart, int rowEnd) {
        MemorySegment seg = w.data();
        int cols = w.cols(), pairs = cols / 2;
        long pairBytes = 4L * LANES;
        int last = j + valid - 1;
        long b0 = w.tileOffsetBytes(j), b1 = w.tileOffsetBytes(Math.min(j + 1, last));
        long b2 = w.tileOffsetBytes(Math.min(j + 2, last)), b3 = w.tileOffsetBytes(Math.min(j + 3, last));
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int p = 0; p < pairs; p++) {
            long o = p * pairBytes;
            FloatVector x0 = FloatVector.broadcast(F, x[xOff + 2 * p]);
            FloatVector x1 = FloatVector.broadcast(F, x[xOff + 2 * p + 1]);
            IntVector w0 = IntVector.fromMemorySegment(I, seg, b0 + o, LE);
            IntVector w1 = IntVector.fromMemorySegment(I, seg, b1 + o, LE);
            IntVector w2 = IntVector.fromMemorySegment(I, seg, b2 + o, LE);
            IntVector w3 = IntVector.fromMemorySegment(I, seg, b3 + o, LE);
            a0 = highBf16(w0).fma(x1, lowBf16(w0).fma(x0, a0));
            a1 = highBf16(w1).fma(x1, lowBf16(w1).fma(x0, a1));
            a2 = highBf16(w2).fma(x1, lowBf16(w2).fma(x0, a2));
            a3 = highBf16(w3).fma(x1, lowBf16(w3).fma(x0, a3));
        }
        if ((cols & 1) != 0) {
            long o = pairs * pairBytes;
            FloatVector x0 = FloatVector.broadcast(F, x[xOff + cols - 1]);
            a0 = lowBf16(IntVector.fromMemorySegment(I, seg, b0 + o, LE)).fma(x0, a0);
            a1 = lowBf16(IntVector.fromMemorySegment(I, seg, b1 + o, LE)).fma(x0, a1);
            a2 = lowBf16(IntVector.fromMemorySegment(I, seg, b2 + o, LE)).fma(x0, a2);
            a3 = lowBf16(IntVector.fromMemorySegment(I, seg, b3 + o, LE)).fma(x0, a3);
        }
        storeTile(a0, j, out, outOff, rowStart, rowEnd);
        if (valid > 1) {
            storeTile(a1, j + 1, out, outOff, rowStart, rowEnd);
        }
        if (valid > 2) {
            storeTile(a2, j + 2, out, outOff, rowStart, rowEnd);
        }
        if (valid > 3) {
            storeTile(a3, j + 3, out, outOff, rowStart, rowEnd);
        }
    }

    /** Several tokens: per tile, groups of 8 tokens (eight fma chains, one weight load per 8 tokens). */
    private static void matmulTiledBf16(WeightMatrix w, float[] x, int xOff, int xStride, int nTokens,
                                        float[] out, int outOff, int outStride, int rowStart, int rowEnd) {
        int tile0 = rowStart / LANES, tile1 = (rowEnd + LANES - 1) / LANES;
        for (int j = tile0; j < tile1; j++) {
            for (int t = 0; t < nTokens; t += 8) {
                matmulEightTokens(w, j, Math.min(8, nTokens - t), x, xOff + t * xStride, xStride, out, outOff + t * outStride,
                        outStride, rowStart, rowEnd);
            }
        }
    }

    /**
     * Tile {@code j} against tokens {@code 0 .. valid-1} starting at {@code x[xOff]} (valid in 1..8; unused
     * chains recompute the last valid token); eight independent fma chains fit AVX2's 16 registers.
     */
    private static void matmulEightTokens(WeightMatrix w, int j, int valid, float[] x, int xOff, int xStride,
                                          float[] out, int outOff, int outStride, int rowStart, int rowEnd) {
        MemorySegment seg = w.data();
        int cols = w.cols(), pairs = cols / 2;
        long pairBytes = 4L * LANES;
        long b = w.tileOffsetBytes(j);
        int last = xOff + (valid - 1) * xStride;
        int x0 = xOff, x1 = Math.min(x0 + xStride, last), x2 = Math.min(x0 + 2 * xStride, last), x3 = Math.min(x0 + 3 * xStride, last);
        int x4 = Math.min(x0 + 4 * xStride, last), x5 = Math.min(x0 + 5 * xStride, last);
        int x6 = Math.min(x0 + 6 * xStride, last), x7 = Math.min(x0 + 7 * xStride, last);
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        for (int p = 0; p < pairs; p++) {
            IntVector pair = IntVector.fromMemorySegment(I, seg, b + p * pairBytes, LE);
            int k = 2 * p;
            FloatVector lo = lowBf16(pair);
            a0 = lo.fma(FloatVector.broadcast(F, x[x0 + k]), a0);
            a1 = lo.fma(FloatVector.broadcast(F, x[x1 + k]), a1);
            a2 = lo.fma(FloatVector.broadcast(F, x[x2 + k]), a2);
            a3 = lo.fma(FloatVector.broadcast(F, x[x3 + k]), a3);
            a4 = lo.fma(FloatVector.broadcast(F, x[x4 + k]), a4);
            a5 = lo.fma(FloatVector.broadcast(F, x[x5 + k]), a5);
            a6 = lo.fma(FloatVector.broadcast(F, x[x6 + k]), a6);
            a7 = lo.fma(FloatVector.broadcast(F, x[x7 + k]), a7);
            FloatVector hi = highBf16(pair);
            a0 = hi.fma(FloatVector.broadcast(F, x[x0 + k + 1]), a0);
            a1 = hi.fma(FloatVector.broadcast(F, x[x1 + k + 1]), a1);
            a2 = hi.fma(FloatVector.broadcast(F, x[x2 + k + 1]), a2);
            a3 = hi.fma(FloatVector.broadcast(F, x[x3 + k + 1]), a3);
            a4 = hi.fma(FloatVector.broadcast(F, x[x4 + k + 1]), a4);
            a5 = hi.fma(FloatVector.broadcast(F, x[x5 + k + 1]), a5);
            a6 = hi.fma(FloatVector.broadcast(F, x[x6 + k + 1]), a6);
            a7 = hi.fma(FloatVector.broadcast(F, x[x7 + k + 1]), a7);
        }
        if ((cols & 1) != 0) {
            FloatVector lo = lowBf16(IntVector.fromMemorySegment(I, seg, b + pairs * pairBytes, LE));
            int k = cols - 1;
            a0 = lo.fma(FloatVector.broadcast(F, x[x0 + k]), a0);
            a1 = lo.fma(FloatVector.broadcast(F, x[x1 + k]), a1);
            a2 = lo.fma(FloatVector.broadcast(F, x[x2 + k]), a2);
            a3 = lo.fma(FloatVector.broadcast(F, x[x3 + k]), a3);
            a4 = lo.fma(FloatVector.broadcast(F, x[x4 + k]), a4);
            a5 = lo.fma(FloatVector.broadcast(F, x[x5 + k]), a5);
            a6 = lo.fma(FloatVector.broadcast(F, x[x6 + k]), a6);
            a7 = lo.fma(FloatVector.broadcast(F, x[x7 + k]), a7);
        }
        // Stores without an array of vectors: an array would force C2 to box them.
        int o = outOff;
        storeTile(a0, j, out, o, rowStart, rowEnd);
        if (valid > 1) {
            storeTile(a1, j, out, o + outStride, rowStart, rowEnd);
        }
        if (valid > 2) {
            storeTile(a2, j, out, o + 2 * outStride, rowStart, rowEnd);
        }
        if (valid > 3) {
            storeTile(a3, j, out, o + 3 * outStride, rowStart, rowEnd);
        }
        if (valid > 4) {
            storeTile(a4, j, out, o + 4 * outStride, rowStart, rowEnd);
        }
        if (valid > 5) {
            storeTile(a5, j, out, o + 5 * outStride, rowStart, rowEnd);
        }
        if (valid > 6) {
            storeTile(a6, j, out, o + 6 * outStride, rowStart, rowEnd);
        }
        if (valid > 7) {
            storeTile(a7, j, out, o + 7 * outStride, rowStart, rowEnd);
        }
    }

    /** Writes the lanes of tile {@code j} whose rows fall in {@code [rowStart, rowEnd)} to {@code out[outOff + row]}. */
    private static void storeTile(FloatVector acc, int j, float[] out, int outOff, int rowStart, int rowEnd) {
        int r0 = j * LANES;
        if (r0 >= rowStart && r0 + LANES <= rowEnd) {
            acc.intoArray(out, outOff + r0);
        } else {
            for (int r = Math.max(r0, rowStart); r < Math.min(r0 + LANES, rowEnd); r++) {
                out[outOff + r] = acc.lane(r - r0);
            }
        }
    }

    @Override
    public void axpy(float alpha, float[] x, int xOff, float[] y, int yOff, int n) {
        int bound = F.loopBound(n);
        FloatVector av = FloatVector.broadcast(F, alpha);
        for (int i = 0; i < bound; i += LANES) {
            FloatVector.fromArray(F, x, xOff + i).mul(av).add(FloatVector.fromArray(F, y, yOff + i)).intoArray(y, yOff + i);
        }
        for (int i = bound; i < n; i++) {
            y[yOff + i] += alpha * x[xOff + i];
        }
    }

    @Override
    public void rmsNorm(float[] x, int xOff, float[] weight, float eps, float[] out, int outOff, int n) {
        float inv = ScalarKernels.rmsInverse(x, xOff, eps, n);
        FloatVector iv = FloatVector.broadcast(F, inv);
        int bound = F.loopBound(n);
        for (int i = 0; i < bound; i += LANES) {
            FloatVector.fromArray(F, weight, i).mul(FloatVector.fromArray(F, x, xOff + i).mul(iv)).intoArray(out, outOff + i);
        }
        for (int i = bound; i < n; i++) {
            out[outOff + i] = weight[i] * (x[xOff + i] * inv);
        }
    }

    /** Vector form of {@link Exp#exp}: the same operations in the same order, lane by lane. */
    static FloatVector expVector(FloatVector x) {
        FloatVector xc = x.min(Exp.MAX_INPUT).max(Exp.MIN_INPUT);
        FloatVector t = xc.fma(Exp.LOG2E, Exp.MAGIC);
        FloatVector n = t.sub(Exp.MAGIC);
        FloatVector r = n.fma(FloatVector.broadcast(F, -Exp.LN2_HI), xc);
        r = n.fma(FloatVector.broadcast(F, -Exp.LN2_LO), r);
        FloatVector p = FloatVector.broadcast(F, Exp.P0).fma(r, FloatVector.broadcast(F, Exp.P1));
        p = p.fma(r, FloatVector.broadcast(F, Exp.P2));
        p = p.fma(r, FloatVector.broadcast(F, Exp.P3));
        p = p.fma(r, FloatVector.broadcast(F, Exp.P4));
        p = p.fma(r, FloatVector.broadcast(F, Exp.P5));
        FloatVector y = p.fma(r.mul(r), r).add(1f);
        FloatVector scale = ((IntVector) t.reinterpretAsInts()).sub(Exp.MAGIC_BITS - 127).lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats();
        FloatVector e = y.mul(scale);
        return e.blend(0f, x.lt(Exp.MIN_INPUT));
    }

    @Override
    public void siluMul(float[] gate, int gateOff, float[] up, int upOff, float[] out, int outOff, int n) {
        int bound = F.loopBound(n);
        for (int i = 0; i < bound; i += LANES) {
            FloatVector g = FloatVector.fromArray(F, gate, gateOff + i);
            g.div(expVector(g.neg()).add(1f)).mul(FloatVector.fromArray(F, up, upOff + i)).intoArray(out, outOff + i);
        }
        ScalarKernels.siluMulScalar(gate, gateOff + bound, up, upOff + bound, out, outOff + bound, n - bound);
    }

    @Override
    public void softmax(float[] x, int off, int n) {
        int bound = F.loopBound(n);
        // max is exact in any order
        FloatVector mv = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
        for (int i = 0; i < bound; i += LANES) {
            mv = mv.max(FloatVector.fromArray(F, x, off + i));
        }
        float max = mv.reduceLanes(VectorOperators.MAX);
        for (int i = bound; i < n; i++) {
            max = Math.max(max, x[off + i]);
        }
        for (int i = 0; i < bound; i += LANES) {
            expVector(FloatVector.fromArray(F, x, off + i).sub(max)).intoArray(x, off + i);
        }
        for (int i = bound; i < n; i++) {
            x[off + i] = Exp.exp(x[off + i] - max);
        }
        // the sum stays sequential: its order is part of the definition
        float sum = 0f;
        for (int i = 0; i < n; i++) {
            sum += x[off + i];
        }
        float inv = 1.0f / sum;
        for (int i = 0; i < bound; i += LANES) {
            FloatVector.fromArray(F, x, off + i).mul(inv).intoArray(x, off + i);
        }
        for (int i = bound; i < n; i++) {
            x[off + i] *= inv;
        }
    }

    private static final int BLOCK = dev.lockstep.memory.KvBlockDescriptor.BLOCK_TOKENS;
    /** Shapes the vector path does not cover fall back to the definition (same bits, slower). */
    private static final ScalarKernels REFERENCE = new ScalarKernels();

    @Override
    public void attentionScores(float[] q, int qOff, int nHeads, int headDim, MemorySegment keys, long keyHeadOffsetBytes,
                                float[] scores, int scoresOff, int scoresStride) {
        if (LANES > BLOCK || BLOCK % LANES != 0) {
            REFERENCE.attentionScores(q, qOff, nHeads, headDim, keys, keyHeadOffsetBytes, scores, scoresOff, scoresStride);
            return;
        }
        // Query heads in pairs (two heads share each key load), then one left over for an odd group.
        for (int h = 0; h < nHeads; h += 2) {
            scoresHeads(q, qOff + h * headDim, h + 1 < nHeads, headDim, keys, keyHeadOffsetBytes, scores,
                    scoresOff + h * scoresStride, scoresStride);
        }
    }

    /** One or two query heads against one key block; one body so the vector loops stay in one large method. */
    private static void scoresHeads(float[] q, int q0, boolean two, int headDim, MemorySegment keys, long keyHeadOffsetBytes,
                                    float[] scores, int scoresOff, int scoresStride) {
        long rowBytes = 4L * BLOCK;
        int q1 = q0 + headDim;
        for (int g = 0; g < BLOCK; g += LANES) {
            long base = keyHeadOffsetBytes + 4L * g;
            if (two) {
                FloatVector a0 = FloatVector.zero(F), a1 = a0;
                for (int d = 0; d < headDim; d++) {
                    FloatVector k = FloatVector.fromMemorySegment(F, keys, base + d * rowBytes, NATIVE);
                    a0 = FloatVector.broadcast(F, q[q0 + d]).fma(k, a0);
                    a1 = FloatVector.broadcast(F, q[q1 + d]).fma(k, a1);
                }
                a0.intoArray(scores, scoresOff + g);
                a1.intoArray(scores, scoresOff + scoresStride + g);
            } else {
                FloatVector a0 = FloatVector.zero(F);
                for (int d = 0; d < headDim; d++) {
                    a0 = FloatVector.broadcast(F, q[q0 + d]).fma(FloatVector.fromMemorySegment(F, keys, base + d * rowBytes, NATIVE), a0);
                }
                a0.intoArray(scores, scoresOff + g);
            }
        }
    }

    /** Whether {@link #matmul} has a Vector API path for this matrix (the rest run the definition, correct and slow). */
    public static boolean vectorizedMatmul(WeightMatrix w) {
        return w.format() == WeightFormat.BF16 && w.layout() == WeightLayout.TILED && w.tileRows() == LANES;
    }

    @Override
    public void attentionValues(float[] p, int pOff, int pStride, int nHeads, int nSlots, MemorySegment values,
                                long valueOffsetBytes, long valueRowBytes, float[] out, int outOff, int headDim) {
        // Four output vectors stay in registers across all slots (one load and one store per block, not per
        // slot); each out[d] still takes its fmas in slot order, the order Kernels defines. Every query head
        // of the group reads the same kv-head rows.
        int quad = 4 * LANES;
        int quadBound = headDim - headDim % quad;
        for (int h = 0; h < nHeads; h++) {
            int o = outOff + h * headDim;
            int pBase = pOff + h * pStride;
            for (int d = 0; d < quadBound; d += quad) {
                valuesFourVectors(p, pBase, nSlots, values, valueOffsetBytes + 4L * d, valueRowBytes, out, o + d);
            }
            for (int d = quadBound; d < headDim; d++) {
                float acc = out[o + d];
                for (int s = 0; s < nSlots; s++) {
                    acc = Math.fma(p[pBase + s], values.get(ScalarKernels.F32_NATIVE, valueOffsetBytes + s * valueRowBytes + 4L * d), acc);
                }
                out[o + d] = acc;
            }
        }
    }

    private static void valuesFourVectors(float[] p, int pBase, int nSlots, MemorySegment values, long base, long rowBytes,
                                          float[] out, int o) {
        FloatVector a0 = FloatVector.fromArray(F, out, o);
        FloatVector a1 = FloatVector.fromArray(F, out, o + LANES);
        FloatVector a2 = FloatVector.fromArray(F, out, o + 2 * LANES);
        FloatVector a3 = FloatVector.fromArray(F, out, o + 3 * LANES);
        long l1 = 4L * LANES, l2 = 2 * l1, l3 = 3 * l1;
        for (int s = 0; s < nSlots; s++) {
            long row = base + s * rowBytes;
            FloatVector w = FloatVector.broadcast(F, p[pBase + s]);
            a0 = w.fma(FloatVector.fromMemorySegment(F, values, row, NATIVE), a0);
            a1 = w.fma(FloatVector.fromMemorySegment(F, values, row + l1, NATIVE), a1);
            a2 = w.fma(FloatVector.fromMemorySegment(F, values, row + l2, NATIVE), a2);
            a3 = w.fma(FloatVector.fromMemorySegment(F, values, row + l3, NATIVE), a3);
        }
        a0.intoArray(out, o);
        a1.intoArray(out, o + LANES);
        a2.intoArray(out, o + 2 * LANES);
        a3.intoArray(out, o + 3 * LANES);
    }
}
