package dev.lockstep.kernels;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

/**
 * The Vector API NVFP4 matmul over {@link Nvfp4Format}'s tiled layout: one lane per output row, so one code
 * word load, shift, mask and table lookup give column k of a whole vector of rows, and each lane follows the
 * definition's order exactly (per block a sequential fma chain of codes times activations, one fma with the
 * block scale, the tensor scale at the end): bit-identical to {@link Nvfp4Format#matmulReference} at every
 * width.
 *
 * <p>E2M1 decode: with 16 lanes a 16-entry table of float bits, indexed by the nibble (one {@code vpermd} on
 * AVX-512); 8 lanes look up the magnitude (8 entries) and move the nibble's sign bit to bit 31. The code
 * applies no mask to the shifted code word ({@code selectFrom} wraps its indices modulo the lane count), but C2
 * implements that wrap with a {@code vpandd} before the {@code vpermd} (disassembly, JDK 25; the two-table
 * {@code selectFrom} does the same before {@code vpermi2d}): a column of 16 rows costs a shift, an and, a permute
 * and an fma (BENCHMARKS.md, "What the JIT makes of the NVFP4 bodies"). E4M3 scale decode: the byte zero-extended,
 * shifted left by 20 read as float32, times 2^120 (exact, see {@link E4M3}); MXFP4's scale bytes are stored so that
 * the same decode gives a power of two (see {@link Nvfp4Format}).
 *
 * <p>Vector code lives only in the large body methods (never inlined, no vector crosses a call), as in
 * {@link PanamaKernels}.
 */
final class Nvfp4VectorKernel {
    private static final VectorSpecies<Float> F = PanamaKernels.F;
    private static final VectorSpecies<Integer> I = PanamaKernels.I;
    private static final int LANES = PanamaKernels.LANES;
    private static final VectorSpecies<Byte> SCALE_BYTES = VectorSpecies.of(byte.class, VectorShape.forBitSize(Math.max(64, 8 * LANES)));
    private static final boolean WIDE_TABLE = LANES >= 16;
    /** Fewer than 8 lanes (128-bit vectors): the 8 magnitudes are split over two 4-entry tables and a blend. */
    private static final boolean SPLIT_TABLE = LANES < 8;
    private static final IntVector TABLE;
    private static final IntVector TABLE_HIGH;
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final int BLOCK = Nvfp4Format.BLOCK;

    static {
        int[] bits = new int[LANES], high = new int[LANES];
        for (int i = 0; i < LANES; i++) {
            bits[i] = Float.floatToRawIntBits(E2M1.toFloat(WIDE_TABLE ? i : i & 7));
            high[i] = Float.floatToRawIntBits(E2M1.toFloat(4 + (i & 3)));
        }
        TABLE = IntVector.fromArray(I, bits, 0);
        TABLE_HIGH = IntVector.fromArray(I, high, 0);
    }

    private Nvfp4VectorKernel() {
    }

    static String description() {
        return "fp4 tiled (NVFP4 and MXFP4 share it): " + (WIDE_TABLE ? "16-entry table permute" : SPLIT_TABLE ? "two 4-entry magnitude permutes + blend + sign bit"
                : "8-entry magnitude permute + sign bit")
                + " + fma per column, block scale once per 16; 4 tiles (one token) or 4 tokens (prefill, two chains per token) per pass"
                + (WIDE_TABLE ? ", 2 tiles x 2 tokens for a pair" : "");
    }

