package dev.lockstep.kernels;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * Formats that store every element in full: {@link Bf16Format}, {@link F16Format}, {@link F32Format}. They
 * share one tiled layout built from 32-bit lane words (see {@link WeightLayout}): a word holds
 * {@link #elementsPerWord()} consecutive elements of one row (two 16-bit halves, low half first, or one
 * float32), and a tile stores word {@code w} of its T rows side by side, so one vector load gives T rows and
 * the vector kernels need no horizontal reduction.
 *
 * <p>The definition of their matmul: per output, {@code acc = 0}, then for {@code k = 0 .. cols-1} in order
 * {@code acc = fma(w[r, k], x[k], acc)}.
 */
public abstract sealed class DenseFormat implements WeightFormat permits Bf16Format, F16Format, F32Format {
    static final ValueLayout.OfInt INT_LE = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final String name;
    private final int bytesPerElement;

    DenseFormat(String name, int bytesPerElement) {
        this.name = name;
        this.bytesPerElement = bytesPerElement;
    }

    @Override
    public final String name() {
        return name;
    }

    @Override
    public String toString() {
        return name;
    }

    public final int bytesPerElement() {
        return bytesPerElement;
    }

    @Override
    public final double bitsPerWeight() {
        return 8.0 * bytesPerElement;
    }

    /** Elements per 32-bit lane word: 2 for 16-bit formats, 1 for float32. */
    public final int elementsPerWord() {
        return 4 / bytesPerElement;
    }

    /** Lane words per row: {@code ceil(cols / elementsPerWord)}. */
    final int words(int cols) {
        int g = elementsPerWord();
        return (cols + g - 1) / g;
    }

    @Override
    public final long tileBytes(int cols, int tileRows) {
        return (long) words(cols) * tileRows * 4;
    }

    /** Bytes of a row-major {@code [rows, cols]} matrix. */
    public final long rowMajorBytes(int rows, int cols) {
        return (long) rows * cols * bytesPerElement;
    }

    /** Byte offset of element (row, col) of {@code m}. */
    final long elementOffsetBytes(WeightMatrix m, int row, int col) {
        if (m.layout() == WeightLayout.ROW_MAJOR) {
            return ((long) row * m.cols() + col) * bytesPerElement;
        }
        int t = m.tileRows(), g = elementsPerWord();
        return m.tileOffsetBytes(row / t) + ((long) (col / g) * t + row % t) * 4 + (long) (col % g) * bytesPerElement;
    }

    /** The element in part {@code part} (0 = low half) of a lane word. */
    abstract float decode(int word, int part);

    /** The element at {@code offsetBytes} of a segment. */
    abstract float read(MemorySegment data, long offsetBytes);

    /** Whether the raw bits of one element are NaN or infinite. */
    abstract boolean nonFinite(int bits);

    @Override
    public final float get(WeightMatrix m, int row, int col) {
        return read(m.data(), elementOffsetBytes(m, row, col));
    }

    /** The TILED matrix {@link #packTiled} will write into {@code target}, described before its bytes are there. */
    public static WeightMatrix tiledView(WeightMatrix m, int tileRows, MemorySegment target) {
        return new WeightMatrix(m.name(), m.format(), m.rows(), m.cols(), target, WeightLayout.TILED, tileRows, 1f);
    }

    /**
     * {@code m} (row-major) repacked into the TILED layout with {@code tileRows} rows per tile, in {@code target}
     * ({@link #tiledBytes} bytes). Padding is zero. Row words are bulk-copied and transposed in plain arrays: this
     * runs at load on a cold JVM, before the JIT has compiled anything.
     */
    final WeightMatrix packTiled(WeightMatrix m, int tileRows, MemorySegment target) {
        if (m.layout() != WeightLayout.ROW_MAJOR) {
            throw new IllegalStateException(m.name() + " is already " + m.layout());
        }
        WeightMatrix packed = new WeightMatrix(m.name(), this, m.rows(), m.cols(), target, WeightLayout.TILED, tileRows, 1f);
        int cols = m.cols(), words = words(cols);
        long rowBytes = (long) cols * bytesPerElement;
        int fullWords = (int) (rowBytes / 4);
        int[] row = new int[words];
        int[] tile = new int[words * tileRows];
        for (int j = 0; j < packed.tiles(); j++) {
            Arrays.fill(tile, 0);
            for (int lane = 0; lane < tileRows && j * tileRows + lane < m.rows(); lane++) {
                long base = (long) (j * tileRows + lane) * rowBytes;
                MemorySegment.copy(m.data(), INT_LE, base, row, 0, fullWords);
                if (fullWords < words) { // odd 16-bit row: the last word holds one element in its low half
                    row[words - 1] = m.data().get(SHORT_LE, base + 4L * fullWords) & 0xffff;
                }
                for (int w = 0; w < words; w++) {
                    tile[w * tileRows + lane] = row[w];
                }
            }
            MemorySegment.copy(tile, 0, target, INT_LE, packed.tileOffsetBytes(j), tile.length);
        }
        return packed;
    }

