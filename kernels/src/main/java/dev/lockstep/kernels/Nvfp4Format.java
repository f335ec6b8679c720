package dev.lockstep.kernels;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * NVFP4 (NVIDIA's 4-bit float): {@link E2M1} codes, one {@link E4M3} scale per 16 consecutive elements of a
 * row, and one float32 tensor scale ({@code weight_scale_2}, {@link WeightMatrix#tensorScale()}), 4.5 bits per
 * weight. Built from a checkpoint's {@code weight} (U8 {@code [rows, cols/2]}, element 2j in the low nibble of
 * byte j), {@code weight_scale} (F8_E4M3 {@code [rows, cols/16]}) and {@code weight_scale_2} (F32 scalar);
 * {@code cols % 16 == 0}. Only the TILED layout exists in memory:
 *
 * <pre>
 * T = tileRows, B = cols / 16 blocks, S = max(T, 8) scale bytes per block (T used, the rest zero)
 * tile j (rows jT .. jT+T-1; the last tile's missing rows are all zero):
 *   | codes:  for block b = 0..B-1, word w = 0, 1: T little-endian int32, lane r =                          |
 *   |         row jT+r, columns 16b+8w .. 16b+8w+7, column 16b+8w+i in bits 4i .. 4i+3      (B * 8T bytes) |
 *   | scales: for block b = 0..B-1: S bytes, byte r = E4M3 scale of row jT+r, block b           (B * S bytes)  |
 *   code word (b, w) at tile + (2b + w) * 4T; scales of block b at tile + 8T*B + b*S
 * </pre>
 *
 * A lane word is four bytes of the checkpoint row (columns 16b+8w .. +7 in checkpoint nibble order), so packing
 * is a transposition of 32-bit words; one vector load gives 8 columns of T rows.
 *
 * <p>The definition of the matmul (its operation order, which every implementation and width follows): per
 * output, {@code acc = 0}; for each block b in order: {@code lo} = the sequential fma chain
 * {@code fma(E2M1(code[r, k]), x[k], .)} from 0 over the block's columns 0-7 in order, {@code hi} the same over
 * columns 8-15, then {@code acc = fma(E4M3(scale[r, b]), lo + hi, acc)}; finally {@code out = acc * weight_scale_2}.
 * (Codes times activations summed per half block in two independent chains, so a vector kernel keeps twice as
 * many fmas in flight; scaled once per block; the tensor scale once per output.) The result equals HF's float32 matmul over the dequantized weights
 * {@code E2M1 * (f32(scale) * weight_scale_2)} up to float32 rounding.
 *
 * <p>MXFP4 (OCP microscaling, gpt-oss's experts: E2M1 codes, one E8M0 scale {@code 2^(e-127)} per 32 values, no
 * tensor scale) is the second instance of this class ({@link #MXFP4}), run by the same kernels with the same E4M3
 * scale decode: a power of two {@code 2^k} is the E4M3 byte {@code (k + 7) << 3} read by that decode (a zero-extended
 * byte shifted by 20 gives exponent field {@code k + 7 + 120}), for {@code k + 7} in {@code [1, 31]}. So a matrix
 * stores each 32-block's scale, for both of its 16-column halves, as {@code ((e - base + 1) << 3)} with
 * {@code base = max(e_max - 30, 0)} over the matrix, and carries the tensor scale {@code 2^(base - 121)}: every block
 * is scaled by {@code 2^(e - base - 6)} inside the sum and the sum by {@code 2^(base - 121)} at the end, powers of two
 * whose product is {@code 2^(e - 127)}, so the result equals the definition ({@code acc = fma(2^(e-127), lo + hi,
 * acc)}, no tensor scale) bit for bit unless an intermediate leaves float32's normal range. A block whose scale is
 * more than 2^30 below its matrix's largest is stored as zero (its values are below float32's resolution of that
 * matrix's outputs); NaN ({@code 0xFF}) is refused at load. 4.5 bits per weight in memory (4.25 in the checkpoint:
 * the duplicated scale byte keeps one kernel for both formats, whose hot loop is then exactly NVFP4's).
 */
public final class Nvfp4Format implements WeightFormat {
    static final Nvfp4Format INSTANCE = new Nvfp4Format("NVFP4");
    static final Nvfp4Format MXFP4 = new Nvfp4Format("MXFP4");
    public static final int BLOCK = 16;
    /** Values per E8M0 scale in MXFP4. */
    public static final int MX_BLOCK = 32;
    private static final ValueLayout.OfInt INT_LE = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final String name;

    private Nvfp4Format(String name) {
        this.name = name;
    }

    @Override
    public String name() {
        return name;
    }

    /** A stored scale byte as float32: the kernels' decode, {@code float(zero-extended byte << 20) * 2^120} (E4M3 for bytes below 128). */
    static float decodeScale(int bits) {
        return Float.intBitsToFloat((bits & 0xff) << 20) * 0x1p120f;
    }

    @Override
    public String toString() {
        return name();
    }

    @Override
    public double bitsPerWeight() {
        return 4.5; // MXFP4 too, as packed in memory (see the class comment)
    }

    /** Scale bytes per block in a tile: T, at least 8 (one 64-bit load). */
    static int scaleStride(int tileRows) {
        return Math.max(tileRows, 8);
    }

    @Override
    public long tileBytes(int cols, int tileRows) {
        long blocks = cols / BLOCK;
        return blocks * (8L * tileRows + scaleStride(tileRows));
    }

    /** Offset of code word {@code (block, word)} of tile {@code tile}. */
    static long codeOffsetBytes(WeightMatrix m, int tile, int block, int word) {
        return m.tileOffsetBytes(tile) + (2L * block + word) * 4L * m.tileRows();
    }

    /** Offset of the scale bytes of block {@code block} of tile {@code tile}. */
    static long scaleOffsetBytes(WeightMatrix m, int tile, int block) {
        int t = m.tileRows();
        return m.tileOffsetBytes(tile) + 8L * t * (m.cols() / BLOCK) + (long) block * scaleStride(t);
    }

    static void requireShape(String name, int rows, int cols) {
        if (rows <= 0 || cols <= 0 || cols % BLOCK != 0) {
            throw new IllegalArgumentException(name + ": NVFP4 needs a positive row count and a column count divisible by "
                    + BLOCK + ", not [" + rows + ", " + cols + "]");
        }
    }

    /**
     * An NVFP4 matrix over {@code target} ({@link #tiledBytes} bytes, contents still to be written by
     * {@link #fill} or {@link Nvfp4Quantizer#quantizeInto}). The tensor scale must be finite and positive.
     */
    public static WeightMatrix tiled(String name, int rows, int cols, float tensorScale, int tileRows, MemorySegment target) {
        requireShape(name, rows, cols);
        if (!(tensorScale > 0f) || !Float.isFinite(tensorScale)) {
            throw new IllegalArgumentException(name + ": weight_scale_2 is " + tensorScale + ", must be finite and positive");
        }
        return new WeightMatrix(name, INSTANCE, rows, cols, target, WeightLayout.TILED, tileRows, tensorScale);
    }

    /**
     * An MXFP4 matrix over {@code target} ({@link #tiledBytes} bytes) for the E8M0 {@code scales} ({@code [rows, cols/32]},
     * the checkpoint's bytes: they fix the matrix's exponent base and so its tensor scale), to be written by
     * {@link #fillMxfp4} with the same scales; {@code cols % 32 == 0}.
     */
    public static WeightMatrix mxfp4Tiled(String name, int rows, int cols, MemorySegment scales, int tileRows, MemorySegment target) {
        if (rows <= 0 || cols <= 0 || cols % MX_BLOCK != 0) {
            throw new IllegalArgumentException(name + ": MXFP4 needs a positive row count and a column count divisible by " + MX_BLOCK
                    + ", not [" + rows + ", " + cols + "]");
        }
        return new WeightMatrix(name, MXFP4, rows, cols, target, WeightLayout.TILED, tileRows, Math.scalb(1f, mxBase(scales) - 121));
    }

    /** The exponent base of a matrix's E8M0 scales: {@code max(e_max - 30, 0)} over the non-NaN bytes. */
    static int mxBase(MemorySegment scales) {
        int max = 0;
        for (long i = 0; i < scales.byteSize(); i++) {
            int e = scales.get(ValueLayout.JAVA_BYTE, i) & 0xff;
            if (e != 0xff) {
                max = Math.max(max, e);
            }
        }
        return Math.max(max - 30, 0);
    }

    /**
     * Writes checkpoint-layout MXFP4 rows into {@code m}: {@code blocks} row-major {@code [rows, cols/32, 16]} bytes
     * (element 2k of a block in the low nibble of byte k: within a row, the same nibble order as NVFP4's codes) and
     * {@code scales} {@code [rows, cols/32]} E8M0 bytes. A scale of 0xFF (NaN) or 0xFE (2^127: its values overflow
     * float32) is an IllegalArgumentException naming the element.
     */
    public static void fillMxfp4(WeightMatrix m, MemorySegment blocks, MemorySegment scales) {
        int rows = m.rows(), cols = m.cols(), mx = cols / MX_BLOCK;
        if (m.format() != MXFP4 || blocks.byteSize() != (long) rows * cols / 2 || scales.byteSize() != (long) rows * mx) {
            throw new IllegalArgumentException(m.name() + ": MXFP4 [" + rows + ", " + cols + "] needs " + (long) rows * cols / 2
                    + " block bytes and " + (long) rows * mx + " scale bytes, got " + blocks.byteSize() + " and " + scales.byteSize());
        }
        int base = mxBase(scales);
        if (Math.scalb(1f, base - 121) != m.tensorScale()) {
            throw new IllegalArgumentException(m.name() + ": MXFP4 scales differ from those the matrix was declared with");
        }
        byte[] e8 = new byte[mx];
        MemorySegment stored = MemorySegment.ofArray(new byte[rows * 2 * mx]);
        for (int r = 0; r < rows; r++) {
            MemorySegment.copy(scales, ValueLayout.JAVA_BYTE, (long) r * mx, e8, 0, mx);
            for (int b = 0; b < mx; b++) {
                int e = e8[b] & 0xff;
                if (e == 0xff) {
                    throw new IllegalArgumentException(m.name() + ": MXFP4 scale [" + r + ", " + b + "] is E8M0 0xff (NaN)");
                }
                // 2^(e - base - 6) as the E4M3-decoded byte ((e - base + 1) << 3); more than 2^30 below the largest: zero
                byte v = e < base ? 0 : (byte) ((e - base + 1) << 3);
                stored.set(ValueLayout.JAVA_BYTE, (long) r * 2 * mx + 2 * b, v);
                stored.set(ValueLayout.JAVA_BYTE, (long) r * 2 * mx + 2 * b + 1, v);
            }
        }
        fill(m, blocks, stored);
    }

    /**
     * Packs checkpoint-layout NVFP4 data into {@code target} ({@link #tiledBytes} bytes): {@code codes} row-major
     * {@code [rows, cols/2]}, {@code scales} row-major {@code [rows, cols/16]}, {@code tensorScale} =
     * {@code weight_scale_2}. Every block scale must be finite and non-negative (sign bit clear, not 0x7F) and the
     * tensor scale finite and positive; a violation is an IllegalArgumentException naming the element.
     */
    public static WeightMatrix pack(String name, int rows, int cols, MemorySegment codes, MemorySegment scales,
                                    float tensorScale, int tileRows, MemorySegment target) {
        WeightMatrix m = tiled(name, rows, cols, tensorScale, tileRows, target);
        fill(m, codes, scales);
        return m;
    }

    /** Writes checkpoint-layout codes and scales (all rows) into the tiles of {@code m} (see {@link #pack}). */
    public static void fill(WeightMatrix m, MemorySegment codes, MemorySegment scales) {
        int rows = m.rows(), cols = m.cols(), t = m.tileRows();
        if (codes.byteSize() != (long) rows * cols / 2 || scales.byteSize() != (long) rows * cols / BLOCK) {
            throw new IllegalArgumentException(m.name() + ": NVFP4 [" + rows + ", " + cols + "] needs " + (long) rows * cols / 2
                    + " code bytes and " + (long) rows * cols / BLOCK + " scale bytes, got " + codes.byteSize() + " and " + scales.byteSize());
        }
        TileBuffers buffers = new TileBuffers(m);
        for (int j = 0; j < m.tiles(); j++) {
            int lanes = Math.min(t, rows - j * t);
            fillTile(m, j, lanes, codes.asSlice((long) j * t * cols / 2, (long) lanes * cols / 2),
                    scales.asSlice((long) j * t * (cols / BLOCK), (long) lanes * (cols / BLOCK)), buffers);
        }
    }

    /** The arrays one tile is assembled in, allocated once per matrix (not per tile). */
    static final class TileBuffers {
        final int[] rowWords;
        final byte[] rowScales;
        final int[] tileWords;
        final byte[] tileScales;

        TileBuffers(WeightMatrix m) {
            int blocks = m.cols() / BLOCK;
            rowWords = new int[2 * blocks];
            rowScales = new byte[blocks];
            tileWords = new int[2 * blocks * m.tileRows()];
            tileScales = new byte[blocks * scaleStride(m.tileRows())];
        }
    }

    /**
     * Writes tile {@code tile} of {@code m} from the checkpoint-layout codes and scales of its first {@code lanes}
     * rows (the remaining lanes are zero), checking every block scale.
     */
    static void fillTile(WeightMatrix m, int tile, int lanes, MemorySegment codes, MemorySegment scales, TileBuffers buffers) {
        int cols = m.cols(), tileRows = m.tileRows();
        int blocks = cols / BLOCK, words = 2 * blocks, s = scaleStride(tileRows);
        int[] rowWords = buffers.rowWords;
        byte[] rowScales = buffers.rowScales;
        int[] tileWords = buffers.tileWords;
        byte[] tileScales = buffers.tileScales;
        Arrays.fill(tileWords, 0);
        Arrays.fill(tileScales, (byte) 0);
        for (int lane = 0; lane < lanes; lane++) {
            MemorySegment.copy(codes, INT_LE, (long) lane * cols / 2, rowWords, 0, words);
            MemorySegment.copy(scales, ValueLayout.JAVA_BYTE, (long) lane * blocks, rowScales, 0, blocks);
            for (int w = 0; w < words; w++) {
                tileWords[w * tileRows + lane] = rowWords[w];
            }
            for (int b = 0; b < blocks; b++) {
                if (m.format() == INSTANCE && (rowScales[b] < 0 || rowScales[b] == E4M3.NAN_BITS)) {
                    throw new IllegalArgumentException(m.name() + ": block scale [" + (tile * tileRows + lane) + ", " + b + "] is "
                            + E4M3.toFloat(rowScales[b]) + " (E4M3 0x" + Integer.toHexString(rowScales[b] & 0xff)
                            + "); NVFP4 block scales are finite and non-negative");
                }
                tileScales[b * s + lane] = rowScales[b];
            }
        }
        long base = m.tileOffsetBytes(tile);
        MemorySegment.copy(tileWords, 0, m.data(), INT_LE, base, tileWords.length);
        MemorySegment.copy(tileScales, 0, m.data(), ValueLayout.JAVA_BYTE, base + 4L * tileWords.length, tileScales.length);
    }

    /** The E2M1 code of element (row, col). */
    public static int code(WeightMatrix m, int row, int col) {
        int t = m.tileRows();
        int word = m.data().get(INT_LE, codeOffsetBytes(m, row / t, col / BLOCK, (col % BLOCK) / 8) + 4L * (row % t));
        return (word >>> 4 * (col % 8)) & 0xf;
    }

    /** The E4M3 scale byte of block {@code block} of row {@code row}. */
    public static int scale(WeightMatrix m, int row, int block) {
        int t = m.tileRows();
        return m.data().get(ValueLayout.JAVA_BYTE, scaleOffsetBytes(m, row / t, block) + row % t) & 0xff;
    }

    /** Dequantized as ModelOpt does: {@code E2M1(code) * (f32(scale) * weight_scale_2)} (MXFP4: {@code E2M1(code) * 2^(e-127)}). */
    @Override
    public float get(WeightMatrix m, int row, int col) {
        if (this == MXFP4) {
            return E2M1.toFloat(code(m, row, col)) * (decodeScale(scale(m, row, col / BLOCK)) * m.tensorScale());
        }
        return Nvfp4Quantizer.dequantize(code(m, row, col), scale(m, row, col / BLOCK), m.tensorScale());
    }

    @Override
    public void matmulReference(WeightMatrix w, float[] x, int xOff, int xStride, int nTokens,
                                float[] out, int outOff, int outStride, int rowStart, int rowEnd) {
        int tile = w.tileRows(), blocks = w.cols() / BLOCK, s = scaleStride(tile);
        float scale2 = w.tensorScale();
        int[] words = new int[2 * blocks * tile];
        byte[] scales = new byte[blocks * s];
        float[] acc = new float[tile], bs = new float[tile], lo = new float[tile];
        for (int j = rowStart / tile; j * tile < rowEnd; j++) {
            long base = w.tileOffsetBytes(j);
            MemorySegment.copy(w.data(), INT_LE, base, words, 0, words.length);
            MemorySegment.copy(w.data(), ValueLayout.JAVA_BYTE, base + 4L * words.length, scales, 0, scales.length);
            int r0 = j * tile;
            for (int t = 0; t < nTokens; t++) {
                int xo = xOff + t * xStride;
                Arrays.fill(acc, 0f);
                for (int b = 0; b < blocks; b++) {
                    for (int half = 0; half < 2; half++) {
                        float[] chain = half == 0 ? lo : bs;
                        Arrays.fill(chain, 0f);
                        int wordBase = (2 * b + half) * tile, k0 = xo + b * BLOCK + 8 * half;
                        for (int i = 0; i < 8; i++) {
                            float xv = x[k0 + i];
                            for (int lane = 0; lane < tile; lane++) {
                                chain[lane] = Math.fma(E2M1.toFloat(words[wordBase + lane] >>> 4 * i), xv, chain[lane]);
                            }
                        }
                    }
                    for (int lane = 0; lane < tile; lane++) {
                        acc[lane] = Math.fma(decodeScale(scales[b * s + lane]), lo[lane] + bs[lane], acc[lane]);
                    }
                }
                for (int lane = Math.max(0, rowStart - r0); lane < tile && r0 + lane < rowEnd; lane++) {
                    out[outOff + t * outStride + r0 + lane] = acc[lane] * scale2;
                }
            }
        }
    }

    @Override
    public void matmulVector(WeightMatrix w, float[] x, int xOff, int xStride, int nTokens,
                             float[] out, int outOff, int outStride, int rowStart, int rowEnd) {
        Nvfp4VectorKernel.matmul(w, x, xOff, xStride, nTokens, out, outOff, outStride, rowStart, rowEnd);
    }

    @Override
    public String vectorKernel() {
        return Nvfp4VectorKernel.description();
    }
}