    static void matmul(WeightMatrix w, float[] x, int xOff, int xStride, int nTokens,
                       float[] out, int outOff, int outStride, int rowStart, int rowEnd) {
        WeightFormat.requireVectorTiles(w, LANES);
        int tile0 = rowStart / LANES, tile1 = (rowEnd + LANES - 1) / LANES;
        // Tokens in groups of four (the four-token body: each decoded column feeds eight fma chains); a remainder
        // of one token runs the one-token body, of two the two-token body on 16 lanes (JMH 768x2048 on Zen 5:
        // 1 token 31 us, 2 tokens 43.6 us against 63 for two one-token passes, a four-token pass 73-76 us).
        // A bigger body (eight tokens: 24 accumulators) spills registers or waits on the fma latency: 4-6% slower
        // per token than two four-token passes. Every body follows the definition, so the grouping changes no bit.
        // With 8 or 4 lanes a remainder of three also takes the one-token body (-XX:UseAVX=2: 3 x 121 us vs 510 us).
        int singles = nTokens % 4 == 3 && WIDE_TABLE ? 0 : nTokens % 4, grouped = nTokens - singles;
        if (grouped > 0) {
            for (int j = tile0; j < tile1; j++) {
                for (int t = 0; t < grouped; t += 4) {
                    if (WIDE_TABLE) {
                        fourTokensWide(w, j, Math.min(4, grouped - t), x, xOff + t * xStride, xStride, out, outOff + t * outStride,
                                outStride, rowStart, rowEnd);
                    } else {
                        fourTokens(w, j, Math.min(4, grouped - t), x, xOff + t * xStride, xStride, out, outOff + t * outStride,
                                outStride, rowStart, rowEnd);
                    }
                }
            }
        }
        int t0 = grouped;
        if (WIDE_TABLE && nTokens - grouped == 2) {
            for (int j = tile0; j < tile1; j += 2) {
                twoTokensWide(w, j, Math.min(2, tile1 - j), x, xOff + t0 * xStride, xStride, out, outOff + t0 * outStride, outStride,
                        rowStart, rowEnd);
            }
            t0 += 2;
        }
        for (int t = t0; t < nTokens; t++) {
            int xt = xOff + t * xStride, ot = outOff + t * outStride;
            for (int j = tile0; j < tile1; j += 4) {
                if (WIDE_TABLE) {
                    fourTilesWide(w, j, Math.min(4, tile1 - j), x, xt, out, ot, rowStart, rowEnd);
                } else {
                    fourTiles(w, j, Math.min(4, tile1 - j), x, xt, out, ot, rowStart, rowEnd);
                }
            }
        }
    }

    /*
     * Decode runs four tiles per pass at every width. Eight (eight fma chains, 15% faster in JMH on Zen 5) was
     * built and removed: its body is too large for C1 ("out of virtual registers in LIR generator"), and a JVM
     * that first compiled it at tier 2 never moved it to C2 (it stayed in C1, allocating a vector object per
     * operation: 190 MB per decode step, found by ZeroAllocationTest). Every body here must compile at tier 3.
     */

