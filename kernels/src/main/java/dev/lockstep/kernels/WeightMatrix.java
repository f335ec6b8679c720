package dev.lockstep.kernels;

import java.lang.foreign.MemorySegment;

/**
 * A {@code [rows, cols]} weight matrix in one {@link WeightFormat} and one {@link WeightLayout}, over an
 * off-heap segment: the mmapped checkpoint bytes (dense formats, {@link WeightLayout#ROW_MAJOR}) or a repacked
 * copy ({@link WeightLayout#TILED}: {@link #packTiled} for dense formats, {@link Nvfp4Format#pack} for NVFP4).
 * Immutable; safe to share between threads.
 */
public final class WeightMatrix {
    private final String name;
    private final WeightFormat format;
    private final int rows;
    private final int cols;
    private final MemorySegment data;
    private final WeightLayout layout;
    private final int tileRows;
    private final long tileBytes;
    private final float tensorScale;

    /** A row-major dense matrix over {@code data} (as stored in a checkpoint). */
    public WeightMatrix(String name, DenseFormat format, int rows, int cols, MemorySegment data) {
        this(name, format, rows, cols, data, WeightLayout.ROW_MAJOR, 1, 1f);
    }

    WeightMatrix(String name, WeightFormat format, int rows, int cols, MemorySegment data, WeightLayout layout, int tileRows,
                 float tensorScale) {
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
        this.tensorScale = tensorScale;
        this.tileBytes = layout == WeightLayout.TILED ? format.tileBytes(cols, tileRows) : 0;
        long expected = byteSize(layout, format, rows, cols, tileRows);
        if (data.byteSize() != expected) {
            throw new IllegalArgumentException(name + ": " + format + "[" + rows + ", " + cols + "] " + layout + " needs " + expected
                    + " bytes, segment has " + data.byteSize());
        }
    }

    /** Bytes a matrix of this shape takes in {@code layout} (NVFP4 exists only TILED). */
    public static long byteSize(WeightLayout layout, WeightFormat format, int rows, int cols, int tileRows) {
        return switch (layout) {
            case ROW_MAJOR -> switch (format) {
                case DenseFormat d -> d.rowMajorBytes(rows, cols);
                case Nvfp4Format n -> throw new IllegalArgumentException("NVFP4 matrices exist only in the TILED layout");
            };
            case TILED -> format.tiledBytes(rows, cols, tileRows);
        };
    }

    /**
     * This dense row-major matrix repacked into the {@link WeightLayout#TILED} layout with {@code tileRows}
     * rows per tile, in {@code target} ({@link #byteSize} bytes). The format is kept; padding is zero.
     */
    public WeightMatrix packTiled(int tileRows, MemorySegment target) {
        return dense().packTiled(this, tileRows, target);
    }

    private DenseFormat dense() {
        if (format instanceof DenseFormat d) {
            return d;
        }
        throw new IllegalStateException(this + " is not a dense matrix");
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

    /** Byte offset of tile {@code tile} (TILED layout). */
    public long tileOffsetBytes(int tile) {
        return tile * tileBytes;
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

    /** The per-tensor scale every output is multiplied by ({@code weight_scale_2} for NVFP4; 1 for dense formats). */
    public float tensorScale() {
        return tensorScale;
    }

    /** Bytes a matmul streams per token: the whole {@link #data()} segment. */
    public long byteSize() {
        return data.byteSize();
    }

    /** Element (row, col) as float. Slow; for references, tests and one-off reads. */
    public float get(int row, int col) {
        return format.get(this, row, col);
    }

    /** Decodes row {@code row} into {@code out[outOff .. outOff + cols)}. Used for embedding lookups. */
    public void rowToFloat(int row, float[] out, int outOff) {
        if (layout == WeightLayout.ROW_MAJOR) {
            dense().rowToFloat(this, row, out, outOff);
            return;
        }
        for (int c = 0; c < cols; c++) {
            out[outOff + c] = get(row, c);
        }
    }

    /**
     * Index {@code row * cols + col} of the first NaN or infinite element of a row-major dense matrix, or -1 when
     * all are finite. Checks the exponent bits directly, so a 25 MB bf16 model is scanned in milliseconds.
     */
    public long firstNonFinite() {
        if (layout != WeightLayout.ROW_MAJOR) {
            throw new IllegalStateException(this + ": check values before packing");
        }
        return dense().firstNonFinite(this);
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
