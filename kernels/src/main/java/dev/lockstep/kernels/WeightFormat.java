package dev.lockstep.kernels;

import dev.lockstep.memory.DType;

import java.util.List;

/**
 * A storage format for weight matrices. Each format owns its in-memory layouts (with the diagram of its
 * {@link WeightLayout#TILED} repacking), its size arithmetic, and its kernel pair: the scalar reference that
 * is the definition of its matmul, and the Vector API kernel that must give the same bits. Adding a format
 * is one class implementing this interface plus its tests; {@link ScalarKernels} and {@link PanamaKernels}
 * dispatch here and never fall back from one to the other.
 */
public sealed interface WeightFormat permits DenseFormat, Nvfp4Format {
    DenseFormat F32 = F32Format.INSTANCE;
    DenseFormat BF16 = Bf16Format.INSTANCE;
    DenseFormat F16 = F16Format.INSTANCE;
    Nvfp4Format NVFP4 = Nvfp4Format.INSTANCE;
    /** OCP MXFP4 (gpt-oss experts): E2M1 codes, one E8M0 scale per 32 values; see {@link Nvfp4Format}. */
    Nvfp4Format MXFP4 = Nvfp4Format.MXFP4;

    /** Every format, dense ones first. */
    static List<WeightFormat> all() {
        return List.of(F32, BF16, F16, NVFP4, MXFP4);
    }

    /** The dense format of a safetensors dtype, or null when that dtype is not a dense weight type. */
    static DenseFormat of(DType dtype) {
        return switch (dtype) {
            case F32 -> F32;
            case BF16 -> BF16;
            case F16 -> F16;
            default -> null;
        };
    }

    String name();

    /** Storage per weight in bits, scales included, padding excluded (BF16 16, NVFP4 4.5). */
    double bitsPerWeight();

    /** Bytes of one tile of {@code tileRows} rows in the {@link WeightLayout#TILED} layout. */
    long tileBytes(int cols, int tileRows);

    /** Bytes of a {@code [rows, cols]} matrix in the TILED layout (the last tile padded). */
    default long tiledBytes(int rows, int cols, int tileRows) {
        return (long) ((rows + tileRows - 1) / tileRows) * tileBytes(cols, tileRows);
    }

    /** Element (row, col) as float32 (slow: tests, references, one-off reads). */
    float get(WeightMatrix m, int row, int col);

    /**
     * The definition of this format's matmul (the contract of {@link Kernels#matmul}, with this format's
     * operation order), written as plain scalar code.
     */
    void matmulReference(WeightMatrix w, float[] x, int xOff, int xStride, int nTokens,
                         float[] out, int outOff, int outStride, int rowStart, int rowEnd);

    /**
     * The Vector API kernel: the same bits as {@link #matmulReference}. Needs the TILED layout with
     * {@link PanamaKernels#tileRows()} rows per tile; anything else is an {@link IllegalArgumentException}
     * (the loader always packs for the kernels it runs on), never a silent slow path.
     */
    void matmulVector(WeightMatrix w, float[] x, int xOff, int xStride, int nTokens,
                      float[] out, int outOff, int outStride, int rowStart, int rowEnd);

    /** What {@link #matmulVector} runs, for {@code inspect} and {@code bench}. */
    String vectorKernel();

    static void requireVectorTiles(WeightMatrix w, int lanes) {
        if (w.layout() != WeightLayout.TILED || w.tileRows() != lanes) {
            throw new IllegalArgumentException(w + ": the Vector API kernels need the TILED layout with " + lanes
                    + " rows per tile (pack it for the kernels that run it)");
        }
    }
}