    /**
     * Decode with 16 lanes: four tiles per pass, the block's 16 columns in one loop (both code words of each tile
     * loaded once per block; C2 keeps the loop rolled, the shift count in a register), the two half-block chains
     * switched at column 8.
     */
    private static void fourTilesWide(WeightMatrix w, int j, int valid, float[] x, int xOff, float[] out, int outOff,
                                      int rowStart, int rowEnd) {
        MemorySegment seg = w.data();
        int blocks = w.cols() / BLOCK, last = j + valid - 1;
        long tileBytes = w.tileOffsetBytes(1);
        long c0 = Nvfp4Format.codeOffsetBytes(w, j, 0, 0), s0 = Nvfp4Format.scaleOffsetBytes(w, j, 0);
        int t1 = Math.min(j + 1, last);
        long d1 = (t1 - j) * tileBytes;
        int t2 = Math.min(j + 2, last);
        long d2 = (t2 - j) * tileBytes;
        int t3 = Math.min(j + 3, last);
        long d3 = (t3 - j) * tileBytes;
        long wordBytes = 4L * LANES, scaleStride = Nvfp4Format.scaleStride(LANES);
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int b = 0; b < blocks; b++) {
            FloatVector bs0 = FloatVector.zero(F), bs1 = bs0, bs2 = bs0, bs3 = bs0, lo0 = bs0, lo1 = bs0, lo2 = bs0, lo3 = bs0;
            long o = c0 + 2L * b * wordBytes;
            IntVector l0 = IntVector.fromMemorySegment(I, seg, o, LE), h0 = IntVector.fromMemorySegment(I, seg, o + wordBytes, LE);
            IntVector l1 = IntVector.fromMemorySegment(I, seg, o + d1, LE), h1 = IntVector.fromMemorySegment(I, seg, o + d1 + wordBytes, LE);
            IntVector l2 = IntVector.fromMemorySegment(I, seg, o + d2, LE), h2 = IntVector.fromMemorySegment(I, seg, o + d2 + wordBytes, LE);
            IntVector l3 = IntVector.fromMemorySegment(I, seg, o + d3, LE), h3 = IntVector.fromMemorySegment(I, seg, o + d3 + wordBytes, LE);
            int k0 = xOff + b * BLOCK;
            for (int kk = 0; kk < BLOCK; kk++) {
                if (kk == 8) {
                    lo0 = bs0;
                    lo1 = bs1;
                    lo2 = bs2;
                    lo3 = bs3;
                    bs0 = FloatVector.zero(F);
                    bs1 = bs0;
                    bs2 = bs0;
                    bs3 = bs0;
                }
                FloatVector xv = FloatVector.broadcast(F, x[k0 + kk]);
                int shift = 4 * (kk & 7);
                boolean low = kk < 8;
                bs0 = ((FloatVector) (low ? l0 : h0).lanewise(VectorOperators.LSHR, shift).selectFrom(TABLE).reinterpretAsFloats()).fma(xv, bs0);
                bs1 = ((FloatVector) (low ? l1 : h1).lanewise(VectorOperators.LSHR, shift).selectFrom(TABLE).reinterpretAsFloats()).fma(xv, bs1);
                bs2 = ((FloatVector) (low ? l2 : h2).lanewise(VectorOperators.LSHR, shift).selectFrom(TABLE).reinterpretAsFloats()).fma(xv, bs2);
                bs3 = ((FloatVector) (low ? l3 : h3).lanewise(VectorOperators.LSHR, shift).selectFrom(TABLE).reinterpretAsFloats()).fma(xv, bs3);
            }
            long so = s0 + b * scaleStride;
            a0 = ((FloatVector) ((IntVector) ByteVector.fromMemorySegment(SCALE_BYTES, seg, so, LE)
                    .convertShape(VectorOperators.ZERO_EXTEND_B2I, I, 0)).lanewise(VectorOperators.LSHL, 20).reinterpretAsFloats()).mul(0x1p120f).fma(lo0.add(bs0), a0);
            a1 = ((FloatVector) ((IntVector) ByteVector.fromMemorySegment(SCALE_BYTES, seg, so + d1, LE)
                    .convertShape(VectorOperators.ZERO_EXTEND_B2I, I, 0)).lanewise(VectorOperators.LSHL, 20).reinterpretAsFloats()).mul(0x1p120f).fma(lo1.add(bs1), a1);
            a2 = ((FloatVector) ((IntVector) ByteVector.fromMemorySegment(SCALE_BYTES, seg, so + d2, LE)
                    .convertShape(VectorOperators.ZERO_EXTEND_B2I, I, 0)).lanewise(VectorOperators.LSHL, 20).reinterpretAsFloats()).mul(0x1p120f).fma(lo2.add(bs2), a2);
            a3 = ((FloatVector) ((IntVector) ByteVector.fromMemorySegment(SCALE_BYTES, seg, so + d3, LE)
                    .convertShape(VectorOperators.ZERO_EXTEND_B2I, I, 0)).lanewise(VectorOperators.LSHL, 20).reinterpretAsFloats()).mul(0x1p120f).fma(lo3.add(bs3), a3);
        }
        float scale2 = w.tensorScale();
        int span = rowEnd - rowStart;
        a0.mul(scale2).intoArray(out, outOff + j * LANES, F.indexInRange(j * LANES - rowStart, span));
        a1.mul(scale2).intoArray(out, outOff + t1 * LANES, F.indexInRange(t1 * LANES - rowStart, span));
        a2.mul(scale2).intoArray(out, outOff + t2 * LANES, F.indexInRange(t2 * LANES - rowStart, span));
        a3.mul(scale2).intoArray(out, outOff + t3 * LANES, F.indexInRange(t3 * LANES - rowStart, span));
    }

    /**
     * Decode with 8 or 4 lanes (16 lanes take {@link #fourTilesWide}): tiles {@code j .. j+valid-1} against one
     * token; unused chains recompute the last valid tile.
     */
    private static void fourTiles(WeightMatrix w, int j, int valid, float[] x, int xOff, float[] out, int outOff,
                                  int rowStart, int rowEnd) {
        MemorySegment seg = w.data();
        int blocks = w.cols() / BLOCK, last = j + valid - 1;
        int t1 = Math.min(j + 1, last), t2 = Math.min(j + 2, last), t3 = Math.min(j + 3, last);
        long c0 = Nvfp4Format.codeOffsetBytes(w, j, 0, 0), c1 = Nvfp4Format.codeOffsetBytes(w, t1, 0, 0);
        long c2 = Nvfp4Format.codeOffsetBytes(w, t2, 0, 0), c3 = Nvfp4Format.codeOffsetBytes(w, t3, 0, 0);
        long s0 = Nvfp4Format.scaleOffsetBytes(w, j, 0), s1 = Nvfp4Format.scaleOffsetBytes(w, t1, 0);
        long s2 = Nvfp4Format.scaleOffsetBytes(w, t2, 0), s3 = Nvfp4Format.scaleOffsetBytes(w, t3, 0);
        long wordBytes = 4L * LANES, scaleStride = Nvfp4Format.scaleStride(LANES);
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int b = 0; b < blocks; b++) {
            // two chains per tile: columns 0-7 of the block (lo), then 8-15 (bs from zero again); the second
            // half's fmas do not wait for the first's, so eight chains are in flight with four tiles
            FloatVector bs0 = FloatVector.zero(F), bs1 = bs0, bs2 = bs0, bs3 = bs0, lo0 = bs0, lo1 = bs0, lo2 = bs0, lo3 = bs0;
            for (int half = 0; half < 2; half++) {
                if (half == 1) {
                    lo0 = bs0;
                    lo1 = bs1;
                    lo2 = bs2;
                    lo3 = bs3;
                    bs0 = FloatVector.zero(F);
                    bs1 = bs0;
                    bs2 = bs0;
                    bs3 = bs0;
                }
                long o = (2L * b + half) * wordBytes;
                IntVector w0 = IntVector.fromMemorySegment(I, seg, c0 + o, LE);
                IntVector w1 = IntVector.fromMemorySegment(I, seg, c1 + o, LE);
                IntVector w2 = IntVector.fromMemorySegment(I, seg, c2 + o, LE);
                IntVector w3 = IntVector.fromMemorySegment(I, seg, c3 + o, LE);
                int k0 = xOff + b * BLOCK + 8 * half;
                for (int i = 0; i < 8; i++) {
                    FloatVector xv = FloatVector.broadcast(F, x[k0 + i]);
                    int shift = 4 * i, signShift = 28 - 4 * i;
                    IntVector i0 = w0.lanewise(VectorOperators.LSHR, shift);
                    IntVector v0 = SPLIT_TABLE ? i0.selectFrom(TABLE).blend(i0.selectFrom(TABLE_HIGH), i0.lanewise(VectorOperators.AND, 4).compare(VectorOperators.NE, 0))
                            : i0.selectFrom(TABLE);
                    IntVector i1 = w1.lanewise(VectorOperators.LSHR, shift);
                    IntVector v1 = SPLIT_TABLE ? i1.selectFrom(TABLE).blend(i1.selectFrom(TABLE_HIGH), i1.lanewise(VectorOperators.AND, 4).compare(VectorOperators.NE, 0))
                            : i1.selectFrom(TABLE);
                    IntVector i2 = w2.lanewise(VectorOperators.LSHR, shift);
                    IntVector v2 = SPLIT_TABLE ? i2.selectFrom(TABLE).blend(i2.selectFrom(TABLE_HIGH), i2.lanewise(VectorOperators.AND, 4).compare(VectorOperators.NE, 0))
                            : i2.selectFrom(TABLE);
                    IntVector i3 = w3.lanewise(VectorOperators.LSHR, shift);
                    IntVector v3 = SPLIT_TABLE ? i3.selectFrom(TABLE).blend(i3.selectFrom(TABLE_HIGH), i3.lanewise(VectorOperators.AND, 4).compare(VectorOperators.NE, 0))
                            : i3.selectFrom(TABLE);
                    // 8 or 4 entries hold magnitudes: the nibble's sign (bit 3) goes to bit 31
                    v0 = v0.or(w0.lanewise(VectorOperators.LSHL, signShift).lanewise(VectorOperators.AND, 0x80000000));
                    v1 = v1.or(w1.lanewise(VectorOperators.LSHL, signShift).lanewise(VectorOperators.AND, 0x80000000));
                    v2 = v2.or(w2.lanewise(VectorOperators.LSHL, signShift).lanewise(VectorOperators.AND, 0x80000000));
                    v3 = v3.or(w3.lanewise(VectorOperators.LSHL, signShift).lanewise(VectorOperators.AND, 0x80000000));
                    bs0 = ((FloatVector) v0.reinterpretAsFloats()).fma(xv, bs0);
                    bs1 = ((FloatVector) v1.reinterpretAsFloats()).fma(xv, bs1);
                    bs2 = ((FloatVector) v2.reinterpretAsFloats()).fma(xv, bs2);
                    bs3 = ((FloatVector) v3.reinterpretAsFloats()).fma(xv, bs3);
                }
            }
            long so = b * scaleStride;
            FloatVector sc0 = ((FloatVector) ((IntVector) ByteVector.fromMemorySegment(SCALE_BYTES, seg, s0 + so, LE)
                    .convertShape(VectorOperators.ZERO_EXTEND_B2I, I, 0)).lanewise(VectorOperators.LSHL, 20).reinterpretAsFloats()).mul(0x1p120f);
            FloatVector sc1 = ((FloatVector) ((IntVector) ByteVector.fromMemorySegment(SCALE_BYTES, seg, s1 + so, LE)
                    .convertShape(VectorOperators.ZERO_EXTEND_B2I, I, 0)).lanewise(VectorOperators.LSHL, 20).reinterpretAsFloats()).mul(0x1p120f);
            FloatVector sc2 = ((FloatVector) ((IntVector) ByteVector.fromMemorySegment(SCALE_BYTES, seg, s2 + so, LE)
                    .convertShape(VectorOperators.ZERO_EXTEND_B2I, I, 0)).lanewise(VectorOperators.LSHL, 20).reinterpretAsFloats()).mul(0x1p120f);
            FloatVector sc3 = ((FloatVector) ((IntVector) ByteVector.fromMemorySegment(SCALE_BYTES, seg, s3 + so, LE)
                    .convertShape(VectorOperators.ZERO_EXTEND_B2I, I, 0)).lanewise(VectorOperators.LSHL, 20).reinterpretAsFloats()).mul(0x1p120f);
            a0 = sc0.fma(lo0.add(bs0), a0);
            a1 = sc1.fma(lo1.add(bs1), a1);
            a2 = sc2.fma(lo2.add(bs2), a2);
            a3 = sc3.fma(lo3.add(bs3), a3);
        }
        float scale2 = w.tensorScale();
        int span = rowEnd - rowStart;
        a0.mul(scale2).intoArray(out, outOff + j * LANES, F.indexInRange(j * LANES - rowStart, span));
        a1.mul(scale2).intoArray(out, outOff + t1 * LANES, F.indexInRange(t1 * LANES - rowStart, span));
        a2.mul(scale2).intoArray(out, outOff + t2 * LANES, F.indexInRange(t2 * LANES - rowStart, span));
        a3.mul(scale2).intoArray(out, outOff + t3 * LANES, F.indexInRange(t3 * LANES - rowStart, span));
    }

    /**
     * Prefill with 16 lanes: tile {@code j} against tokens {@code 0 .. valid-1} from {@code x[xOff]}: each column is
     * decoded once (both code words of the block at once) and feeds two fma chains per token, the block's columns
     * 0-7 and 8-15, interleaved: eight chains. (With 8 lanes and AVX2's 16 registers this body spills: 2.2x slower
     * than {@link #fourTokens} under {@code -XX:UseAVX=2}.)
     */
    private static void fourTokensWide(WeightMatrix w, int j, int valid, float[] x, int xOff, int xStride,
                                   float[] out, int outOff, int outStride, int rowStart, int rowEnd) {
        MemorySegment seg = w.data();
        int blocks = w.cols() / BLOCK;
        long c = Nvfp4Format.codeOffsetBytes(w, j, 0, 0), s = Nvfp4Format.scaleOffsetBytes(w, j, 0);
        long wordBytes = 4L * LANES, scaleStride = Nvfp4Format.scaleStride(LANES);
        int lastX = xOff + (valid - 1) * xStride;
        int x0 = xOff, x1 = Math.min(x0 + xStride, lastX), x2 = Math.min(x0 + 2 * xStride, lastX), x3 = Math.min(x0 + 3 * xStride, lastX);
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int b = 0; b < blocks; b++) {
            // columns i (chains lo) and 8 + i (chains bs) of the block in one iteration: eight independent fma
            // chains, each in the definition's order (four would wait on the fma latency: 3x slower than 4 x 1 token)
            FloatVector bs0 = FloatVector.zero(F), bs1 = bs0, bs2 = bs0, bs3 = bs0, lo0 = bs0, lo1 = bs0, lo2 = bs0, lo3 = bs0;
            IntVector wordLo = IntVector.fromMemorySegment(I, seg, c + 2L * b * wordBytes, LE);
            IntVector wordHi = IntVector.fromMemorySegment(I, seg, c + (2L * b + 1) * wordBytes, LE);
            int k0 = b * BLOCK;
            for (int i = 0; i < 8; i++) {
                FloatVector wl = (FloatVector) wordLo.lanewise(VectorOperators.LSHR, 4 * i).selectFrom(TABLE).reinterpretAsFloats();
                FloatVector wh = (FloatVector) wordHi.lanewise(VectorOperators.LSHR, 4 * i).selectFrom(TABLE).reinterpretAsFloats();
                int k = k0 + i;
                lo0 = wl.fma(FloatVector.broadcast(F, x[x0 + k]), lo0);
                bs0 = wh.fma(FloatVector.broadcast(F, x[x0 + k + 8]), bs0);
                lo1 = wl.fma(FloatVector.broadcast(F, x[x1 + k]), lo1);
                bs1 = wh.fma(FloatVector.broadcast(F, x[x1 + k + 8]), bs1);
                lo2 = wl.fma(FloatVector.broadcast(F, x[x2 + k]), lo2);
                bs2 = wh.fma(FloatVector.broadcast(F, x[x2 + k + 8]), bs2);
                lo3 = wl.fma(FloatVector.broadcast(F, x[x3 + k]), lo3);
                bs3 = wh.fma(FloatVector.broadcast(F, x[x3 + k + 8]), bs3);
            }
            FloatVector sc = ((FloatVector) ((IntVector) ByteVector.fromMemorySegment(SCALE_BYTES, seg, s + b * scaleStride, LE)
                    .convertShape(VectorOperators.ZERO_EXTEND_B2I, I, 0)).lanewise(VectorOperators.LSHL, 20).reinterpretAsFloats()).mul(0x1p120f);
            a0 = sc.fma(lo0.add(bs0), a0);
            a1 = sc.fma(lo1.add(bs1), a1);
            a2 = sc.fma(lo2.add(bs2), a2);
            a3 = sc.fma(lo3.add(bs3), a3);
        }
        float scale2 = w.tensorScale();
        int lastRow = valid - 1, r0 = j * LANES;
        VectorMask<Float> rows = F.indexInRange(r0 - rowStart, rowEnd - rowStart);
        int o = outOff + r0;
        a0.mul(scale2).intoArray(out, o, rows);
        a1.mul(scale2).intoArray(out, o + Math.min(1, lastRow) * outStride, rows);
        a2.mul(scale2).intoArray(out, o + Math.min(2, lastRow) * outStride, rows);
        a3.mul(scale2).intoArray(out, o + Math.min(3, lastRow) * outStride, rows);
    }

    /**
     * Two tokens with 16 lanes: tiles {@code j} and {@code j+1} ({@code valid} 1..2; an unused tile recomputes the
     * last valid one) against tokens {@code x[xOff..]} and {@code x[xOff + xStride..]}: each decoded column feeds both
     * tokens, columns {@code i} and {@code 8 + i} of a block interleaved: eight chains, each in the definition's order.
     * An MoE expert in a batched decode step sees two tokens about as often as one; this decodes its weights once.
     */
    private static void twoTokensWide(WeightMatrix w, int j, int valid, float[] x, int xOff, int xStride,
                                      float[] out, int outOff, int outStride, int rowStart, int rowEnd) {
        MemorySegment seg = w.data();
        int blocks = w.cols() / BLOCK;
        int t1 = Math.min(j + 1, j + valid - 1);
        long d1 = (t1 - j) * w.tileOffsetBytes(1);
        long c = Nvfp4Format.codeOffsetBytes(w, j, 0, 0), s = Nvfp4Format.scaleOffsetBytes(w, j, 0);
        long wordBytes = 4L * LANES, scaleStride = Nvfp4Format.scaleStride(LANES);
        int x0 = xOff, x1 = xOff + xStride;
        FloatVector a00 = FloatVector.zero(F), a01 = a00, a10 = a00, a11 = a00; // a<tile><token>
        for (int b = 0; b < blocks; b++) {
            FloatVector lo00 = FloatVector.zero(F), lo01 = lo00, lo10 = lo00, lo11 = lo00, hi00 = lo00, hi01 = lo00, hi10 = lo00, hi11 = lo00;
            long o = c + 2L * b * wordBytes;
            IntVector l0 = IntVector.fromMemorySegment(I, seg, o, LE), h0 = IntVector.fromMemorySegment(I, seg, o + wordBytes, LE);
            IntVector l1 = IntVector.fromMemorySegment(I, seg, o + d1, LE), h1 = IntVector.fromMemorySegment(I, seg, o + d1 + wordBytes, LE);
            int k0 = b * BLOCK;
            for (int i = 0; i < 8; i++) {
                int shift = 4 * i, k = k0 + i;
                FloatVector wl0 = (FloatVector) l0.lanewise(VectorOperators.LSHR, shift).selectFrom(TABLE).reinterpretAsFloats();
                FloatVector wh0 = (FloatVector) h0.lanewise(VectorOperators.LSHR, shift).selectFrom(TABLE).reinterpretAsFloats();
                FloatVector wl1 = (FloatVector) l1.lanewise(VectorOperators.LSHR, shift).selectFrom(TABLE).reinterpretAsFloats();
                FloatVector wh1 = (FloatVector) h1.lanewise(VectorOperators.LSHR, shift).selectFrom(TABLE).reinterpretAsFloats();
                FloatVector xa = FloatVector.broadcast(F, x[x0 + k]), xah = FloatVector.broadcast(F, x[x0 + k + 8]);
                FloatVector xb = FloatVector.broadcast(F, x[x1 + k]), xbh = FloatVector.broadcast(F, x[x1 + k + 8]);
                lo00 = wl0.fma(xa, lo00);
                hi00 = wh0.fma(xah, hi00);
                lo01 = wl0.fma(xb, lo01);
                hi01 = wh0.fma(xbh, hi01);
                lo10 = wl1.fma(xa, lo10);
                hi10 = wh1.fma(xah, hi10);
                lo11 = wl1.fma(xb, lo11);
                hi11 = wh1.fma(xbh, hi11);
            }
            long so = s + b * scaleStride;
            FloatVector sc0 = ((FloatVector) ((IntVector) ByteVector.fromMemorySegment(SCALE_BYTES, seg, so, LE)
                    .convertShape(VectorOperators.ZERO_EXTEND_B2I, I, 0)).lanewise(VectorOperators.LSHL, 20).reinterpretAsFloats()).mul(0x1p120f);
            FloatVector sc1 = ((FloatVector) ((IntVector) ByteVector.fromMemorySegment(SCALE_BYTES, seg, so + d1, LE)
                    .convertShape(VectorOperators.ZERO_EXTEND_B2I, I, 0)).lanewise(VectorOperators.LSHL, 20).reinterpretAsFloats()).mul(0x1p120f);
            a00 = sc0.fma(lo00.add(hi00), a00);
            a01 = sc0.fma(lo01.add(hi01), a01);
            a10 = sc1.fma(lo10.add(hi10), a10);
            a11 = sc1.fma(lo11.add(hi11), a11);
        }
        float scale2 = w.tensorScale();
        int span = rowEnd - rowStart;
        VectorMask<Float> m0 = F.indexInRange(j * LANES - rowStart, span), m1 = F.indexInRange(t1 * LANES - rowStart, span);
        a00.mul(scale2).intoArray(out, outOff + j * LANES, m0);
        a10.mul(scale2).intoArray(out, outOff + t1 * LANES, m1);
        a01.mul(scale2).intoArray(out, outOff + outStride + j * LANES, m0);
        a11.mul(scale2).intoArray(out, outOff + outStride + t1 * LANES, m1);
    }

    /**
     * Prefill with 8 or 4 lanes: tile {@code j} against tokens {@code 0 .. valid-1} from {@code x[xOff]}: each column
     * is decoded once and used by four fma chains, the block's halves one after the other (fits AVX2's 16 registers).
     * Unused chains recompute the last valid token.
     */
    private static void fourTokens(WeightMatrix w, int j, int valid, float[] x, int xOff, int xStride,
                                   float[] out, int outOff, int outStride, int rowStart, int rowEnd) {
        MemorySegment seg = w.data();
        int blocks = w.cols() / BLOCK;
        long c = Nvfp4Format.codeOffsetBytes(w, j, 0, 0), s = Nvfp4Format.scaleOffsetBytes(w, j, 0);
        long wordBytes = 4L * LANES, scaleStride = Nvfp4Format.scaleStride(LANES);
        int lastX = xOff + (valid - 1) * xStride;
        int x0 = xOff, x1 = Math.min(x0 + xStride, lastX), x2 = Math.min(x0 + 2 * xStride, lastX), x3 = Math.min(x0 + 3 * xStride, lastX);
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int b = 0; b < blocks; b++) {
            FloatVector bs0 = FloatVector.zero(F), bs1 = bs0, bs2 = bs0, bs3 = bs0, lo0 = bs0, lo1 = bs0, lo2 = bs0, lo3 = bs0;
            for (int half = 0; half < 2; half++) {
                if (half == 1) {
                    lo0 = bs0;
                    lo1 = bs1;
                    lo2 = bs2;
                    lo3 = bs3;
                    bs0 = FloatVector.zero(F);
                    bs1 = bs0;
                    bs2 = bs0;
                    bs3 = bs0;
                }
                IntVector word = IntVector.fromMemorySegment(I, seg, c + (2L * b + half) * wordBytes, LE);
                int k0 = b * BLOCK + 8 * half;
                for (int i = 0; i < 8; i++) {
                    IntVector idx = word.lanewise(VectorOperators.LSHR, 4 * i);
                    IntVector v = SPLIT_TABLE ? idx.selectFrom(TABLE).blend(idx.selectFrom(TABLE_HIGH), idx.lanewise(VectorOperators.AND, 4).compare(VectorOperators.NE, 0))
                            : idx.selectFrom(TABLE);
                    if (!WIDE_TABLE) {
                        v = v.or(word.lanewise(VectorOperators.LSHL, 28 - 4 * i).lanewise(VectorOperators.AND, 0x80000000));
                    }
                    FloatVector wv = (FloatVector) v.reinterpretAsFloats();
                    int k = k0 + i;
                    bs0 = wv.fma(FloatVector.broadcast(F, x[x0 + k]), bs0);
                    bs1 = wv.fma(FloatVector.broadcast(F, x[x1 + k]), bs1);
                    bs2 = wv.fma(FloatVector.broadcast(F, x[x2 + k]), bs2);
                    bs3 = wv.fma(FloatVector.broadcast(F, x[x3 + k]), bs3);
                }
            }
            FloatVector sc = ((FloatVector) ((IntVector) ByteVector.fromMemorySegment(SCALE_BYTES, seg, s + b * scaleStride, LE)
                    .convertShape(VectorOperators.ZERO_EXTEND_B2I, I, 0)).lanewise(VectorOperators.LSHL, 20).reinterpretAsFloats()).mul(0x1p120f);
            a0 = sc.fma(lo0.add(bs0), a0);
            a1 = sc.fma(lo1.add(bs1), a1);
            a2 = sc.fma(lo2.add(bs2), a2);
            a3 = sc.fma(lo3.add(bs3), a3);
        }
        float scale2 = w.tensorScale();
        int lastRow = valid - 1, r0 = j * LANES;
        VectorMask<Float> rows = F.indexInRange(r0 - rowStart, rowEnd - rowStart);
        int o = outOff + r0;
        a0.mul(scale2).intoArray(out, o, rows);
        a1.mul(scale2).intoArray(out, o + Math.min(1, lastRow) * outStride, rows);
        a2.mul(scale2).intoArray(out, o + Math.min(2, lastRow) * outStride, rows);
        a3.mul(scale2).intoArray(out, o + Math.min(3, lastRow) * outStride, rows);
    }
}