    /** Row {@code row} of a row-major matrix decoded into {@code out[outOff ..]}. */
    void rowToFloat(WeightMatrix m, int row, float[] out, int outOff) {
        long base = (long) row * m.cols() * bytesPerElement;
        for (int c = 0; c < m.cols(); c++) {
            out[outOff + c] = read(m.data(), base + (long) c * bytesPerElement);
        }
    }

    /** Index {@code row * cols + col} of the first non-finite element of a row-major matrix, or -1. */
    long firstNonFinite(WeightMatrix m) {
        int cols = m.cols();
        if (bytesPerElement == 2) {
            short[] row = new short[cols];
            for (int r = 0; r < m.rows(); r++) {
                MemorySegment.copy(m.data(), SHORT_LE, (long) r * cols * 2, row, 0, cols);
                for (int c = 0; c < cols; c++) {
                    if (nonFinite(row[c])) {
                        return (long) r * cols + c;
                    }
                }
            }
        } else {
            int[] row = new int[cols];
            for (int r = 0; r < m.rows(); r++) {
                MemorySegment.copy(m.data(), INT_LE, (long) r * cols * 4, row, 0, cols);
                for (int c = 0; c < cols; c++) {
                    if (nonFinite(row[c])) {
                        return (long) r * cols + c;
                    }
                }
            }
        }
        return -1;
    }

    @Override
    public void matmulReference(WeightMatrix w, float[] x, int xOff, int xStride, int nTokens,
                                float[] out, int outOff, int outStride, int rowStart, int rowEnd) {
        if (w.layout() == WeightLayout.TILED) {
            matmulTiled(w, x, xOff, xStride, nTokens, out, outOff, outStride, rowStart, rowEnd);
        } else {
            matmulSequentialFma(w, x, xOff, xStride, nTokens, out, outOff, outStride, rowStart, rowEnd);
        }
    }

    /**
     * The definition, walking a tiled matrix in memory order: per tile, per word, every row of the tile takes
     * its next fma(s) (one accumulator per row). Each output's chain is the definition's, in its order; only the
     * interleaving between rows differs. Much faster than decoding row by row, which matters when this
     * reference runs a whole short job (a cold JVM starts faster on it than on the interpreted Vector API).
     */
    private void matmulTiled(WeightMatrix w, float[] x, int xOff, int xStride, int nTokens,
                             float[] out, int outOff, int outStride, int rowStart, int rowEnd) {
        int cols = w.cols(), tile = w.tileRows(), words = words(cols);
        MemorySegment seg = w.data();
        float[] acc = new float[tile];
        int[] word = new int[words * tile];
        for (int j = rowStart / tile; j * tile < rowEnd; j++) {
            MemorySegment.copy(seg, INT_LE, w.tileOffsetBytes(j), word, 0, word.length);
            int r0 = j * tile;
            for (int t = 0; t < nTokens; t++) {
                int xo = xOff + t * xStride;
                Arrays.fill(acc, 0f);
                accumulateTile(word, words, tile, cols, x, xo, acc);
                for (int lane = Math.max(0, rowStart - r0); lane < tile && r0 + lane < rowEnd; lane++) {
                    out[outOff + t * outStride + r0 + lane] = acc[lane];
                }
            }
        }
    }

    /**
     * One token against one tile of lane words (in memory order): {@code acc[lane]} takes its row's fma chain over
     * all columns, in column order. Formats whose decode is a bit operation write this out (no call per element:
     * on a cold JVM this path runs in the interpreter and C1 before C2 could devirtualize {@link #decode}).
     */
    void accumulateTile(int[] word, int words, int tile, int cols, float[] x, int xo, float[] acc) {
        int g = elementsPerWord();
        for (int p = 0; p < words; p++) {
            int base = p * tile;
            for (int part = 0; part < g && p * g + part < cols; part++) {
                float xv = x[xo + p * g + part];
                for (int lane = 0; lane < tile; lane++) {
                    acc[lane] = Math.fma(decode(word[base + lane], part), xv, acc[lane]);
                }
            }
        }
    }

    /** The definition written out over a row-major matrix: a sequential fma chain per output element. */
    private static void matmulSequentialFma(WeightMatrix w, float[] x, int xOff, int xStride, int nTokens,
                                            float[] out, int outOff, int outStride, int rowStart, int rowEnd) {
        int cols = w.cols();
        float[] row = new float[cols];
        for (int r = rowStart; r < rowEnd; r++) {
            w.rowToFloat(r, row, 0);
            for (int t = 0; t < nTokens; t++) {
                int xo = xOff + t * xStride;
                float acc = 0f;
                for (int k = 0; k < cols; k++) {
                    acc = Math.fma(row[k], x[xo + k], acc);
                }
                out[outOff + t * outStride + r] = acc;
            }
        }
    }
}
