package dev.lockstep.kernels;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * A {@code [rows, cols]} weight matrix in one storage format and one {@link WeightLayout}, over an
 * off-heap segment: the mmapped checkpoint bytes ({@link WeightLayout#ROW_MAJOR}) or a repacked copy
 * ({@link WeightLayout#TILED}, see {@link #packTiled}). Immutable; safe to share between threads.
 */
public final class WeightMatrix {
    static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfFloat FLOAT_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfInt INT_LE = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final String name;
    private final WeightFormat format;
    private final int rows;
    private final int cols;
    private final MemorySegment data;
    private final WeightLayout layout;
    private final int tileRows;
    private final int colPairs;

    /** A row-major matrix over {@code data} (as stored in a checkpoint). */
    public WeightMatrix(String name, WeightFormat format, int rows, int cols, MemorySegment data) {
        this(name, format, rows, cols, data, WeightLayout.ROW_MAJOR, 1);
    }

    private WeightMatrix(String name, WeightFormat format, int rows, int cols, MemorySegment data, WeightLayout layout, int tileRows) {
        if (rows <= 0 || cols <= 0 || tileRows <= 0) {
            throw new IllegalArgumentException(name + ": bad shape [" + rows + ", " + cols + "] or tile " + tileRows);
        }
        this.name = name;
        this.format = format;
        this.rows = rows;
        this.cols = cols;
        this.data = data;
        this.layout = layout;
        this.tileRows = tileRows;
        this.colPairs = (cols + 1) / 2;
        long expected = byteSize(layout, format, rows, cols, tileRows);
        if (data.byteSize() != expected) {
            throw new IllegalArgumentException(name + ": " + format + "[" + rows + ", " + cols + "] " + layout + " needs " + expected
                    + " bytes, segment has " + data.byteSize());
        }
    }

    /** Bytes a matrix of this shape takes in {@code layout}. */
    public static long byteSize(WeightLayout layout, WeightFormat format, int rows, int cols, int tileRows) {
        return switch (layout) {
            case ROW_MAJOR -> (long) rows * cols * format.bytesPerElement();
            case TILED -> (long) ((rows + tileRows - 1) / tileRows) * tileRows * ((cols + 1) / 2) * 2 * format.bytesPerElement();
        };
    }

    /**
     * This matrix repacked into the {@link WeightLayout#TILED} layout with {@code tileRows} rows per tile, in
     * {@code target} (which must be {@link #byteSize} bytes, zeroed). The format is kept; padding is zero.
     */
    public WeightMatrix packTiled(int tileRows, MemorySegment target) {
        if (layout != WeightLayout.ROW_MAJOR) {
            throw new IllegalStateException(name + " is already " + layout);
        }
        WeightMatrix packed = new WeightMatrix(name, format, rows, cols, target, WeightLayout.TILED, tileRows);
        // Bulk copies and plain array loops (no per-element calls): this runs at load on a cold JVM, where the
        // loop is interpreted until it is OSR-compiled; a 2-byte arraycopy per element made loading the bundled
        // model take ~330 ms, this ~60 ms.
        int tileElements = Math.toIntExact(packed.tileOffsetBytes(1) / format.bytesPerElement());
        if (format.bytesPerElement() == 2) {
            short[] row = new short[cols];
            short[] tile = new short[tileElements];
            for (int j = 0; j < packed.tiles(); j++) {
                java.util.Arrays.fill(tile, (short) 0);
                for (int lane = 0; lane < tileRows && j * tileRows + lane < rows; lane++) {
                    MemorySegment.copy(data, SHORT_LE, elementOffsetBytes(j * tileRows + lane, 0), row, 0, cols);
                    for (int c = 0; c < cols; c++) {
                        tile[((c >> 1) * tileRows + lane) * 2 + (c & 1)] = row[c];
                    }
                }
                MemorySegment.copy(tile, 0, target, SHORT_LE, packed.tileOffsetBytes(j), tileElements);
            }
        } else {
            int[] row = new int[cols];
            int[] tile = new int[tileElements];
            for (int j = 0; j < packed.tiles(); j++) {
                java.util.Arrays.fill(tile, 0);
                for (int lane = 0; lane < tileRows && j * tileRows + lane < rows; lane++) {
                    MemorySegment.copy(data, INT_LE, elementOffsetBytes(j * tileRows + lane, 0), row, 0, cols);
                    for (int c = 0; c < cols; c++) {
                        tile[((c >> 1) * tileRows + lane) * 2 + (c & 1)] = row[c];
                    }
                }
                MemorySegment.copy(tile, 0, target, INT_LE, packed.tileOffsetBytes(j), tileElements);
            }
        }
        return packed;
    }

    public WeightLayout layout() {
        return layout;
    }

    /** Rows per tile ({@code 1} for row-major). */
    public int tileRows() {
        return tileRows;
    }

    /** Tiles covering the rows (the last may be partial). */
    public int tiles() {
        return (rows + tileRows - 1) / tileRows;
    }

    /** Byte offset of element (row, col) in {@link #data()}. */
    public long elementOffsetBytes(int row, int col) {
        long index = switch (layout) {
            case ROW_MAJOR -> (long) row * cols + col;
            case TILED -> ((long) (row / tileRows) * colPairs + col / 2) * tileRows * 2 + (long) (row % tileRows) * 2 + (col & 1);
        };
        return index * format.bytesPerElement();
    }

    /** Byte offset of tile {@code tile} (TILED layout). */
    public long tileOffsetBytes(int tile) {
        return (long) tile * colPairs * tileRows * 2 * format.bytesPerElement();
    }

    public String name() {
        return name;
    }

    public WeightFormat format() {
        return format;
    }

    public int rows() {
        return rows;
    }

    public int cols() {
        return cols;
    }

    public MemorySegment data() {
        return data;
    }

    /** Element (row, col) as float. Slow; for references, tests and one-off reads. */
    public float get(int row, int col) {
        long off = elementOffsetBytes(row, col);
        return switch (format) {
            case F32 -> data.get(FLOAT_LE, off);
            case BF16 -> bf16ToFloat(data.get(SHORT_LE, off));
            case F16 -> Float.float16ToFloat(data.get(SHORT_LE, off));
        };
    }

    /** Decodes row {@code row} into {@code out[outOff .. outOff + cols)}. Used for embedding lookups. */
    public void rowToFloat(int row, float[] out, int outOff) {
        if (layout != WeightLayout.ROW_MAJOR) {
            for (int c = 0; c < cols; c++) {
                out[outOff + c] = get(row, c);
            }
            return;
        }
        long base = elementOffsetBytes(row, 0);
        switch (format) {
            case F32 -> MemorySegment.copy(data, FLOAT_LE, base, out, outOff, cols);
            case BF16 -> {
                for (int c = 0; c < cols; c++) {
                    out[outOff + c] = bf16ToFloat(data.get(SHORT_LE, base + 2L * c));
                }
            }
            case F16 -> {
                for (int c = 0; c < cols; c++) {
                    out[outOff + c] = Float.float16ToFloat(data.get(SHORT_LE, base + 2L * c));
                }
            }
        }
    }

    /**
     * Index {@code row * cols + col} of the first NaN or infinite element, or -1 when all are finite. Checks
     * the exponent bits directly, so a 25 MB bf16 model is scanned in milliseconds.
     */
    public long firstNonFinite() {
        if (layout != WeightLayout.ROW_MAJOR) {
            for (int r = 0; r < rows; r++) {
                for (int c = 0; c < cols; c++) {
                    if (!Float.isFinite(get(r, c))) {
                        return (long) r * cols + c;
                    }
                }
            }
            return -1;
        }
        // Row by row through a bulk-copied array (fast even before the JIT has compiled this: it runs at load).
        if (format.bytesPerElement() == 2) {
            int exponent = format == WeightFormat.BF16 ? 0x7f80 : 0x7c00;
            short[] row = new short[cols];
            for (int r = 0; r < rows; r++) {
                MemorySegment.copy(data, SHORT_LE, (long) r * cols * 2, row, 0, cols);
                for (int c = 0; c < cols; c++) {
                    if ((row[c] & exponent) == exponent) {
                        return (long) r * cols + c;
                    }
                }
            }
        } else {
            int[] row = new int[cols];
            for (int r = 0; r < rows; r++) {
                MemorySegment.copy(data, INT_LE, (long) r * cols * 4, row, 0, cols);
                for (int c = 0; c < cols; c++) {
                    if ((row[c] & 0x7f800000) == 0x7f800000) {
                        return (long) r * cols + c;
                    }
                }
            }
        }
        return -1;
    }

    /** bf16 is the upper half of an IEEE binary32: widening is exact. */
    public static float bf16ToFloat(short bits) {
        return Float.intBitsToFloat(bits << 16);
    }

    @Override
    public String toString() {
        return name + " " + format + "[" + rows + ", " + cols + "] " + layout + (layout == WeightLayout.TILED ? "x" + tileRows : "");
    }
}
