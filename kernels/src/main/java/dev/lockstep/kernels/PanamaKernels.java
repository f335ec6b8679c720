package dev.lockstep.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorMask;
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
 * reduction, bit-identical to {@link ScalarKernels} and to any other vector width. Working on 4 tiles (one
 * token), 2 tiles (two tokens) or 8 tokens at a time only shares loads. F32 and F16 have their own bodies here, NVFP4
 * lives in {@link Nvfp4VectorKernel}; each format's {@link WeightFormat#matmulVector} picks its kernel.
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
    public String matmulKernel(WeightFormat format) {
        return name() + " " + format.vectorKernel();
    }

    /** Dispatches to the matrix's format ({@link WeightFormat#matmulVector}); there is no scalar fallback. */
    @Override
    public void matmul(WeightMatrix w, float[] x, int xOff, int xStride, int nTokens,
                       float[] out, int outOff, int outStride, int rowStart, int rowEnd) {
        w.format().matmulVector(w, x, xOff, xStride, nTokens, out, outOff, outStride, rowStart, rowEnd);
    }

    static void matmulBf16(WeightMatrix w, float[] x, int xOff, int xStride, int nTokens,
                           float[] out, int outOff, int outStride, int rowStart, int rowEnd) {
        WeightFormat.requireVectorTiles(w, LANES);
        if (nTokens == 1) {
            matvecTiledBf16(w, x, xOff, out, outOff, rowStart, rowEnd);
        } else {
            matmulTiledBf16(w, x, xOff, xStride, nTokens, out, outOff, outStride, rowStart, rowEnd);
        }
    }

    static final int DENSE_F32 = 0;
    static final int DENSE_F16 = 1;

    /** F32 and F16 tiled matrices: per token, groups of 4 tiles (four fma chains), as the bf16 decode kernel. */
    static void matmulDense(int mode, WeightMatrix w, float[] x, int xOff, int xStride, int nTokens,
                            float[] out, int outOff, int outStride, int rowStart, int rowEnd) {
        WeightFormat.requireVectorTiles(w, LANES);
        int tile0 = rowStart / LANES, tile1 = (rowEnd + LANES - 1) / LANES;
        for (int t = 0; t < nTokens; t++) {
            for (int j = tile0; j < tile1; j += TILE) {
                if (mode == DENSE_F32) {
                    denseF32FourTiles(w, j, Math.min(TILE, tile1 - j), x, xOff + t * xStride, out, outOff + t * outStride, rowStart, rowEnd);
                } else {
                    denseF16FourTiles(w, j, Math.min(TILE, tile1 - j), x, xOff + t * xStride, out, outOff + t * outStride, rowStart, rowEnd);
                }
            }
        }
    }

    /**
     * Tiles {@code j .. j+valid-1} of an F32 matrix (one float per lane word) against one token; unused chains
     * recompute the last valid tile (see matvecFourTiles). F32 and F16 have a body each: in one method with a mode
     * switch the body was too large for C1's tier 3 (KernelBodiesCompileAtC1Test).
     */
    private static void denseF32FourTiles(WeightMatrix w, int j, int valid, float[] x, int xOff, float[] out, int outOff,
                                          int rowStart, int rowEnd) {
        MemorySegment seg = w.data();
        int cols = w.cols();
        long wordBytes = 4L * LANES;
        int last = j + valid - 1;
        long b0 = w.tileOffsetBytes(j), b1 = w.tileOffsetBytes(Math.min(j + 1, last));
        long b2 = w.tileOffsetBytes(Math.min(j + 2, last)), b3 = w.tileOffsetBytes(Math.min(j + 3, last));
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int k = 0; k < cols; k++) {
            long o = k * wordBytes;
            FloatVector xv = FloatVector.broadcast(F, x[xOff + k]);
            a0 = FloatVector.fromMemorySegment(F, seg, b0 + o, LE).fma(xv, a0);
            a1 = FloatVector.fromMemorySegment(F, seg, b1 + o, LE).fma(xv, a1);
            a2 = FloatVector.fromMemorySegment(F, seg, b2 + o, LE).fma(xv, a2);
            a3 = FloatVector.fromMemorySegment(F, seg, b3 + o, LE).fma(xv, a3);
        }
        int t1 = Math.min(j + 1, last), t2 = Math.min(j + 2, last), t3 = Math.min(j + 3, last), span = rowEnd - rowStart;
        a0.intoArray(out, outOff + j * LANES, F.indexInRange(j * LANES - rowStart, span));
        a1.intoArray(out, outOff + t1 * LANES, F.indexInRange(t1 * LANES - rowStart, span));
        a2.intoArray(out, outOff + t2 * LANES, F.indexInRange(t2 * LANES - rowStart, span));
        a3.intoArray(out, outOff + t3 * LANES, F.indexInRange(t3 * LANES - rowStart, span));
    }

    /**
     * Tiles {@code j .. j+valid-1} of an F16 matrix (two halves per lane word, widened as {@link F16Format}
     * describes) against one token; unused chains recompute the last valid tile.
     */
    private static void denseF16FourTiles(WeightMatrix w, int j, int valid, float[] x, int xOff, float[] out, int outOff,
                                          int rowStart, int rowEnd) {
        MemorySegment seg = w.data();
        int cols = w.cols();
        long wordBytes = 4L * LANES;
        int last = j + valid - 1;
        long b0 = w.tileOffsetBytes(j), b1 = w.tileOffsetBytes(Math.min(j + 1, last));
        long b2 = w.tileOffsetBytes(Math.min(j + 2, last)), b3 = w.tileOffsetBytes(Math.min(j + 3, last));
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int k = 0; k < cols; k += 2) {
            long o = (k >> 1) * wordBytes;
            boolean pair = k + 1 < cols;
            FloatVector x0 = FloatVector.broadcast(F, x[xOff + k]);
            FloatVector x1 = FloatVector.broadcast(F, pair ? x[xOff + k + 1] : 0f);
            IntVector w0 = IntVector.fromMemorySegment(I, seg, b0 + o, LE);
            IntVector w1 = IntVector.fromMemorySegment(I, seg, b1 + o, LE);
            IntVector w2 = IntVector.fromMemorySegment(I, seg, b2 + o, LE);
            IntVector w3 = IntVector.fromMemorySegment(I, seg, b3 + o, LE);
            // low half: magnitude << 13 | sign << 16; high half: magnitude >> 3 | sign; then x 2^112 (exact)
            a0 = ((FloatVector) w0.lanewise(VectorOperators.LSHL, 13).lanewise(VectorOperators.AND, 0x0fffe000)
                    .or(w0.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.AND, 0x80000000)).reinterpretAsFloats()).mul(0x1p112f).fma(x0, a0);
            a1 = ((FloatVector) w1.lanewise(VectorOperators.LSHL, 13).lanewise(VectorOperators.AND, 0x0fffe000)
                    .or(w1.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.AND, 0x80000000)).reinterpretAsFloats()).mul(0x1p112f).fma(x0, a1);
            a2 = ((FloatVector) w2.lanewise(VectorOperators.LSHL, 13).lanewise(VectorOperators.AND, 0x0fffe000)
                    .or(w2.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.AND, 0x80000000)).reinterpretAsFloats()).mul(0x1p112f).fma(x0, a2);
            a3 = ((FloatVector) w3.lanewise(VectorOperators.LSHL, 13).lanewise(VectorOperators.AND, 0x0fffe000)
                    .or(w3.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.AND, 0x80000000)).reinterpretAsFloats()).mul(0x1p112f).fma(x0, a3);
            if (pair) {
                a0 = ((FloatVector) w0.lanewise(VectorOperators.LSHR, 3).lanewise(VectorOperators.AND, 0x0fffe000)
                        .or(w0.lanewise(VectorOperators.AND, 0x80000000)).reinterpretAsFloats()).mul(0x1p112f).fma(x1, a0);
                a1 = ((FloatVector) w1.lanewise(VectorOperators.LSHR, 3).lanewise(VectorOperators.AND, 0x0fffe000)
                        .or(w1.lanewise(VectorOperators.AND, 0x80000000)).reinterpretAsFloats()).mul(0x1p112f).fma(x1, a1);
                a2 = ((FloatVector) w2.lanewise(VectorOperators.LSHR, 3).lanewise(VectorOperators.AND, 0x0fffe000)
                        .or(w2.lanewise(VectorOperators.AND, 0x80000000)).reinterpretAsFloats()).mul(0x1p112f).fma(x1, a2);
                a3 = ((FloatVector) w3.lanewise(VectorOperators.LSHR, 3).lanewise(VectorOperators.AND, 0x0fffe000)
                        .or(w3.lanewise(VectorOperators.AND, 0x80000000)).reinterpretAsFloats()).mul(0x1p112f).fma(x1, a3);
            }
        }
        int t1 = Math.min(j + 1, last), t2 = Math.min(j + 2, last), t3 = Math.min(j + 3, last), span = rowEnd - rowStart;
        a0.intoArray(out, outOff + j * LANES, F.indexInRange(j * LANES - rowStart, span));
        a1.intoArray(out, outOff + t1 * LANES, F.indexInRange(t1 * LANES - rowStart, span));
        a2.intoArray(out, outOff + t2 * LANES, F.indexInRange(t2 * LANES - rowStart, span));
        a3.intoArray(out, outOff + t3 * LANES, F.indexInRange(t3 * LANES - rowStart, span));
    }

    /*
     * Tiled bf16 kernels. Lane i of an accumulator is row (tile * LANES + i); each 32-bit load holds columns
     * (2p, 2p+1) of LANES rows, widened exactly by a shift (low half) and a mask (high half). Per column the
     * accumulator takes one fma with the broadcast activation: the sequential chain Kernels.matmul defines.
     */

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
            a0 = ((FloatVector) w0.lanewise(VectorOperators.AND, 0xffff0000).reinterpretAsFloats()).fma(x1, ((FloatVector) w0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats()).fma(x0, a0));
            a1 = ((FloatVector) w1.lanewise(VectorOperators.AND, 0xffff0000).reinterpretAsFloats()).fma(x1, ((FloatVector) w1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats()).fma(x0, a1));
            a2 = ((FloatVector) w2.lanewise(VectorOperators.AND, 0xffff0000).reinterpretAsFloats()).fma(x1, ((FloatVector) w2.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats()).fma(x0, a2));
            a3 = ((FloatVector) w3.lanewise(VectorOperators.AND, 0xffff0000).reinterpretAsFloats()).fma(x1, ((FloatVector) w3.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats()).fma(x0, a3));
        }
        if ((cols & 1) != 0) {
            long o = pairs * pairBytes;
            FloatVector x0 = FloatVector.broadcast(F, x[xOff + cols - 1]);
            a0 = ((FloatVector) (IntVector.fromMemorySegment(I, seg, b0 + o, LE)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats()).fma(x0, a0);
            a1 = ((FloatVector) (IntVector.fromMemorySegment(I, seg, b1 + o, LE)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats()).fma(x0, a1);
            a2 = ((FloatVector) (IntVector.fromMemorySegment(I, seg, b2 + o, LE)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats()).fma(x0, a2);
            a3 = ((FloatVector) (IntVector.fromMemorySegment(I, seg, b3 + o, LE)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats()).fma(x0, a3);
        }
        // Masked stores (lane N is row tile * LANES + N; lanes outside [rowStart, rowEnd) are not written), written
        // out here rather than in a helper: a helper taking a vector is a call C2 may decline to inline (it did,
        // "already compiled into a big method"), and then the vector is boxed on every call. No branches either:
        // an unused chain recomputed the last valid tile, so storing it again writes the same values.
        int t1 = Math.min(j + 1, last), t2 = Math.min(j + 2, last), t3 = Math.min(j + 3, last), span = rowEnd - rowStart;
        a0.intoArray(out, outOff + j * LANES, F.indexInRange(j * LANES - rowStart, span));
        a1.intoArray(out, outOff + t1 * LANES, F.indexInRange(t1 * LANES - rowStart, span));
        a2.intoArray(out, outOff + t2 * LANES, F.indexInRange(t2 * LANES - rowStart, span));
        a3.intoArray(out, outOff + t3 * LANES, F.indexInRange(t3 * LANES - rowStart, span));
    }

    /**
     * Several tokens: per tile, groups of 8 tokens (eight fma chains, one weight load per 8 tokens); a remainder of
     * one to three tokens runs a two-token pass and/or the one-token kernel instead. An eight-token pass costs the
     * same for 2 valid tokens as for 8 (its chains wait on the fma latency, not on the tokens), about 3.7 one-token
     * passes (JMH 768x2048, Zen 5: 1 token 31 us, 2-8 tokens 113-116 us, the two-token pass 46 us); an MoE expert
     * in a batched decode step often sees two or three tokens. Every kernel follows the same definition: the
     * grouping changes no bit.
     */
    private static void matmulTiledBf16(WeightMatrix w, float[] x, int xOff, int xStride, int nTokens,
                                        float[] out, int outOff, int outStride, int rowStart, int rowEnd) {
        int tile0 = rowStart / LANES, tile1 = (rowEnd + LANES - 1) / LANES;
        int singles = nTokens % 8 <= 3 ? nTokens % 8 : 0, grouped = nTokens - singles;
        if (grouped > 0) {
            for (int j = tile0; j < tile1; j++) {
                for (int t = 0; t < grouped; t += 8) {
                    matmulEightTokens(w, j, Math.min(8, grouped - t), x, xOff + t * xStride, xStride, out, outOff + t * outStride,
                            outStride, rowStart, rowEnd);
                }
            }
        }
        int t = grouped;
        if (nTokens - t >= 2 && (w.cols() & 1) == 0) {
            for (int j = tile0; j < tile1; j += 2) {
                matmulTwoTokens(w, j, Math.min(2, tile1 - j), x, xOff + t * xStride, xOff + (t + 1) * xStride, out,
                        outOff + t * outStride, outOff + (t + 1) * outStride, rowStart, rowEnd);
            }
            t += 2;
        }
        for (; t < nTokens; t++) {
            matvecTiledBf16(w, x, xOff + t * xStride, out, outOff + t * outStride, rowStart, rowEnd);
        }
    }

    /**
     * Tiles {@code j .. j+valid-1} (valid in 1..2; an unused chain recomputes the last valid tile) against two tokens
     * ({@code x[xa..]} into {@code out[oa..]}, {@code x[xb..]} into {@code out[ob..]}): four fma chains, each
     * weight word loaded and widened once for both tokens. Even column counts only. Four tiles (eight chains) or
     * the odd column's code make this body too large for C1 ("out of virtual registers"; the JVM may then keep a
     * tier-2 compile that runs the Vector API's allocating fallback for good, 370x slower; see
     * KernelBodiesCompileAtC1Test), so odd widths take the one-token kernel.
     */
    private static void matmulTwoTokens(WeightMatrix w, int j, int valid, float[] x, int xa, int xb, float[] out, int oa, int ob,
                                        int rowStart, int rowEnd) {
        MemorySegment seg = w.data();
        int pairs = w.cols() / 2;
        long pairBytes = 4L * LANES;
        int t1 = Math.min(j + 1, j + valid - 1);
        long b0 = w.tileOffsetBytes(j), b1 = w.tileOffsetBytes(t1);
        FloatVector a0 = FloatVector.zero(F), a1 = a0, c0 = a0, c1 = a0;
        for (int p = 0; p < pairs; p++) {
            long o = p * pairBytes;
            int k = 2 * p;
            FloatVector x0 = FloatVector.broadcast(F, x[xa + k]), x1 = FloatVector.broadcast(F, x[xa + k + 1]);
            FloatVector y0 = FloatVector.broadcast(F, x[xb + k]), y1 = FloatVector.broadcast(F, x[xb + k + 1]);
            IntVector w0 = IntVector.fromMemorySegment(I, seg, b0 + o, LE);
            IntVector w1 = IntVector.fromMemorySegment(I, seg, b1 + o, LE);
            FloatVector lo0 = (FloatVector) w0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            FloatVector lo1 = (FloatVector) w1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
            a0 = lo0.fma(x0, a0);
            c0 = lo0.fma(y0, c0);
            a1 = lo1.fma(x0, a1);
            c1 = lo1.fma(y0, c1);
            FloatVector hi0 = (FloatVector) w0.lanewise(VectorOperators.AND, 0xffff0000).reinterpretAsFloats();
            FloatVector hi1 = (FloatVector) w1.lanewise(VectorOperators.AND, 0xffff0000).reinterpretAsFloats();
            a0 = hi0.fma(x1, a0);
            c0 = hi0.fma(y1, c0);
            a1 = hi1.fma(x1, a1);
            c1 = hi1.fma(y1, c1);
        }
        int span = rowEnd - rowStart;
        VectorMask<Float> m0 = F.indexInRange(j * LANES - rowStart, span), m1 = F.indexInRange(t1 * LANES - rowStart, span);
        a0.intoArray(out, oa + j * LANES, m0);
        a1.intoArray(out, oa + t1 * LANES, m1);
        c0.intoArray(out, ob + j * LANES, m0);
        c1.intoArray(out, ob + t1 * LANES, m1);
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
            FloatVector lo = ((FloatVector) pair.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats());
            a0 = lo.fma(FloatVector.broadcast(F, x[x0 + k]), a0);
            a1 = lo.fma(FloatVector.broadcast(F, x[x1 + k]), a1);
            a2 = lo.fma(FloatVector.broadcast(F, x[x2 + k]), a2);
            a3 = lo.fma(FloatVector.broadcast(F, x[x3 + k]), a3);
            a4 = lo.fma(FloatVector.broadcast(F, x[x4 + k]), a4);
            a5 = lo.fma(FloatVector.broadcast(F, x[x5 + k]), a5);
            a6 = lo.fma(FloatVector.broadcast(F, x[x6 + k]), a6);
            a7 = lo.fma(FloatVector.broadcast(F, x[x7 + k]), a7);
            FloatVector hi = ((FloatVector) pair.lanewise(VectorOperators.AND, 0xffff0000).reinterpretAsFloats());
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
            FloatVector lo = ((FloatVector) (IntVector.fromMemorySegment(I, seg, b + pairs * pairBytes, LE)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats());
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
        // Masked stores written out (see matvecFourTiles), without an array of vectors (an array would force C2
        // to box them) and without branches: an unused chain recomputed the last valid token, so storing it to
        // that token's row again writes the same values.
        int lastRow = valid - 1, r0 = j * LANES;
        VectorMask<Float> rows = F.indexInRange(r0 - rowStart, rowEnd - rowStart);
        int o = outOff + r0;
        a0.intoArray(out, o, rows);
        a1.intoArray(out, o + Math.min(1, lastRow) * outStride, rows);
        a2.intoArray(out, o + Math.min(2, lastRow) * outStride, rows);
        a3.intoArray(out, o + Math.min(3, lastRow) * outStride, rows);
        a4.intoArray(out, o + Math.min(4, lastRow) * outStride, rows);
        a5.intoArray(out, o + Math.min(5, lastRow) * outStride, rows);
        a6.intoArray(out, o + Math.min(6, lastRow) * outStride, rows);
        a7.intoArray(out, o + Math.min(7, lastRow) * outStride, rows);
    }

    /*
     * Row kernels (axpy, RMSNorm scaling, softmax, SwiGLU) share one body method, rowKernel, selected by a mode.
     * Why one method: C2 inlines a hot method of up to FreqInlineSize (325) bytes into its caller, and when the
     * caller is big (the attention and MoE blocks are) it runs out of node budget, stops intrinsifying the
     * Vector API calls it inlined and runs their allocating Java fallback for the life of that compiled code.
     * It happened: a JVM that had first served short contexts (cold vector loops at compile time) then
     * allocated ~16 kB per decode token in softmax. So every method that holds vector code is larger than
     * FreqInlineSize (never inlined into a caller), and no vector crosses a method call at all (a helper taking
     * or returning one, however small, can be refused inlining and then boxes it). VectorCodeShapeTest checks
     * both; ZeroAllocationTest checks the result after the whole suite has polluted the JIT's profiles.
     */
    private static final int AXPY = 0;
    private static final int RMS_SCALE = 1;
    private static final int SOFTMAX = 2;
    private static final int SILU_MUL = 3;

    @Override
    public void axpy(float alpha, float[] x, int xOff, float[] y, int yOff, int n) {
        rowKernel(AXPY, alpha, x, xOff, null, 0, y, yOff, n);
    }

    @Override
    public void rmsNorm(float[] x, int xOff, float[] weight, float eps, float[] out, int outOff, int n) {
        rowKernel(RMS_SCALE, ScalarKernels.rmsInverse(x, xOff, eps, n), x, xOff, weight, 0, out, outOff, n);
    }

    /**
     * Four rows' sums of squares at once: four independent chains (each its row's sequential fma chain, as
     * {@link #rmsNorm}) instead of one chain waiting on the fma latency per element.
     */
    @Override
    public void rmsNormRows(float[] x, int xOff, int xStride, int rows, float[] weight, float eps, float[] out, int outOff,
                            int outStride, int n) {
        int r = 0;
        for (; r + 4 <= rows; r += 4) {
            int x0 = xOff + r * xStride, x1 = x0 + xStride, x2 = x1 + xStride, x3 = x2 + xStride;
            float s0 = 0f, s1 = 0f, s2 = 0f, s3 = 0f;
            for (int i = 0; i < n; i++) {
                float a = x[x0 + i], b = x[x1 + i], c = x[x2 + i], d = x[x3 + i];
                s0 = Math.fma(a, a, s0);
                s1 = Math.fma(b, b, s1);
                s2 = Math.fma(c, c, s2);
                s3 = Math.fma(d, d, s3);
            }
            int o = outOff + r * outStride;
            rowKernel(RMS_SCALE, ScalarKernels.rmsInverseOfSum(s0, eps, n), x, x0, weight, 0, out, o, n);
            rowKernel(RMS_SCALE, ScalarKernels.rmsInverseOfSum(s1, eps, n), x, x1, weight, 0, out, o + outStride, n);
            rowKernel(RMS_SCALE, ScalarKernels.rmsInverseOfSum(s2, eps, n), x, x2, weight, 0, out, o + 2 * outStride, n);
            rowKernel(RMS_SCALE, ScalarKernels.rmsInverseOfSum(s3, eps, n), x, x3, weight, 0, out, o + 3 * outStride, n);
        }
        for (; r < rows; r++) {
            rmsNorm(x, xOff + r * xStride, weight, eps, out, outOff + r * outStride, n);
        }
    }

    @Override
    public void siluMul(float[] gate, int gateOff, float[] up, int upOff, float[] out, int outOff, int n) {
        rowKernel(SILU_MUL, 0f, gate, gateOff, up, upOff, out, outOff, n);
    }

    @Override
    public void softmax(float[] x, int off, int n) {
        rowKernel(SOFTMAX, 0f, x, off, null, 0, x, off, n);
    }

    /**
     * The row kernels, each exactly as {@link Kernels} defines it; the vector exp is {@link Exp#exp}'s operations
     * in the same order, lane by lane. {@code out} may alias {@code a} (each vector is read before it is written).
     * <ul>
     *   <li>AXPY: {@code out[i] += s * a[i]}</li>
     *   <li>RMS_SCALE: {@code out[i] = b[i] * (a[i] * s)} (s = the RMS inverse)</li>
     *   <li>SOFTMAX (in place, out = a): max, {@code e = exp(a[i] - max)}, sequential sum, {@code e * (1/sum)}</li>
     *   <li>SILU_MUL: {@code out[i] = a[i] / (1 + exp(-a[i])) * b[i]}</li>
     * </ul>
     */
    private static void rowKernel(int mode, float s, float[] a, int aOff, float[] b, int bOff, float[] out, int outOff, int n) {
        int bound = F.loopBound(n);
        if (mode == AXPY || mode == RMS_SCALE) {
            FloatVector sv = FloatVector.broadcast(F, s);
            for (int i = 0; i < bound; i += LANES) {
                FloatVector va = FloatVector.fromArray(F, a, aOff + i);
                if (mode == AXPY) {
                    va.mul(sv).add(FloatVector.fromArray(F, out, outOff + i)).intoArray(out, outOff + i);
                } else {
                    FloatVector.fromArray(F, b, bOff + i).mul(va.mul(sv)).intoArray(out, outOff + i);
                }
            }
            for (int i = bound; i < n; i++) {
                if (mode == AXPY) {
                    out[outOff + i] += s * a[aOff + i];
                } else {
                    out[outOff + i] = b[bOff + i] * (a[aOff + i] * s);
                }
            }
            return;
        }
        float max = 0f;
        if (mode == SOFTMAX) {
            // max is exact in any order. Reduced per vector, so no vector is carried from one iteration to the
            // next: C2 boxed a loop-carried max vector (allocating per iteration) after a JVM had seen mostly
            // short rows, where this loop runs zero or one times.
            max = Float.NEGATIVE_INFINITY;
            for (int i = 0; i < bound; i += LANES) {
                max = Math.max(max, FloatVector.fromArray(F, a, aOff + i).reduceLanes(VectorOperators.MAX));
            }
            for (int i = bound; i < n; i++) {
                max = Math.max(max, a[aOff + i]);
            }
        }
        FloatVector lnHi = FloatVector.broadcast(F, -Exp.LN2_HI), lnLo = FloatVector.broadcast(F, -Exp.LN2_LO);
        FloatVector p0 = FloatVector.broadcast(F, Exp.P0), p1 = FloatVector.broadcast(F, Exp.P1), p2 = FloatVector.broadcast(F, Exp.P2);
        FloatVector p3 = FloatVector.broadcast(F, Exp.P3), p4 = FloatVector.broadcast(F, Exp.P4), p5 = FloatVector.broadcast(F, Exp.P5);
        for (int i = 0; i < bound; i += LANES) {
            FloatVector v = FloatVector.fromArray(F, a, aOff + i);
            FloatVector x = mode == SILU_MUL ? v.neg() : v.sub(max);
            // exp(x), as Exp.exp
            FloatVector xc = x.min(Exp.MAX_INPUT).max(Exp.MIN_INPUT);
            FloatVector t = xc.fma(Exp.LOG2E, Exp.MAGIC);
            FloatVector nn = t.sub(Exp.MAGIC);
            FloatVector r = nn.fma(lnHi, xc);
            r = nn.fma(lnLo, r);
            FloatVector p = p0.fma(r, p1);
            p = p.fma(r, p2);
            p = p.fma(r, p3);
            p = p.fma(r, p4);
            p = p.fma(r, p5);
            FloatVector y = p.fma(r.mul(r), r).add(1f);
            FloatVector scale = ((IntVector) t.reinterpretAsInts()).sub(Exp.MAGIC_BITS - 127).lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats();
            FloatVector e = y.mul(scale).blend(0f, x.lt(Exp.MIN_INPUT));
            if (mode == SILU_MUL) {
                v.div(e.add(1f)).mul(FloatVector.fromArray(F, b, bOff + i)).intoArray(out, outOff + i);
            } else {
                e.intoArray(out, outOff + i);
            }
        }
        if (mode == SILU_MUL) {
            ScalarKernels.siluMulScalar(a, aOff + bound, b, bOff + bound, out, outOff + bound, n - bound);
            return;
        }
        for (int i = bound; i < n; i++) {
            out[outOff + i] = Exp.exp(a[aOff + i] - max);
        }
        // the sum stays sequential: its order is part of the definition
        float sum = 0f;
        for (int i = 0; i < n; i++) {
            sum += out[outOff + i];
        }
        float inv = 1.0f / sum;
        FloatVector iv = FloatVector.broadcast(F, inv);
        for (int i = 0; i < bound; i += LANES) {
            FloatVector.fromArray(F, out, outOff + i).mul(iv).intoArray(out, outOff + i);
        }
        for (int i = bound; i < n; i++) {
            out[outOff + i] *= inv;
        }
    }

    private static final int BLOCK = dev.lockstep.memory.KvBlockDescriptor.BLOCK_TOKENS;
    /** Shapes the vector path does not cover fall back to the definition (same bits, slower). */
    private static final ScalarKernels REFERENCE = new ScalarKernels();

    @Override
    public void attentionScores(float[] q, int qOff, int nHeads, int headDim, MemorySegment[] keys, long[] keyOffsetsBytes,
                                int nBlocks, float[] scores, int scoresOff, int scoresStride) {
        if (LANES > BLOCK || BLOCK % LANES != 0) {
            REFERENCE.attentionScores(q, qOff, nHeads, headDim, keys, keyOffsetsBytes, nBlocks, scores, scoresOff, scoresStride);
            return;
        }
        // Query heads in pairs (two heads share each key load; one left over for an odd group) against four blocks
        // at a time: eight independent fma chains (one block alone gives two, which wait on the fma latency).
        for (int h = 0; h < nHeads; h += 2) {
            for (int i = 0; i < nBlocks; i += 4) {
                int last = Math.min(i + 4, nBlocks) - 1;
                int i1 = Math.min(i + 1, last), i2 = Math.min(i + 2, last), i3 = Math.min(i + 3, last);
                scoresKernel(q, qOff + h * headDim, h + 1 < nHeads, headDim,
                        keys[i], keyOffsetsBytes[i], keys[i1], keyOffsetsBytes[i1], keys[i2], keyOffsetsBytes[i2], keys[i3], keyOffsetsBytes[i3],
                        scores, scoresOff + h * scoresStride + i * BLOCK, i1 - i, i2 - i, i3 - i, scoresStride);
            }
        }
    }

    @Override
    public void attentionValues(float[] p, int pOff, int pStride, int nHeads, int nSlots, MemorySegment values,
                                long valueOffsetBytes, long valueRowBytes, float[] out, int outOff, int headDim) {
        // Four output vectors per head stay in registers across all slots (one load and one store per block, not
        // per slot); each out[d] still takes its fmas in slot order, the order Kernels defines. Query heads go in
        // pairs: both heads' eight chains read each value row once (one head alone: half the loads shared, and
        // its four chains wait on the fma latency).
        int quad = 4 * LANES;
        int quadBound = headDim - headDim % quad;
        for (int h = 0; h < nHeads; h += 2) {
            boolean two = h + 1 < nHeads;
            int o = outOff + h * headDim;
            int pBase = pOff + h * pStride;
            for (int d = 0; d < quadBound; d += quad) {
                valuesKernel(p, pBase, two, nSlots, values, valueOffsetBytes + 4L * d, valueRowBytes, out, o + d, headDim, pStride);
            }
            for (int hh = h; hh < Math.min(h + 2, nHeads); hh++) {
                int oh = outOff + hh * headDim, ph = pOff + hh * pStride;
                for (int d = quadBound; d < headDim; d++) {
                    float acc = out[oh + d];
                    for (int s = 0; s < nSlots; s++) {
                        acc = Math.fma(p[ph + s], values.get(ScalarKernels.F32_NATIVE, valueOffsetBytes + s * valueRowBytes + 4L * d), acc);
                    }
                    out[oh + d] = acc;
                }
            }
        }
    }

    /**
     * Value sums of one or two ({@code two}) query heads, in one method larger than C2's FreqInlineSize so it is
     * never inlined (see the row kernels' note): 4 vectors of output dims at {@code out[outOff]} += sum over the
     * {@code n} slots s, in order, of {@code p[pOff + s] * value row s} (rows {@code rowBytes} apart from
     * {@code base}); with {@code two}, the same for the second head at {@code out[outOff + outStride]} with weights
     * at {@code p[pOff + pStride]}, from the same row loads.
     */
    private static void valuesKernel(float[] p, int pOff, boolean two, int n, MemorySegment seg, long base,
                                     long rowBytes, float[] out, int outOff, int outStride, int pStride) {
        if (two) {
            int o1 = outOff + outStride, p1 = pOff + pStride;
            FloatVector a0 = FloatVector.fromArray(F, out, outOff);
            FloatVector a1 = FloatVector.fromArray(F, out, outOff + LANES);
            FloatVector a2 = FloatVector.fromArray(F, out, outOff + 2 * LANES);
            FloatVector a3 = FloatVector.fromArray(F, out, outOff + 3 * LANES);
            FloatVector b0 = FloatVector.fromArray(F, out, o1);
            FloatVector b1 = FloatVector.fromArray(F, out, o1 + LANES);
            FloatVector b2 = FloatVector.fromArray(F, out, o1 + 2 * LANES);
            FloatVector b3 = FloatVector.fromArray(F, out, o1 + 3 * LANES);
            long l1 = 4L * LANES, l2 = 2 * l1, l3 = 3 * l1;
            for (int s = 0; s < n; s++) {
                long row = base + s * rowBytes;
                FloatVector w = FloatVector.broadcast(F, p[pOff + s]), u = FloatVector.broadcast(F, p[p1 + s]);
                FloatVector v0 = FloatVector.fromMemorySegment(F, seg, row, NATIVE);
                FloatVector v1 = FloatVector.fromMemorySegment(F, seg, row + l1, NATIVE);
                FloatVector v2 = FloatVector.fromMemorySegment(F, seg, row + l2, NATIVE);
                FloatVector v3 = FloatVector.fromMemorySegment(F, seg, row + l3, NATIVE);
                a0 = w.fma(v0, a0);
                b0 = u.fma(v0, b0);
                a1 = w.fma(v1, a1);
                b1 = u.fma(v1, b1);
                a2 = w.fma(v2, a2);
                b2 = u.fma(v2, b2);
                a3 = w.fma(v3, a3);
                b3 = u.fma(v3, b3);
            }
            a0.intoArray(out, outOff);
            a1.intoArray(out, outOff + LANES);
            a2.intoArray(out, outOff + 2 * LANES);
            a3.intoArray(out, outOff + 3 * LANES);
            b0.intoArray(out, o1);
            b1.intoArray(out, o1 + LANES);
            b2.intoArray(out, o1 + 2 * LANES);
            b3.intoArray(out, o1 + 3 * LANES);
        } else {
            FloatVector a0 = FloatVector.fromArray(F, out, outOff);
            FloatVector a1 = FloatVector.fromArray(F, out, outOff + LANES);
            FloatVector a2 = FloatVector.fromArray(F, out, outOff + 2 * LANES);
            FloatVector a3 = FloatVector.fromArray(F, out, outOff + 3 * LANES);
            long l1 = 4L * LANES, l2 = 2 * l1, l3 = 3 * l1;
            for (int s = 0; s < n; s++) {
                long row = base + s * rowBytes;
                FloatVector w = FloatVector.broadcast(F, p[pOff + s]);
                a0 = w.fma(FloatVector.fromMemorySegment(F, seg, row, NATIVE), a0);
                a1 = w.fma(FloatVector.fromMemorySegment(F, seg, row + l1, NATIVE), a1);
                a2 = w.fma(FloatVector.fromMemorySegment(F, seg, row + l2, NATIVE), a2);
                a3 = w.fma(FloatVector.fromMemorySegment(F, seg, row + l3, NATIVE), a3);
            }
            a0.intoArray(out, outOff);
            a1.intoArray(out, outOff + LANES);
            a2.intoArray(out, outOff + 2 * LANES);
            a3.intoArray(out, outOff + 3 * LANES);
        }
    }

    /**
     * Scores of one or two ({@code two}) query heads at {@code q[q0]} (head dim {@code n}) against four key blocks
     * ({@code [n][16]} floats at {@code s0/b0 .. s3/b3}; a repeated block recomputes the same values): block
     * {@code k}'s slots go to {@code out[outOff + 16*dk + g]} ({@code dk} = 0, {@code d1}, {@code d2}, {@code d3}), the
     * second head's {@code outStride} further. Per (head, block, slot) one fma chain over d in order: eight chains.
     */
    private static void scoresKernel(float[] q, int q0, boolean two, int n, MemorySegment s0, long b0, MemorySegment s1, long b1,
                                     MemorySegment s2, long b2, MemorySegment s3, long b3, float[] out, int outOff,
                                     int d1, int d2, int d3, int outStride) {
        long keyRowBytes = 4L * BLOCK;
        int q1 = q0 + n, o1 = outOff + BLOCK * d1, o2 = outOff + BLOCK * d2, o3 = outOff + BLOCK * d3;
        for (int g = 0; g < BLOCK; g += LANES) {
            long gb = 4L * g;
            if (two) {
                FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0, c0 = a0, c1 = a0, c2 = a0, c3 = a0;
                for (int d = 0; d < n; d++) {
                    long r = gb + d * keyRowBytes;
                    FloatVector k0 = FloatVector.fromMemorySegment(F, s0, b0 + r, NATIVE);
                    FloatVector k1 = FloatVector.fromMemorySegment(F, s1, b1 + r, NATIVE);
                    FloatVector k2 = FloatVector.fromMemorySegment(F, s2, b2 + r, NATIVE);
                    FloatVector k3 = FloatVector.fromMemorySegment(F, s3, b3 + r, NATIVE);
                    FloatVector x = FloatVector.broadcast(F, q[q0 + d]), y = FloatVector.broadcast(F, q[q1 + d]);
                    a0 = x.fma(k0, a0);
                    c0 = y.fma(k0, c0);
                    a1 = x.fma(k1, a1);
                    c1 = y.fma(k1, c1);
                    a2 = x.fma(k2, a2);
                    c2 = y.fma(k2, c2);
                    a3 = x.fma(k3, a3);
                    c3 = y.fma(k3, c3);
                }
                a0.intoArray(out, outOff + g);
                a1.intoArray(out, o1 + g);
                a2.intoArray(out, o2 + g);
                a3.intoArray(out, o3 + g);
                c0.intoArray(out, outOff + outStride + g);
                c1.intoArray(out, o1 + outStride + g);
                c2.intoArray(out, o2 + outStride + g);
                c3.intoArray(out, o3 + outStride + g);
            } else {
                FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
                for (int d = 0; d < n; d++) {
                    long r = gb + d * keyRowBytes;
                    FloatVector x = FloatVector.broadcast(F, q[q0 + d]);
                    a0 = x.fma(FloatVector.fromMemorySegment(F, s0, b0 + r, NATIVE), a0);
                    a1 = x.fma(FloatVector.fromMemorySegment(F, s1, b1 + r, NATIVE), a1);
                    a2 = x.fma(FloatVector.fromMemorySegment(F, s2, b2 + r, NATIVE), a2);
                    a3 = x.fma(FloatVector.fromMemorySegment(F, s3, b3 + r, NATIVE), a3);
                }
                a0.intoArray(out, outOff + g);
                a1.intoArray(out, o1 + g);
                a2.intoArray(out, o2 + g);
                a3.intoArray(out, o3 + g);
            }
        }
    }
}
